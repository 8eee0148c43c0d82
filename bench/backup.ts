/**
 * Backup throughput: archive_v1 of a generated tree (≥ 1 GiB, mixed file
 * sizes, half incompressible and half text-like content) into a local_dir
 * target, against `tar -cf - | zstd -3` on the same tree in the same run.
 * Both write their output to the same disk and make it durable (our parts are
 * fsynced; the CLI's archive gets `sync FILE`). The tree is read once before
 * timing so both sides read from the page cache; rounds alternate CLI and
 * ours and the best round of each counts. Our side runs in a child process so
 * its peak RSS (`process.resourceUsage().maxRSS`) is ours alone.
 *
 *   npm run bench -- backup [--gib 1] [--rounds 2] [--dir /tmp]
 *
 * Ends with: RESULT name=backup ours_mbps=… cli_mbps=… ratio=… peak_rss_mib=…
 * (MB = 10^6 bytes of source data per second).
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import crypto from 'node:crypto';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const JOB = '6a1c2f0e-5b7d-4e2a-9c3b-8d4f1e2a3b4c';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
}

if (process.argv[2] === '--child') {
  await child(JSON.parse(process.argv[3]!) as ChildArgs);
} else {
  await main();
}

interface ChildArgs {
  src: string;
  base: string;
  staging: string;
}

/** Our side: one archive_v1 backup, timed, with the child's own peak RSS. */
async function child(a: ChildArgs): Promise<void> {
  const { runBackup } = await import('../engine/format/run-backup.ts');
  const { openLocalRunDirWriter } = await import('../engine/targets/local-dir.ts');
  const runId = crypto.randomUUID();
  const writer = await openLocalRunDirWriter({ baseDir: a.base, jobId: JOB, runId });
  const t0 = performance.now();
  const s = await runBackup({
    jobId: JOB,
    runId,
    startedAt: new Date(),
    source: { paths: [a.src], include: [], exclude: [], symlinks: 'keep' },
    format: 'archive_v1',
    encryption: { type: 'none' },
    partSizeBytes: 256 * MiB,
    writer,
    stagingDir: `${a.staging}/${runId}`,
    xattrs: true,
  });
  const seconds = (performance.now() - t0) / 1000;
  console.log(
    JSON.stringify({
      seconds,
      source_bytes: s.source_total.bytes,
      transfer_bytes: s.transfer_total_bytes,
      parts: s.parts,
      peak_rss_mib: process.resourceUsage().maxRSS / 1024,
    }),
  );
}

function ensureZstd(): void {
  if (spawnSync('zstd', ['--version']).status === 0) return;
  if (process.getuid?.() !== 0) {
    console.error('bench/backup needs the zstd CLI (apt-get install zstd) to measure the anchor; it is not installed and we are not root.');
    process.exit(1);
  }
  console.error('zstd CLI missing: installing it with apt-get…');
  spawnSync('apt-get', ['update'], { stdio: 'inherit' });
  const r = spawnSync('apt-get', ['install', '-y', 'zstd'], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  if (r.status !== 0 || spawnSync('zstd', ['--version']).status !== 0) {
    console.error('could not install zstd; install it and run again');
    process.exit(1);
  }
}

/** Small deterministic PRNG (mulberry32): reproducible trees without crypto cost. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** 32 MiB of text-like content: words from a 4,000-word vocabulary, Zipf-ish, with numbers and line breaks. */
function textCorpus(rand: () => number): Buffer {
  const vocab = Array.from({ length: 4000 }, () => {
    const len = 2 + Math.floor(rand() * 9);
    let w = '';
    for (let i = 0; i < len; i++) w += String.fromCharCode(97 + Math.floor(rand() * 26));
    return w;
  });
  const parts: string[] = [];
  let n = 0;
  while (n < 32 * MiB) {
    let w = vocab[Math.floor(rand() ** 3 * vocab.length)]!;
    if (rand() < 0.05) w += String(Math.floor(rand() * 100000));
    w += rand() < 0.08 ? '\n' : ' ';
    parts.push(w);
    n += w.length;
  }
  return Buffer.from(parts.join(''));
}

interface TreeStats {
  files: number;
  dirs: number;
  bytes: number;
  randomBytes: number;
}

/** Generate the tree: 50 % of bytes in 64–160 MiB files, 35 % in 1–16 MiB files, 15 % in 1–256 KiB files. */
async function generateTree(root: string, totalBytes: number): Promise<TreeStats> {
  const rand = prng(42);
  const corpus = textCorpus(rand);
  const stats: TreeStats = { files: 0, dirs: 1, bytes: 0, randomBytes: 0 };
  await fs.mkdir(root);
  const content = async (path: string, size: number, random: boolean) => {
    const fh = await fs.open(path, 'w');
    let left = size;
    while (left > 0) {
      const n = Math.min(left, 16 * MiB);
      if (random) await fh.write(crypto.randomBytes(n));
      else {
        const off = Math.floor(rand() * (corpus.length - n));
        await fh.write(corpus.subarray(off, off + n));
      }
      left -= n;
    }
    await fh.close();
    stats.files++;
    stats.bytes += size;
    if (random) stats.randomBytes += size;
  };
  const classes: Array<[number, number, number, string]> = [
    [0.5, 64 * MiB, 160 * MiB, 'large'],
    [0.35, 1 * MiB, 16 * MiB, 'medium'],
    [0.15, 1024, 256 * 1024, 'small'],
  ];
  for (const [share, min, max, name] of classes) {
    const budget = Math.ceil(totalBytes * share);
    let used = 0;
    let i = 0;
    let dir = '';
    while (used < budget) {
      if (i % 200 === 0) {
        dir = `${root}/${name}/d${String(Math.floor(i / 200)).padStart(3, '0')}`;
        await fs.mkdir(dir, { recursive: true });
        stats.dirs++;
      }
      const size = Math.min(budget - used, Math.floor(min + rand() * (max - min)));
      await content(`${dir}/f${String(i).padStart(5, '0')}.${i % 2 ? 'bin' : 'txt'}`, size, i % 2 === 1);
      used += size;
      i++;
    }
    stats.dirs++;
  }
  return stats;
}

async function warmCache(root: string): Promise<void> {
  spawnSync('sh', ['-c', `find '${root}' -type f -exec cat {} + > /dev/null`]);
}

function runCli(root: string, out: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const parent = root.replace(/\/[^/]+$/, '');
    const name = root.slice(parent.length + 1);
    const t0 = performance.now();
    const p = spawn('bash', ['-c', `set -o pipefail; tar -cf - -C '${parent}' '${name}' | zstd -3 -q -f -o '${out}' && sync '${out}'`], { stdio: ['ignore', 'ignore', 'inherit'] });
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve((performance.now() - t0) / 1000) : reject(new Error(`tar | zstd exited ${code}`))));
  });
}

