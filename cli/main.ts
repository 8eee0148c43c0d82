/**
 * The `bastion` command line: `bastion <command> [flags]`.
 *
 * Exit codes: 0 success; 1 a runtime failure; 2 bad usage or configuration
 * (one line on stderr naming the setting and the problem, no stack trace).
 * We call process.exit explicitly: some libraries register exit hooks that
 * would lose process.exitCode (NOTES.md).
 */
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { BastionError } from '../core/errors.ts';
import { AGENT_FLAGS, AGENT_USAGE, agentCommand } from './commands/agent.ts';
import { AGENTS_FLAGS, AGENTS_USAGE, agentsCommand } from './commands/agents.ts';
import { JOB_FLAGS, JOB_USAGE, jobCommand } from './commands/job.ts';
import { SECRET_FLAGS, SECRET_USAGE, secretCommand } from './commands/secret.ts';
import { USER_FLAGS, USER_USAGE, userCommand } from './commands/user.ts';
import { ConfigError, SETTINGS, UsageError, loadConfig, type CommandArgs, type Config, type SettingName } from './config.ts';
import { createLogger } from './logger.ts';
import type { Logger } from 'pino';

interface Command {
  summary: string;
  settings: readonly SettingName[];
  /** Flags of this command besides its settings (`--archived`, `--follow`, …). */
  flags?: Record<string, { type: 'string' | 'boolean' }>;
  /** Accepts positional arguments (subcommands, names). */
  positionals?: boolean;
  /** Lines shown by `bastion <command> --help`. */
  usage?: string;
  run(config: Config, logger: Logger, version: string, args: CommandArgs): Promise<number>;
}

// The server commands load the gateway, PostGraphile and graphile-worker
// (~0.5 s of imports); load them only when they run, so tool commands start fast.
const hubCommand: Command['run'] = async (config, logger, version) => (await import('./commands/hub.ts')).hubCommand(config, logger, version);
const workerCommand: Command['run'] = async (config, logger) => (await import('./commands/worker.ts')).workerCommand(config, logger);
const migrateCommand: Command['run'] = async (config, logger) => (await import('./commands/migrate.ts')).migrateCommand(config, logger);

const COMMANDS: Record<string, Command> = {
  hub: {
    summary: 'run the hub: database, migrations, workers and the HTTP gateway',
    settings: ['databaseUrl', 'dataDir', 'listen', 'logLevel', 'workerConcurrency', 'secretKey', 'trustedProxies', 'graphiql'],
    run: hubCommand,
  },
  worker: {
    summary: 'run background workers only (scale-out)',
    settings: ['databaseUrl', 'dataDir', 'logLevel', 'workerConcurrency', 'secretKey'],
    run: workerCommand,
  },
  job: {
    summary: 'list, create and run backup jobs (job --help)',
    settings: ['databaseUrl', 'dataDir', 'logLevel'],
    flags: JOB_FLAGS,
    positionals: true,
    usage: JOB_USAGE,
    run: jobCommand,
  },
  secret: {
    summary: 'store, list and delete node-scoped secrets such as WebDAV logins (secret --help)',
    settings: ['databaseUrl', 'dataDir', 'logLevel', 'secretKey'],
    flags: SECRET_FLAGS,
    positionals: true,
    usage: SECRET_USAGE,
    run: secretCommand,
  },
  user: {
    summary: 'create users and set passwords, e.g. the first admin of a headless install (user --help)',
    settings: ['databaseUrl', 'dataDir', 'logLevel'],
    flags: USER_FLAGS,
    positionals: true,
    usage: USER_USAGE,
    run: userCommand,
  },
  agent: {
    summary: 'run an agent on this machine: enroll once, then execute backups, deletes and cleanups the hub sends (agent --help)',
    settings: ['dataDir', 'logLevel'],
    flags: AGENT_FLAGS,
    positionals: true,
    usage: AGENT_USAGE,
    run: agentCommand,
  },
  agents: {
    summary: 'list agents, create enrollment tokens, revoke agents (agents --help)',
    settings: ['databaseUrl', 'dataDir', 'logLevel'],
    flags: AGENTS_FLAGS,
    positionals: true,
    usage: AGENTS_USAGE,
    run: agentsCommand,
  },
  migrate: {
    summary: 'apply database migrations and exit',
    settings: ['databaseUrl', 'dataDir', 'logLevel'],
    run: migrateCommand,
  },
};

function usage(): string {
  const lines = ['usage: bastion <command> [flags]', '', 'commands:'];
  for (const [name, c] of Object.entries(COMMANDS)) lines.push(`  ${name.padEnd(10)} ${c.summary}`);
  lines.push('', 'flags (each also read from its environment variable):');
  for (const s of Object.values(SETTINGS)) lines.push(`  --${s.flag.padEnd(20)} ${s.env}`);
  return lines.join('\n');
}

function fail(message: string, code: number): never {
  process.stderr.write(`bastion: ${message}\n`);
  process.exit(code);
}

const version = (JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage() + '\n');
    return name ? 0 : 2;
  }
  if (name === '--version') {
    process.stdout.write(version + '\n');
    return 0;
  }
  const command = COMMANDS[name];
  if (!command) fail(`unknown command ${JSON.stringify(name)}; run "bastion --help"`, 2);
  const options: Record<string, { type: 'string' | 'boolean' }> = { help: { type: 'boolean' }, ...command.flags };
  for (const s of command.settings) options[SETTINGS[s].flag] = { type: 'string' };
  let values: Record<string, string | boolean | undefined>;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({ args: rest, options, strict: true, allowPositionals: command.positionals === true }));
  } catch (e) {
    fail(`${(e as Error).message.split('\n')[0]}`, 2);
  }
  if (values.help) {
    process.stdout.write((command.usage ?? usage()) + '\n');
    return 0;
  }
  const settingFlags = new Set<string>(command.settings.map((s) => SETTINGS[s].flag));
  const flags: CommandArgs['flags'] = {};
  for (const [k, v] of Object.entries(values)) if (k !== 'help' && !settingFlags.has(k)) flags[k] = v;
  const config = loadConfig(values as Record<string, string | undefined>, process.env, command.settings);
  const logger = createLogger(config.logLevel, `bastion-${name}`);
  return await command.run(config, logger, version, { positionals, flags });
}

try {
  process.exit(await main(process.argv.slice(2)));
} catch (e) {
  if (e instanceof ConfigError) fail(e.message, 2);
  if (e instanceof UsageError) fail(e.message, 2);
  if (e instanceof BastionError) fail(`${e.code}: ${e.message}`, 1);
  process.stderr.write(`bastion: unexpected error: ${(e as Error)?.stack ?? String(e)}\n`);
  process.exit(1);
}
