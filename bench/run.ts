/**
 * Benchmark dispatcher: `npm run bench -- <name> [args…]` runs `bench/<name>.ts`
 * with `args` as its own process.argv tail. Benchmarks print figures and a
 * ratio against an anchor; they are not tests and assert nothing.
 */
import fs from 'node:fs';
import { pathToFileURL, fileURLToPath } from 'node:url';

const name = process.argv[2];
const dir = fileURLToPath(new URL('.', import.meta.url));
const available = fs
  .readdirSync(dir)
  .filter((f) => f.endsWith('.ts') && f !== 'run.ts' && !f.endsWith('.test.ts'))
  .map((f) => f.slice(0, -3))
  .sort();

if (!name || !/^[a-z0-9][a-z0-9-]*$/.test(name) || !available.includes(name)) {
  console.error(`usage: npm run bench -- <name> [args…]\nbenchmarks: ${available.join(', ')}`);
  process.exit(2);
}
// The benchmark sees `node bench/<name>.ts args…`.
process.argv.splice(1, 2, `${dir}${name}.ts`);
await import(pathToFileURL(`${dir}${name}.ts`).href);
