/**
 * Event and result fields as the protocol carries them: at most 32 keys of
 * snake_case names and scalar values, strings cut to 1000 characters. The
 * engine's fields (paths, reasons, hints, durations) fit; anything else is
 * dropped rather than failing a result.
 */
const NAME_RE = /^[a-z][a-z0-9_]{0,63}$/;

/** Fields fit for a frame. */
export function frameFields(fields: Record<string, unknown> | undefined): Record<string, string | number | boolean | null> {
  const out: Record<string, string | number | boolean | null> = {};
  if (!fields) return out;
  for (const [k, v] of Object.entries(fields)) {
    if (Object.keys(out).length >= 32) break;
    if (!NAME_RE.test(k)) continue;
    if (typeof v === 'string') out[k] = v.length > 1000 ? `${v.slice(0, 999)}…` : v;
    else if ((typeof v === 'number' && Number.isFinite(v)) || typeof v === 'boolean' || v === null) out[k] = v;
  }
  return out;
}
