/**
 * Process configuration from flags and environment, validated with zod.
 * Each setting has a flag and an environment variable; the flag wins. A bad
 * value is reported as one line naming the setting as the user wrote it
 * (`--listen` or `BASTION_LISTEN`) and the problem; the CLI exits with 2.
 */
import path from 'node:path';
import { z } from 'zod';
import { parseTrustedProxies, type TrustedProxies } from '../gateway/auth/client-address.ts';

/** A configuration problem: which setting, what is wrong. */
export class ConfigError extends Error {
  readonly setting: string;
  constructor(setting: string, problem: string) {
    super(`invalid ${setting}: ${problem}`);
    this.name = 'ConfigError';
    this.setting = setting;
  }
}

/** A command line that does not make sense (unknown subcommand, missing argument): one line, exit 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** Positional arguments and command-specific flags (besides settings) of a command line. */
export interface CommandArgs {
  positionals: string[];
  flags: Record<string, string | boolean | undefined>;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** `host:port` with an IPv4 address, a bracketed IPv6 address or a host name, and a port 0–65535. */
const listenSchema = z.string().transform((value, ctx) => {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(value.trim());
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) {
    ctx.addIssue({ code: 'custom', message: `expected host:port such as 127.0.0.1:8787, got ${JSON.stringify(value)}` });
    return z.NEVER;
  }
  const host = (m[1] as string).replace(/^\[|\]$/g, '');
  return { host, port };
});

const databaseUrlSchema = z.string().refine((value) => {
  try {
    const u = new URL(value);
    return (u.protocol === 'postgres:' || u.protocol === 'postgresql:') && u.hostname !== '';
  } catch {
    return false;
  }
}, 'expected a URL like postgres://user:password@host:5432/database');

/** Every setting: its flag, its environment variable and its schema. */
export const SETTINGS = {
  databaseUrl: { flag: 'database-url', env: 'DATABASE_URL', schema: databaseUrlSchema.optional() },
  dataDir: { flag: 'data-dir', env: 'BASTION_DATA_DIR', schema: z.string().min(1, 'must not be empty').default('./data') },
  listen: { flag: 'listen', env: 'BASTION_LISTEN', schema: listenSchema.default({ host: '127.0.0.1', port: 8787 }) },
  logLevel: { flag: 'log-level', env: 'BASTION_LOG_LEVEL', schema: z.enum(LOG_LEVELS, { message: `expected one of ${LOG_LEVELS.join(', ')}` }).default('info') },
  secretKey: {
    flag: 'secret-key',
    env: 'BASTION_SECRET_KEY',
    // Prefer the environment (a flag shows in `ps`); without either, <data dir>/secret.key is used (created on first use).
    schema: z
      .string()
      .refine((v) => /^[A-Za-z0-9+/]{43}=$/.test(v.trim()) && Buffer.from(v.trim(), 'base64').length === 32, 'expected base64 of exactly 32 bytes (openssl rand -base64 32)')
      .transform((v) => v.trim())
      .optional(),
  },
  trustedProxies: {
    flag: 'trusted-proxies',
    env: 'BASTION_TRUSTED_PROXIES',
    // Comma-separated addresses or CIDR networks of reverse proxies whose
    // X-Forwarded-For / X-Forwarded-Proto are believed (default: none).
    schema: z
      .string()
      .default('')
      .transform((v, ctx) => {
        try {
          return parseTrustedProxies(v);
        } catch (e) {
          ctx.addIssue({ code: 'custom', message: `${(e as Error).message}; expected addresses or CIDR networks separated by commas, e.g. 10.0.0.0/8,127.0.0.1` });
          return z.NEVER;
        }
      }),
  },
  graphiql: {
    flag: 'graphiql',
    env: 'BASTION_GRAPHIQL',
    // The Ruru GraphQL IDE at /graphiql (admins only).
    schema: z
      .enum(['on', 'off', 'true', 'false'], { message: 'expected on or off' })
      .default('on')
      .transform((v) => v === 'on' || v === 'true'),
  },
  workerConcurrency: {
    flag: 'worker-concurrency',
    env: 'BASTION_WORKER_CONCURRENCY',
    schema: z.coerce.number({ message: 'expected a whole number' }).int('expected a whole number').min(1, 'must be at least 1').max(256, 'must be at most 256').default(4),
  },
} as const;

/** Names of the settings. */
export type SettingName = keyof typeof SETTINGS;

/** The validated configuration. */
export interface Config {
  databaseUrl: string | undefined;
  /** Absolute path. */
  dataDir: string;
  listen: { host: string; port: number };
  logLevel: (typeof LOG_LEVELS)[number];
  workerConcurrency: number;
  /** BASTION_SECRET_KEY (base64 of 32 bytes), when set; never logged. */
  secretKey: string | undefined;
  /** Reverse proxies whose forwarding headers are believed. */
  trustedProxies: TrustedProxies;
  /** Serve the Ruru IDE at /graphiql (admins only). */
  graphiql: boolean;
}

/**
 * Build the configuration of a command from parsed flags and the
 * environment. Only the settings in `used` are read; the others keep their
 * defaults.
 */
export function loadConfig(flags: Record<string, string | undefined>, env: NodeJS.ProcessEnv, used: readonly SettingName[]): Config {
  const out: Record<string, unknown> = {};
  for (const [name, setting] of Object.entries(SETTINGS) as Array<[SettingName, (typeof SETTINGS)[SettingName]]>) {
    const fromFlag = used.includes(name) ? flags[setting.flag] : undefined;
    const fromEnv = used.includes(name) ? env[setting.env] : undefined;
    const raw = fromFlag ?? (fromEnv === '' ? undefined : fromEnv);
    const label = fromFlag !== undefined ? `--${setting.flag}` : setting.env;
    const parsed = setting.schema.safeParse(raw);
    if (!parsed.success) throw new ConfigError(label, parsed.error.issues[0]?.message ?? 'invalid value');
    out[name] = parsed.data;
  }
  const config = out as unknown as Config;
  config.dataDir = path.resolve(config.dataDir);
  return config;
}
