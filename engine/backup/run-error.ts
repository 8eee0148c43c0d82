/**
 * How a failed run is recorded: a stable error code (runs.error_code), one
 * clean line of text (runs.error and the failed event's message) and a few
 * structured fields. Everything here is built from error objects that are
 * already credential-free (BastionError, WebdavError), then redacted and
 * scrubbed again with the secrets the executor handled, so a password can
 * only reach the database through a bug in two places at once.
 */
import { BastionError, isErrorCode } from '../../core/errors.ts';
import { sanitizeErrorText } from '../../core/redact.ts';
import { scrubSecrets, WebdavError } from '../../core/webdav-errors.ts';
import { webdavFailureFields } from '../targets/webdav-target.ts';

/** A failure as a run stores it. */
export interface RunFailure {
  code: string;
  message: string;
  fields: Record<string, string | number | boolean>;
}

const DETAIL_KEYS = ['field', 'reason', 'path', 'name', 'node_id', 'real_path'] as const;

/** Describe `err` for fail_run; `secrets` are removed from the text whatever happens. */
export function describeRunFailure(err: unknown, secrets: readonly string[] = []): RunFailure {
  const clean = (text: string) => sanitizeErrorText(scrubSecrets(text, secrets));
  if (err instanceof WebdavError) {
    const fields: RunFailure['fields'] = {};
    for (const [k, v] of Object.entries(webdavFailureFields(err))) fields[k] = typeof v === 'string' ? clean(v) : v;
    return { code: err.code, message: clean(err.message), fields };
  }
  if (err instanceof BastionError) {
    const fields: RunFailure['fields'] = {};
    for (const k of DETAIL_KEYS) {
      const v = err.details?.[k];
      if (typeof v === 'string' || typeof v === 'number') fields[k] = typeof v === 'string' ? clean(v) : v;
    }
    const kind = (err as { kind?: unknown }).kind;
    if (typeof kind === 'string') fields['error_kind'] = kind;
    return { code: err.code, message: clean(err.message), fields };
  }
  const e = err as { code?: unknown; message?: unknown } | null;
  // A domain error straight from SQL that nobody converted.
  if (typeof e?.code === 'string' && /^BA\d{3}$/.test(e.code) && isErrorCode(e.message)) {
    return { code: e.message, message: clean(String((e as { detail?: unknown }).detail ?? e.message)), fields: {} };
  }
  const text = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  return { code: 'internal_error', message: clean(text) || 'unexpected error', fields: {} };
}
