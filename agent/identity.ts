/**
 * The agent's identity on disk: `<data_dir>/agent.json`, written once at
 * enrollment with mode 0600 (the key is a bearer credential), atomically
 * (temporary file, fsync, rename), in a data directory of mode 0700.
 *
 *   {"v": 1, "hub_url": "https://hub.example.com", "agent_id": "…", "name": "nas-01",
 *    "key": "bak_…", "enrolled_at": "2026-…"}
 *
 * A later start reads it and needs no enrollment token; a start with a
 * different hub URL is refused (the identity belongs to one hub), as is a
 * damaged file. A file readable by others is tightened to 0600.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { BastionError } from '../core/errors.ts';
import { UUID_RE } from '../core/ids.ts';
import { AGENT_KEY_RE } from '../db/queries/agents.ts';
import { hubUrlSchema } from './hub-url.ts';

/** File name of the identity in the data directory. */
export const IDENTITY_FILE = 'agent.json';

export const identitySchema = z.object({
  v: z.literal(1),
  hub_url: hubUrlSchema,
  agent_id: z.string().regex(UUID_RE),
  name: z.string().min(1).max(64),
  key: z.string().regex(AGENT_KEY_RE),
  enrolled_at: z.string().max(40),
});
export type AgentIdentity = z.infer<typeof identitySchema>;

/** `<dataDir>/agent.json`. */
export function identityPath(dataDir: string): string {
  return path.join(dataDir, IDENTITY_FILE);
}

/** Create the data directory (0700) if needed. */
export async function ensureDataDir(dataDir: string): Promise<void> {
  await fs.mkdir(dataDir, { recursive: true, mode: 0o700 });
}

/** The stored identity, or null when the agent never enrolled here. */
export async function loadIdentity(dataDir: string): Promise<AgentIdentity | null> {
  const file = identityPath(dataDir);
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    raw = undefined;
  }
  const parsed = identitySchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new BastionError('agent_identity_mismatch', `${file} is damaged (${issue ? issue.path.join('.') || 'file' : 'file'}: ${issue?.message ?? 'invalid'}); move it away and enroll again`, {
      details: { field: 'data_dir', reason: 'identity_damaged' },
    });
  }
  const st = await fs.stat(file);
  if ((st.mode & 0o077) !== 0) await fs.chmod(file, 0o600);
  return parsed.data;
}

/** Write the identity atomically with mode 0600. */
export async function saveIdentity(dataDir: string, identity: AgentIdentity): Promise<void> {
  await ensureDataDir(dataDir);
  const file = identityPath(dataDir);
  const tmp = `${file}.tmp-${process.pid}`;
  const fh = await fs.open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(JSON.stringify(identitySchema.parse(identity), null, 2) + '\n');
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fs.chmod(tmp, 0o600);
  await fs.rename(tmp, file);
}

/** Refuse an identity that belongs to another hub. */
export function checkHub(identity: AgentIdentity, hubUrl: string): void {
  if (identity.hub_url !== hubUrl) {
    throw new BastionError(
      'agent_identity_mismatch',
      `this data directory belongs to the agent ${identity.name} of hub ${identity.hub_url}, not ${hubUrl}; use that hub URL, or another --data-dir to enroll with this hub`,
      { details: { field: 'hub_url', reason: 'different_hub' } },
    );
  }
}
