/**
 * Child-process entry of the WebDAV test server (see test/webdav-server.ts).
 * Runs either the npm `webdav-server` 2.6.3 package over a directory, or
 * supervises Debian's `rclone serve webdav`, and prints one line
 * `LISTENING <port>` on stdout once the server accepts connections.
 *
 * Configuration arrives as JSON in the environment variable
 * BASTION_WEBDAV_SERVER_CONFIG: {kind: 'webdav-server' | 'rclone', dir, user, password}.
 *
 * The process exits when its stdin closes, so a test runner killed with
 * SIGKILL never leaves a server (or an rclone grandchild) behind: the pipe
 * closes with the parent and this process takes its server down.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import webdavServer from 'webdav-server';

interface Config {
  kind: 'webdav-server' | 'rclone';
  dir: string;
  user: string;
  password: string;
}

const config = JSON.parse(process.env['BASTION_WEBDAV_SERVER_CONFIG'] ?? 'null') as Config | null;
if (config === null || typeof config.dir !== 'string' || typeof config.user !== 'string' || typeof config.password !== 'string') {
  process.stderr.write('BASTION_WEBDAV_SERVER_CONFIG missing or invalid\n');
  process.exit(2);
}

let shutdown: () => void = () => process.exit(0);
process.stdin.on('end', () => shutdown());
process.stdin.on('error', () => shutdown());
process.stdin.resume();
process.on('SIGTERM', () => shutdown());
process.on('SIGINT', () => shutdown());

if (config.kind === 'rclone') startRclone(config);
else startWebdavServer(config);

function startWebdavServer(cfg: Config): void {
  const webdav = webdavServer.v2;
  const users = new webdav.SimpleUserManager();
  const user = users.addUser(cfg.user, cfg.password, false);
  const privileges = new webdav.SimplePathPrivilegeManager();
  privileges.setRights(user, '/', ['all']);
  const server = new webdav.WebDAVServer({
    requireAuthentification: true,
    httpAuthentication: new webdav.HTTPBasicAuthentication(users, 'bastion-test'),
    privilegeManager: privileges,
    rootFileSystem: new webdav.PhysicalFileSystem(cfg.dir),
    hostname: '127.0.0.1',
    port: 0,
  });
  shutdown = () => {
    // Open keep-alive connections would hold close() forever; the process is going anyway.
    server.stop(() => process.exit(0));
    setTimeout(() => process.exit(0), 200).unref();
  };
  server.start((httpServer) => {
    const addr = httpServer?.address();
    if (addr === null || addr === undefined || typeof addr === 'string') {
      process.stderr.write('webdav-server did not report a TCP address\n');
      process.exit(1);
    }
    process.stdout.write(`LISTENING ${addr.port}\n`);
  });
}

function startRclone(cfg: Config): void {
  const args = ['serve', 'webdav', cfg.dir, '--addr', '127.0.0.1:0', '--user', cfg.user, '--pass', cfg.password, '--dir-cache-time', '0s', '--config', ''];
  const child: ChildProcess = spawn('rclone', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let announced = false;
  let log = '';
  const onOutput = (chunk: Buffer) => {
    log += chunk.toString('utf8');
    if (log.length > 65536) log = log.slice(-65536);
    const m = /https?:\/\/127\.0\.0\.1:(\d+)\//.exec(log);
    if (!announced && m) {
      announced = true;
      process.stdout.write(`LISTENING ${m[1]}\n`);
    }
    if (announced) process.stderr.write(chunk);
  };
  child.stdout?.on('data', onOutput);
  child.stderr?.on('data', onOutput);
  child.on('error', (err) => {
    process.stderr.write(`rclone could not start: ${err.message}\n`);
    process.exit(1);
  });
  child.on('exit', (code, signal) => {
    if (!announced) process.stderr.write(log);
    process.exit(code ?? (signal ? 1 : 0));
  });
  shutdown = () => {
    child.kill('SIGTERM');
    setTimeout(() => child.kill('SIGKILL'), 3000).unref();
  };
}
