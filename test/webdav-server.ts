/**
 * A real WebDAV server for tests, in its own process: the npm `webdav-server`
 * 2.6.3 package by default, or Debian's `rclone serve webdav` when asked
 * (`kind: 'rclone'`, or `BASTION_TEST_WEBDAV=rclone` in the environment for
 * every test that does not choose). The two differ the way real users'
 * servers do (NOTES.md): MKCOL on an existing collection 405 vs 201, PUT into
 * a missing collection 409 vs 404, absolute-URL vs path hrefs, Depth infinity
 * refused by webdav-server. Code under test must work against both.
 *
 * The server listens on 127.0.0.1, port chosen by the OS, Basic auth with the
 * given user/password. The child (test/webdav-server-main.ts) announces its
 * port on stdout and exits when its stdin closes, so no server outlives the
 * test process, even one killed with SIGKILL. `stop()` is registered with
 * `t.teardown` and may also be called early (idempotent).
 *
 * Usage:
 *   const dav = await startWebdavServer(t);
 *   const client = new WebdavClient({ baseUrl: dav.url, credentials: dav });
 */
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Which server implementation to run. */
export type WebdavServerKind = 'webdav-server' | 'rclone';

/** A running test server. `url` ends with `/` and holds no credentials. */
export interface WebdavTestServer {
  kind: WebdavServerKind;
  url: string;
  /** Directory on disk the server serves (assert on real files here). */
  dir: string;
  /** `username` as well as `user`, so the object can be passed where WebdavCredentials are expected. */
  user: string;
  username: string;
  password: string;
  /** OS process id of the child (for orphan checks). */
  pid: number;
  /** Stop the server and wait for the process to exit. Idempotent. */
  stop(): Promise<void>;
}

/** What the helper needs from a tap test: teardown registration. */
export interface TeardownHost {
  teardown(fn: () => unknown): void;
}

/** Options for {@link startWebdavServer}. */
export interface StartWebdavServerOptions {
  kind?: WebdavServerKind;
  /** Directory to serve. Default: a fresh temporary directory removed at teardown (not `t.testdir()`, which a second call in the same test wipes). */
  dir?: string;
  user?: string;
  password?: string;
  /** How long to wait for the port announcement. Default 20 s (rclone's first start reads its config). */
  startTimeoutMs?: number;
}

const MAIN = fileURLToPath(new URL('./webdav-server-main.ts', import.meta.url));

/** The kind chosen by `BASTION_TEST_WEBDAV` (default `webdav-server`). */
export function defaultWebdavServerKind(): WebdavServerKind {
  return process.env['BASTION_TEST_WEBDAV'] === 'rclone' ? 'rclone' : 'webdav-server';
}

let rcloneChecked: boolean | undefined;

/** True when an `rclone` binary is on PATH (checked once per process). */
export function rcloneAvailable(): boolean {
  if (rcloneChecked === undefined) {
    const r = spawnSync('rclone', ['version'], { stdio: 'ignore', timeout: 10_000 });
    rcloneChecked = r.status === 0;
  }
  return rcloneChecked;
}

/** Start a WebDAV server process; it is stopped when `t` tears down. */
export async function startWebdavServer(t: TeardownHost, opts: StartWebdavServerOptions = {}): Promise<WebdavTestServer> {
  const kind = opts.kind ?? defaultWebdavServerKind();
  if (kind === 'rclone' && !rcloneAvailable()) throw new Error('rclone was requested but is not on PATH (apt-get install rclone)');
  const ownDir = opts.dir === undefined;
  const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), 'bastion-webdav-')));
  const user = opts.user ?? 'bastion';
  const password = opts.password ?? `pw-${Math.random().toString(36).slice(2)}-ü`;

  const child = spawn(process.execPath, [MAIN], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, BASTION_WEBDAV_SERVER_CONFIG: JSON.stringify({ kind, dir, user, password }) },
  });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => {
    stderr = (stderr + c.toString('utf8')).slice(-8192);
  });
  const exited = once(child, 'exit').then(() => undefined);

  let stopped: Promise<void> | undefined;
  const stop = () => {
    stopped ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.stdin.end();
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      }
      if (ownDir) await rm(dir, { recursive: true, force: true });
    })();
    return stopped;
  };
  t.teardown(stop);

  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => fail(new Error(`WebDAV test server (${kind}) did not announce a port within ${opts.startTimeoutMs ?? 20_000} ms; stderr: ${stderr}`)), opts.startTimeoutMs ?? 20_000);
    const onData = (c: Buffer) => {
      out += c.toString('utf8');
      const m = /LISTENING (\d+)\n/.exec(out);
      if (m) {
        cleanup();
        resolve(Number(m[1]));
      }
    };
    const onExit = (code: number | null) => fail(new Error(`WebDAV test server (${kind}) exited with ${code} before listening; stderr: ${stderr}`));
    const fail = (err: Error) => {
      cleanup();
      void stop();
      reject(err);
    };
    const cleanup = () => {
      clearTimeout(timer);
      child.stdout.off('data', onData);
      child.off('exit', onExit);
    };
    child.stdout.on('data', onData);
    child.on('exit', onExit);
  });
  // Keep draining stdout so a chatty server never blocks on a full pipe.
  child.stdout.resume();

  return { kind, url: `http://127.0.0.1:${port}/`, dir, user, username: user, password, pid: child.pid ?? -1, stop };
}
