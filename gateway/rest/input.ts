/**
 * Turning a REST request's path parameters, query string and JSON body into
 * validated values with zod. Every failure is a 400 whose details name the
 * field and the reason (`{field, reason, violations: [{field, reason, message}]}`),
 * so a client can point at the input that was wrong.
 */
import { z } from 'zod';
import { BastionError, type ErrorCode } from '../../core/errors.ts';
import { UUID_RE } from '../../core/ids.ts';
import type { Request } from '../http-adapter.ts';

/** A canonical UUID (lower case, as ids appear everywhere in Bastion). */
export const uuid = z.string().regex(UUID_RE, 'expected a UUID like 123e4567-e89b-12d3-a456-426614174000');

function valueAt(value: unknown, path: readonly PropertyKey[]): unknown {
  let v = value;
  for (const key of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[key];
  }
  return v;
}

function reasonOf(issue: z.core.$ZodIssue, input: unknown): string {
  switch (issue.code) {
    case 'invalid_type':
      return valueAt(input, issue.path) === undefined ? 'required' : 'invalid_type';
    case 'too_small':
      return 'too_small';
    case 'too_big':
      return 'too_big';
    case 'unrecognized_keys':
      return 'unknown_field';
    case 'invalid_value':
      return 'unsupported_value';
    case 'invalid_format':
      return 'invalid_format';
    default:
      return 'invalid';
  }
}

/** Parse `value` with `schema`; a failure becomes `code` (400) naming the first bad field. */
export function parseInput<S extends z.ZodType>(schema: S, value: unknown, where: 'path' | 'query' | 'body', code: ErrorCode = 'invalid_input'): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const violations = result.error.issues.slice(0, 20).map((issue) => {
    const path = issue.code === 'unrecognized_keys' ? [...issue.path, ...issue.keys.slice(0, 1)] : issue.path;
    const field = path.length > 0 ? path.map(String).join('.') : where;
    return { field, reason: reasonOf(issue, value), message: issue.message };
  });
  const first = violations[0] as { field: string; reason: string; message: string };
  throw new BastionError(code, `${where} ${first.field === where ? '' : `field ${first.field}: `}${first.message}`.replace(/\s+/g, ' ').trim(), {
    details: { field: first.field, reason: first.reason, violations },
  });
}

/**
 * The query string as an object: a key given once is a string; a key given
 * several times, or written `key[]`, is an array of strings.
 */
export function queryObject(query: URLSearchParams): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [rawKey, value] of query) {
    const isArray = rawKey.endsWith('[]');
    const key = isArray ? rawKey.slice(0, -2) : rawKey;
    const prev = out[key];
    if (prev === undefined) out[key] = isArray ? [value] : value;
    else out[key] = Array.isArray(prev) ? [...prev, value] : [prev, value];
  }
  return out;
}

/**
 * The JSON body of a request: `{}` when empty; `invalid_json` (400) when it
 * is not JSON or not sent as `application/json`.
 */
export function jsonBody(req: Request): unknown {
  if (req.body.length === 0) return {};
  const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
  if (type !== 'application/json') {
    throw new BastionError('invalid_json', 'Send the body as JSON with Content-Type: application/json', { details: { field: 'content-type', reason: 'unsupported_media_type' } });
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(req.body);
  } catch {
    throw new BastionError('invalid_json', 'The request body is not valid UTF-8', { details: { field: 'body', reason: 'invalid_encoding' } });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new BastionError('invalid_json', `The request body is not valid JSON: ${(e as Error).message.slice(0, 200)}`, { details: { field: 'body', reason: 'invalid_json' } });
  }
}

/** A string list from a query value that may be a single string or repeated (trimmed, blanks dropped, sorted, deduplicated). */
export const stringList = z
  .union([z.string(), z.array(z.string()).max(100)])
  .transform((v) => [...new Set((Array.isArray(v) ? v : [v]).map((s) => s.trim()).filter((s) => s !== ''))].sort());

/** `true`/`1`/`false`/`0` (any case) from a query string. */
export const queryBoolean = z
  .string()
  .max(8)
  .transform((v, ctx) => {
    const s = v.trim().toLowerCase();
    if (s === 'true' || s === '1') return true;
    if (s === 'false' || s === '0' || s === '') return false;
    ctx.addIssue({ code: 'custom', message: 'expected true or false' });
    return z.NEVER;
  });
/** A whole number between min and max from a query string. */
export const queryInt = (min: number, max: number) =>
  z
    .string()
    .max(12)
    .regex(/^-?\d+$/, 'expected a whole number')
    .transform(Number)
    .pipe(z.number().int().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`));

