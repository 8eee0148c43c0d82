import t from 'tap';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { rcloneAvailable, startWebdavServer } from './webdav-server.ts';
import type { WebdavServerKind } from './webdav-server.ts';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitGone(pid: number): Promise<boolean> {
  for (let i = 0; i < 200 && alive(pid); i++) await new Promise((r) => setTimeout(r, 25));
  return !alive(pid);
}

function basic(user: string, password: string): string {
  return 'Basic ' + Buffer.from(`${user}:${password}`, 'utf8').toString('base64');
}

const kinds: WebdavServerKind[] = ['webdav-server', 'rclone'];
for (const kind of kinds) {
  t.test(`${kind}: serves the directory with Basic auth and stops cleanly`, { skip: kind === 'rclone' && !rcloneAvailable() ? 'rclone not on PATH' : false }, async (t) => {
    const dav = await startWebdavServer(t, { kind });
    t.match(dav.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    t.equal(dav.kind, kind);
    const anon = await fetch(dav.url + 'f.txt', { method: 'PUT', body: 'x' });
    t.equal(anon.status, 401, 'anonymous PUT refused');
    const wrong = await fetch(dav.url + 'f.txt', { method: 'PUT', body: 'x', headers: { authorization: basic(dav.user, 'wrong') } });
    t.equal(wrong.status, 401, 'wrong password refused');
    const put = await fetch(dav.url + 'f.txt', { method: 'PUT', body: 'hello', headers: { authorization: basic(dav.user, dav.password) } });
    t.ok(put.status >= 200 && put.status < 300, `PUT answered ${put.status}`);
    t.equal(await readFile(join(dav.dir, 'f.txt'), 'utf8'), 'hello', 'the file is on disk in dir');
    const pid = dav.pid;
    t.ok(alive(pid));
    await dav.stop();
    t.ok(await waitGone(pid), 'server process exited');
    await dav.stop();
    await t.rejects(fetch(dav.url), 'nothing listens any more');
  });

  t.test(`${kind}: a test process killed with SIGKILL leaves no server behind`, { skip: kind === 'rclone' && !rcloneAvailable() ? 'rclone not on PATH' : false }, async (t) => {
    const helper = fileURLToPath(new URL('./webdav-server.ts', import.meta.url));
    const script = `
      import { startWebdavServer } from ${JSON.stringify(helper)};
      const s = await startWebdavServer({ teardown() {} }, { kind: ${JSON.stringify(kind)} });
      process.stdout.write(String(s.pid) + '\\n');
      setInterval(() => {}, 1000);
    `;
    const parent = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    parent.stdout.on('data', (c: Buffer) => (out += c.toString()));
    while (!out.includes('\n')) await once(parent.stdout, 'data');
    const serverPid = Number(out.trim());
    t.ok(alive(serverPid), 'server running');
    let grandchild: number | undefined;
    if (kind === 'rclone') {
      // the supervisor's child: rclone itself must go too
      const { execFileSync } = await import('node:child_process');
      grandchild = Number(execFileSync('pgrep', ['-P', String(serverPid)]).toString().trim().split('\n')[0]);
      t.ok(grandchild > 0 && alive(grandchild), 'rclone running');
    }
    parent.kill('SIGKILL');
    await once(parent, 'exit');
    t.ok(await waitGone(serverPid), 'server exited with its parent');
    if (grandchild !== undefined) t.ok(await waitGone(grandchild), 'rclone exited too');
  });
}
