/**
 * Timestamps leave PostgreSQL as plain `::text` and are formatted here,
 * instead of by `to_char` in every query.
 *
 * PostGraphile formats each `timestamptz` it selects with
 * `to_char(v, 'YYYY-MM-DD"T"HH24:MI:SS.USTZH:TZM')`. `to_char` re-reads its
 * format for every value and was the largest part of what PostgreSQL spent
 * on a page of snapshots beyond the raw query: on bench/api's page (50 rows,
 * two timestamps each), 162 → 130 µs of PostgreSQL CPU per query under
 * 32-way load on the 2-core machine (tmp measurements recorded in the commit
 * message). `::text` under `DateStyle = ISO` (set on every connection that
 * runs GraphQL, see role-client.ts) is a fixed shape, rewritten here into
 * exactly what `to_char` printed, so clients see the same strings:
 *
 *   2026-11-21 02:22:52.5+05:30   → 2026-11-21T02:22:52.500000+05:30
 *   1900-01-01 05:21:10+05:21:10  → 1900-01-01T05:21:10.000000+05:21 (to_char drops offset seconds)
 *   0044-03-15 12:00:00+00 BC     → 0044-03-15T12:00:00.000000+00:00 (to_char drops the era)
 *   infinity, -infinity           → null (to_char returns NULL)
 *
 * Applied by patching the shared `timestamptz` codec of @dataplan/pg once
 * (codecs are matched by identity throughout PostGraphile, so a copy would
 * not be used); arrays of timestamps keep `to_char` (their elements arrive
 * already formatted, which {@link isoFromPgText} passes through).
 */
import { TYPES } from 'postgraphile/@dataplan/pg';
import { sql } from 'postgraphile/pg-sql2';

const PG_ISO = /^(\d{4,}-\d\d-\d\d) (\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?([+-]\d\d)(?::(\d\d))?(?::\d\d)?( BC)?$/;

/** `to_char(v, 'YYYY-MM-DD"T"HH24:MI:SS.USTZH:TZM')` of a timestamptz, from its ISO-DateStyle text. */
export function isoFromPgText(text: string): string | null {
  const m = PG_ISO.exec(text);
  if (m) return `${m[1]}T${m[2]}.${(m[3] ?? '').padEnd(6, '0')}${m[4]}:${m[5] ?? '00'}`;
  if (text === 'infinity' || text === '-infinity') return null;
  // Already in to_char's shape (an element of an array, formatted in SQL).
  if (text.includes('T')) return text;
  // Only a DateStyle other than ISO gets here; refuse rather than guess.
  throw new Error(`unexpected timestamptz text from PostgreSQL (DateStyle must be ISO): ${JSON.stringify(text.slice(0, 40))}`);
}

let installed = false;

/** Patch the `timestamptz` codec (idempotent). */
export function installDatetimeText(): void {
  if (installed) return;
  installed = true;
  const codec = TYPES.timestamptz as { castFromPg?: (frag: ReturnType<typeof sql>) => ReturnType<typeof sql>; fromPg: (value: string) => unknown };
  codec.castFromPg = (frag) => sql`(${frag})::text`;
  codec.fromPg = isoFromPgText;
}
