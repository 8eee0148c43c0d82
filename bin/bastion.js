#!/usr/bin/env node
// Launcher for the `bastion` command. Bastion's backend is TypeScript run by
// Node 22's type stripping (22.18+). The project pins Node 22 through the
// `node` npm package; when this file is started by an older Node (e.g. the
// machine's default), it re-runs the CLI under the pinned one.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const main = fileURLToPath(new URL('../cli/main.ts', import.meta.url));
const [major, minor] = process.versions.node.split('.').map(Number);
if (major > 22 || (major === 22 && minor >= 18)) {
  await import(main);
} else {
  const pinned = fileURLToPath(new URL('../node_modules/node/bin/node', import.meta.url));
  if (!existsSync(pinned)) {
    process.stderr.write(`bastion: Node ${process.versions.node} is too old (22.18+ needed) and the pinned Node 22 is not installed; run "npm ci" first\n`);
    process.exit(2);
  }
  const child = spawn(pinned, [main, ...process.argv.slice(2)], { stdio: 'inherit' });
  // Ctrl-C reaches the child through the terminal's process group; forward TERM explicitly.
  process.on('SIGINT', () => {});
  process.on('SIGTERM', () => child.kill('SIGTERM'));
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 128 + 2 : 1)));
}
