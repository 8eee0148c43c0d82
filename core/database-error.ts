/**
 * Domain errors raised by Bastion's SQL functions arrive as PostgreSQL errors:
 * SQLSTATE `BA<http status>`, message = the stable code, DETAIL = the human
 * message, HINT = JSON details (sql/migrations/0001, raise_error). This turns
 * them back into BastionErrors for callers outside the gateway (workers, the
 * CLI); the gateway's toBastionError builds on it for HTTP answers.
 */
import { BastionError, isErrorCode, type ErrorDetails } from './errors.ts';

/** The BastionError a SQL function raised, or null for any other error. */
export function bastionErrorFromSql(err: unknown): BastionError | null {
  if (err instanceof BastionError) return err;
  const e = err as { code?: unknown; message?: unknown; detail?: unknown; hint?: unknown } | null;
  if (typeof e?.code !== 'string' || !/^BA\d{3}$/.test(e.code) || !isErrorCode(e.message)) return null;
  let details: ErrorDetails | undefined;
  if (typeof e.hint === 'string' && e.hint !== '') {
    try {
      details = JSON.parse(e.hint) as ErrorDetails;
    } catch {
      details = undefined;
    }
  }
  return new BastionError(e.message, typeof e.detail === 'string' && e.detail !== '' ? e.detail : undefined, { details, cause: err });
}

/** Await `p`; a domain error from SQL is rethrown as a BastionError, anything else unchanged. */
export async function sqlCall<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (e) {
    throw bastionErrorFromSql(e) ?? e;
  }
}
