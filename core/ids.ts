/**
 * Identifier rules shared by every layer. Job, run, operation and agent ids are
 * UUIDs; they become path components on targets, so nothing else is accepted.
 */

/** Canonical lower-case UUID text (any version); rejects braces, upper case and surrounding space. */
export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** True when `value` is a canonical UUID string, safe to use as one path component. */
export function isUuid(value: unknown): value is string {
  return typeof value === 'string' && UUID_RE.test(value);
}

/** The node id of the hub itself; agents use their UUID. */
export const HUB_NODE_ID = 'hub';

/** True for `'hub'` or an agent UUID. */
export function isNodeId(value: unknown): value is string {
  return value === HUB_NODE_ID || isUuid(value);
}