interface ChildResult {
  seconds: number;
  source_bytes: number;
  transfer_bytes: number;
  parts: number;
  peak_rss_mib: number;
}

function runOurs(a: ChildArgs): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const self = fileURLToPath(import.meta.url);
    const p = spawn(process.execPath, [self, '--child', JSON.stringify(a)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    p.on('error', reject);
    p.on('close', (code) => {
      if (code !== 0) return reject(new Error(`our backup child exited ${code}`));
      resolve(JSON.parse(out.trim().split('\n').at(-1)!) as ChildResult);
    });
  });
}

async function main(): Promise<void> {
  const gib = Math.max(1, Number(arg('gib', '1')));
  const rounds = Math.max(1, Math.floor(Number(arg('rounds', '2'))));
  ensureZstd();
  const work = await fs.mkdtemp(`${arg('dir', os.tmpdir())}/bastion-bench-backup-`);
  try {
    const src = `${work}/tree`;
    process.stdout.write(`generating ${gib} GiB tree in ${src} … `);
    const t0 = performance.now();
    const tree = await generateTree(src, gib * GiB);
    console.log(`${((performance.now() - t0) / 1000).toFixed(1)} s`);
    console.log(`tree: ${(tree.bytes / GiB).toFixed(2)} GiB in ${tree.files} files, ${tree.dirs} dirs, ${((100 * tree.randomBytes) / tree.bytes).toFixed(0)} % incompressible; ${os.availableParallelism()} CPUs`);
    await warmCache(src);

    let bestCli = Infinity;
    let bestOurs: ChildResult | null = null;
    let cliBytes = 0;
    for (let r = 1; r <= rounds; r++) {
      const cliOut = `${work}/cli.tar.zst`;
      const cli = await runCli(src, cliOut);
      cliBytes = (await fs.stat(cliOut)).size;
      await fs.rm(cliOut);
      const base = `${work}/target`;
      await fs.rm(base, { recursive: true, force: true });
      await fs.mkdir(base);
      const ours = await runOurs({ src, base, staging: `${work}/staging` });
      bestCli = Math.min(bestCli, cli);
      if (!bestOurs || ours.seconds < bestOurs.seconds) bestOurs = ours;
      const mbps = (s: number) => (tree.bytes / s / 1e6).toFixed(0);
      console.log(
        `round ${r}: cli ${cli.toFixed(2)} s (${mbps(cli)} MB/s)   ours ${ours.seconds.toFixed(2)} s (${mbps(ours.seconds)} MB/s, ${ours.parts} parts, peak RSS ${ours.peak_rss_mib.toFixed(0)} MiB)`,
      );
    }
    const ours = bestOurs!;
    console.log(`output: cli ${(cliBytes / 1e6).toFixed(0)} MB, ours ${(ours.transfer_bytes / 1e6).toFixed(0)} MB (ratio to source ${(cliBytes / tree.bytes).toFixed(3)} vs ${(ours.transfer_bytes / tree.bytes).toFixed(3)})`);
    const oursMbps = tree.bytes / ours.seconds / 1e6;
    const cliMbps = tree.bytes / bestCli / 1e6;
    console.log(`RESULT name=backup ours_mbps=${oursMbps.toFixed(1)} cli_mbps=${cliMbps.toFixed(1)} ratio=${(oursMbps / cliMbps).toFixed(3)} peak_rss_mib=${ours.peak_rss_mib.toFixed(0)}`);
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}
