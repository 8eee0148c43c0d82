/**
 * `bastion agent`: run an agent on this machine.
 *
 *   bastion agent --hub-url URL --enroll-token bet_… --name NAME --data-dir DIR   (first start)
 *   bastion agent --hub-url URL --data-dir DIR                                    (later starts)
 *   bastion agent --hub-url URL --data-dir DIR --replace-key                      (new key on stdin)
 *
 * The first start exchanges the enrollment token for the agent's identity and
 * keeps it in DIR/agent.json (mode 0600); later starts need no token and
 * refuse another hub URL. The token and the hub URL may also come from
 * BASTION_ENROLL_TOKEN and BASTION_HUB_URL (a flag shows in `ps`).
 *
 * It prints its state changes (enrolled, connected, disconnected and retrying
 * in N s, stopped) and one line per task. Exit codes: 0 after SIGINT/SIGTERM,
 * 1 when the hub refused the agent (revoked, key replaced, enrollment
 * refused), 2 for bad flags.
 */
import type { Logger } from 'pino';
import { z } from 'zod';
import { ENROLLMENT_TOKEN_RE } from '../../db/queries/agents.ts';
import { hubUrlSchema } from '../../agent/hub-url.ts';
import { ConfigError, UsageError, type CommandArgs, type Config } from '../config.ts';
import { waitForShutdownSignal } from '../shutdown.ts';

/** Flags of `bastion agent` (besides --data-dir and --log-level). */
export const AGENT_FLAGS = {
  'hub-url': { type: 'string' },
  'enroll-token': { type: 'string' },
  name: { type: 'string' },
  'replace-key': { type: 'boolean' },
} as const satisfies Record<string, { type: 'string' | 'boolean' }>;

/** `bastion agent --help`. */
export const AGENT_USAGE = [
  'usage:',
  '  bastion agent --hub-url URL --enroll-token TOKEN --name NAME --data-dir DIR   first start: enroll, then run',
  '  bastion agent --hub-url URL --data-dir DIR                                    later starts',
  '  bastion agent --hub-url URL --data-dir DIR --replace-key                      store a rotated key (read from stdin), then run',
  '',
  'An admin creates the token on the hub (bastion agents token, or POST /api/enrollment-tokens).',
  'The identity is kept in DIR/agent.json (mode 0600). BASTION_HUB_URL and BASTION_ENROLL_TOKEN',
  'may replace the flags. Exit 0 after SIGINT/SIGTERM, 1 when the hub refuses the agent.',
].join('\n');

const flagsSchema = z.object({
  hubUrl: hubUrlSchema,
  enrollToken: z.string().regex(ENROLLMENT_TOKEN_RE, 'expected bet_ followed by 43 letters, digits, "-" or "_"').optional(),
  name: z
    .string()
    .transform((v) => v.trim())
    .pipe(
      z
        .string()
        .min(1, 'must not be empty')
        .max(64, 'must be at most 64 characters')
        .refine((v) => !/[\u0000-\u001f\u007f]/.test(v), 'must not contain control characters'),
    )
    .optional(),
});

const LABELS: Record<string, string> = { hubUrl: '--hub-url', enrollToken: '--enroll-token', name: '--name' };

/** Validate the agent's flags (and their environment fallbacks); ConfigError naming the flag otherwise. */
export function parseAgentFlags(flags: CommandArgs['flags'], env: NodeJS.ProcessEnv): z.output<typeof flagsSchema> {
  const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
  const raw = {
    hubUrl: str(flags['hub-url']) ?? (env['BASTION_HUB_URL'] || undefined),
    enrollToken: str(flags['enroll-token']) ?? (env['BASTION_ENROLL_TOKEN'] || undefined),
    name: str(flags['name']),
  };
  if (raw.hubUrl === undefined) throw new ConfigError('--hub-url', 'required (or set BASTION_HUB_URL), e.g. --hub-url https://hub.example.com');
  const parsed = flagsSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const key = String(issue?.path[0] ?? 'hubUrl');
    throw new ConfigError(LABELS[key] ?? key, issue?.message ?? 'invalid value');
  }
  return parsed.data;
}

async function readKeyFromStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of process.stdin) {
    size += (c as Buffer).length;
    if (size > 4096) throw new UsageError('agent --replace-key: more than 4096 bytes on stdin');
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8').trim();
}

/** Run `bastion agent`. */
export async function agentCommand(config: Config, logger: Logger, version: string, args: CommandArgs): Promise<number> {
  if (args.positionals.length > 0) throw new UsageError(`agent: unexpected argument ${JSON.stringify(args.positionals[0]?.slice(0, 100))}; run "bastion agent --help"`);
  const flags = parseAgentFlags(args.flags, process.env);
  // The hub's default data directory (./data) must not be shared by accident.
  if (!process.env['BASTION_DATA_DIR'] && !process.argv.some((a) => a === '--data-dir' || a.startsWith('--data-dir='))) {
    throw new ConfigError('--data-dir', 'required for an agent (its identity and results cache live there), e.g. --data-dir /var/lib/bastion-agent');
  }
  const replaceKey = args.flags['replace-key'] === true ? await readKeyFromStdin() : undefined;
  // The agent loads ws and the format engine: only when it runs.
  const { startAgent } = await import('../../agent/agent.ts');
  // Diagnostics and tests (docs/agents.md): hold every local removal for N ms
  // after its safety checks, so a kill "mid-delete" can be staged.
  const pauseMs = z.coerce.number().int().min(0).max(600_000).catch(0).parse(process.env['BASTION_AGENT_PAUSE_BEFORE_REMOVE_MS'] ?? 0);
  const agent = await startAgent({
    hubUrl: flags.hubUrl,
    dataDir: config.dataDir,
    enrollToken: flags.enrollToken,
    name: flags.name,
    replaceKey,
    version,
    logger,
    ...(pauseMs > 0
      ? {
          work: {
            local: {
              beforeRemove: async () => {
                process.stdout.write(`agent: BASTION_AGENT_PAUSE_BEFORE_REMOVE_MS: holding the removal for ${pauseMs} ms\n`);
                await new Promise((r) => setTimeout(r, pauseMs));
              },
            },
          },
        }
      : {}),
  });
  const reason = await Promise.race([waitForShutdownSignal(logger).then(() => 'signal' as const), agent.session.stopped.then((c) => c)]);
  if (reason === 'signal') {
    await agent.stop();
    return 0;
  }
  return reason.refused ? 1 : 0;
}
