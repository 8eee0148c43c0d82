/**
 * `bastion agents …` on the hub's machine: the agents from a terminal,
 * straight on the database (DATABASE_URL, or the embedded cluster of the data
 * directory), as the database owner — an administrator's tool, like `job`.
 *
 *   bastion agents list [--all] [--json]            name, id, online, last seen, version
 *   bastion agents token [--ttl 3600] [--uses 1] [--note TEXT]   an enrollment token (shown once)
 *   bastion agents revoke ID|NAME                  key refused, live socket closed, work in flight failed
 */
import type { Logger } from 'pino';
import { z } from 'zod';
import { UUID_RE } from '../../core/ids.ts';
import { createEnrollmentToken, listAgents, revokeAgent, type AgentRow } from '../../db/queries/agents.ts';
import { ConfigError, UsageError, type CommandArgs, type Config } from '../config.ts';
import { openToolDatabase } from '../tool-database.ts';

/** Flags of `bastion agents`. */
export const AGENTS_FLAGS = {
  all: { type: 'boolean' },
  json: { type: 'boolean' },
  ttl: { type: 'string' },
  uses: { type: 'string' },
  note: { type: 'string' },
} as const satisfies Record<string, { type: 'string' | 'boolean' }>;

/** `bastion agents --help`. */
export const AGENTS_USAGE = [
  'usage:',
  '  bastion agents list [--all] [--json]                      agents (with --all also revoked ones)',
  '  bastion agents token [--ttl SECONDS] [--uses N] [--note TEXT]   create an enrollment token (shown once)',
  '  bastion agents revoke ID|NAME                             revoke an agent',
  '',
  'Enroll an agent with: bastion agent --hub-url URL --enroll-token TOKEN --name NAME --data-dir DIR',
  'Database: DATABASE_URL, or the embedded one of --data-dir / BASTION_DATA_DIR.',
].join('\n');

const SUBCOMMAND_FLAGS: Record<string, ReadonlyArray<keyof typeof AGENTS_FLAGS>> = {
  list: ['all', 'json'],
  token: ['ttl', 'uses', 'note'],
  revoke: [],
};

const intFlag = (flag: string, min: number, max: number) =>
  z.coerce
    .number({ message: `${flag} must be a whole number` })
    .int(`${flag} must be a whole number`)
    .min(min, `${flag} must be at least ${min}`)
    .max(max, `${flag} must be at most ${max}`);

function ago(d: Date | null): string {
  if (!d) return 'never';
  const s = Math.max(0, Math.round((Date.now() - d.getTime()) / 1000));
  return s < 120 ? `${s} s ago` : s < 7200 ? `${Math.round(s / 60)} min ago` : d.toISOString();
}

function row(a: AgentRow): string {
  const state = a.revoked_at ? 'revoked' : a.online ? 'online' : 'offline';
  return `${a.name.padEnd(24)}  ${a.id}  ${state.padEnd(7)}  last seen ${ago(a.last_seen_at).padEnd(24)}  ${a.version ?? '-'}`;
}

/** Run `bastion agents`. */
export async function agentsCommand(config: Config, logger: Logger, _version: string, args: CommandArgs): Promise<number> {
  const sub = args.positionals[0];
  if (sub === undefined || !(sub in SUBCOMMAND_FLAGS)) {
    throw new UsageError(sub === undefined ? 'agents: missing subcommand (list, token or revoke); run "bastion agents --help"' : `agents: unknown subcommand ${JSON.stringify(sub.slice(0, 100))}`);
  }
  const expectedPositionals = sub === 'revoke' ? 2 : 1;
  if (args.positionals.length !== expectedPositionals) {
    throw new UsageError(sub === 'revoke' ? 'agents revoke: name exactly one agent (id or name)' : `agents ${sub}: unexpected argument ${JSON.stringify((args.positionals[1] ?? '').slice(0, 100))}`);
  }
  for (const [k, v] of Object.entries(args.flags)) {
    if (v !== undefined && !SUBCOMMAND_FLAGS[sub]!.includes(k as keyof typeof AGENTS_FLAGS)) throw new UsageError(`--${k} does not apply to "agents ${sub}"`);
  }
  const f = args.flags as Record<string, string | boolean | undefined>;
  let ttl = 3600;
  let uses = 1;
  if (sub === 'token') {
    const t = intFlag('--ttl', 60, 2_592_000).safeParse(f['ttl'] ?? 3600);
    if (!t.success) throw new ConfigError('--ttl', t.error.issues[0]?.message ?? 'invalid');
    const u = intFlag('--uses', 1, 1000).safeParse(f['uses'] ?? 1);
    if (!u.success) throw new ConfigError('--uses', u.error.issues[0]?.message ?? 'invalid');
    ttl = t.data;
    uses = u.data;
    if (typeof f['note'] === 'string' && (f['note'].length > 200 || /[\u0000-\u001f\u007f]/.test(f['note']))) throw new ConfigError('--note', 'must be at most 200 characters without control characters');
  }
  const quiet = logger.levelVal < 40 ? logger.child({}, { level: 'warn' }) : logger;
  const db = await openToolDatabase(config, quiet, `bastion-agents-${sub}`);
  try {
    if (sub === 'list') {
      const agents = await listAgents(db.pool, { includeRevoked: f['all'] === true });
      if (f['json'] === true) process.stdout.write(JSON.stringify(agents, null, 2) + '\n');
      else if (agents.length === 0) process.stdout.write('no agents; create an enrollment token with: bastion agents token\n');
      else for (const a of agents) process.stdout.write(row(a) + '\n');
    } else if (sub === 'token') {
      const t = await createEnrollmentToken(db.pool, { ttlSeconds: ttl, uses, note: typeof f['note'] === 'string' ? f['note'] : null });
      process.stdout.write(`${t.token}\n`);
      process.stderr.write(`enrollment token ${t.id}: ${t.remaining_uses} use(s), expires ${t.expires_at.toISOString()}; it is shown only now\n`);
    } else {
      const target: string = args.positionals[1] ?? '';
      const agents = await listAgents(db.pool, { includeRevoked: true });
      const matches = UUID_RE.test(target) ? agents.filter((a) => a.id === target) : agents.filter((a) => a.name.toLowerCase() === target.toLowerCase() && a.revoked_at === null);
      if (matches.length !== 1) throw new UsageError(`agents revoke: no agent ${JSON.stringify(target.slice(0, 100))}${UUID_RE.test(target) ? '' : ' (by name, among agents that are not revoked)'}`);
      const a = matches[0] as AgentRow;
      await revokeAgent(db.pool, a.id);
      process.stdout.write(`revoked agent ${a.name} (${a.id})\n`);
    }
    return 0;
  } finally {
    await db.close();
  }
}
