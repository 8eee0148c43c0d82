/**
 * Regenerate `db/types.ts` from a migrated database with kysely-codegen.
 *
 *   npm run db:codegen                      # migrates a scratch database, writes db/types.ts
 *   DATABASE_URL=postgres://… npm run db:codegen
 *
 * Used by the staleness test through {@link generateTypes}.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The committed generated file. */
export const TYPES_FILE = fileURLToPath(new URL('./types.ts', import.meta.url));
const CLI = fileURLToPath(new URL('../node_modules/kysely-codegen/dist/cli/bin.js', import.meta.url));

/** Generate kysely types for `bastion` and `bastion_private` of the database at `url` into `outFile`. */
export async function generateTypes(url: string, outFile: string): Promise<void> {
  const args = [
    CLI,
    '--dialect', 'postgres',
    '--url', url,
    '--include-pattern', '(bastion|bastion_private).*',
    '--type-mapping', JSON.stringify({ int8: 'number' }),
    '--log-level', 'error',
    '--out-file', outFile,
  ];
  await new Promise<void>((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`kysely-codegen exited with ${code}: ${err.trim()}`))));
  });
  // Stable header: the generator's banner has no timestamp, but normalise line endings anyway.
  const text = (await fs.readFile(outFile, 'utf8')).replace(/\r\n/g, '\n');
  await fs.writeFile(outFile, text);
}

async function main(): Promise<void> {
  const { withScratchDatabase } = await import('./scratch-database.ts');
  await withScratchDatabase(async (url) => {
    const tmp = path.join(os.tmpdir(), `bastion-types-${process.pid}.ts`);
    await generateTypes(url, tmp);
    await fs.copyFile(tmp, TYPES_FILE);
    await fs.rm(tmp, { force: true });
  });
  console.log(`wrote ${path.relative(process.cwd(), TYPES_FILE)}`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await main();
}
