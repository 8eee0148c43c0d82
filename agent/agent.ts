/**
 * A running agent: identity (enroll once, then `agent.json`), the session to
 * the hub, and the work runner, wired together. `bastion agent` calls
 * {@link startAgent}; tests call it in-process too.
 *
 * Console lines (through `out`): enrolled, connected, disconnected and
 * retrying in N s, stopped, and one line per task start and end.
 */
import os from 'node:os';
import type { Logger } from 'pino';
import { AGENT_WORK_KINDS, type HubFrame, type OutgoingFrame } from '../core/agent-protocol.ts';
import { BastionError, isErrorCode } from '../core/errors.ts';
import { ENROLLMENT_TOKEN_RE, AGENT_KEY_RE } from '../db/queries/agents.ts';
import { enrollUrl } from './hub-url.ts';
import { checkHub, ensureDataDir, loadIdentity, saveIdentity, type AgentIdentity } from './identity.ts';
import { ReconnectBackoff, type BackoffPolicy } from './reconnect-backoff.ts';
import { ResultsCache } from './results-cache.ts';
import { AgentSession, type ModeChange } from './session.ts';
import { WorkRunner, type WorkRunnerOptions } from './work-runner.ts';

/** How to start an agent. */
export interface AgentOptions {
  /** Normalised hub URL (agent/hub-url.ts). */
  hubUrl: string;
  dataDir: string;
  /** Needed only for the first start. */
  enrollToken?: string | undefined;
  /** Name at enrollment (default: the host name). */
  name?: string | undefined;
  /** A new key from `rotate_agent_key`, to store before connecting. */
  replaceKey?: string | undefined;
  version: string;
  logger: Logger;
  /** Console lines (default: stdout). */
  out?: (line: string) => void;
  backoff?: Partial<BackoffPolicy>;
  work?: WorkRunnerOptions;
}

/** A started agent. */
export interface RunningAgent {
  readonly identity: AgentIdentity;
  readonly session: AgentSession;
  readonly runner: WorkRunner;
  /** Stop: interrupt work (the hub re-sends it later), close the socket. */
  stop(): Promise<ModeChange>;
}

function line(out: (l: string) => void, name: string, text: string): void {
  out(`agent ${name}: ${text}`);
}

/** Exchange an enrollment token for an identity, retrying while the hub cannot be reached. */
async function enroll(options: AgentOptions, out: (l: string) => void): Promise<AgentIdentity> {
  const token = options.enrollToken as string;
  const name = (options.name ?? os.hostname()).trim().slice(0, 64);
  const backoff = new ReconnectBackoff(options.backoff);
  for (;;) {
    let res: Response;
    try {
      res = await fetch(enrollUrl(options.hubUrl), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token, name }), signal: AbortSignal.timeout(30_000) });
    } catch (err) {
      const delay = backoff.next();
      line(out, name, `cannot reach the hub at ${options.hubUrl} to enroll (${(err as Error).message}); retrying in ${(delay / 1000).toFixed(1)} s`);
      await new Promise((r) => setTimeout(r, delay));
      continue;
    }
    const body = (await res.json().catch(() => ({}))) as { agent_id?: string; agent_key?: string; name?: string; error?: string; message?: string };
    if (res.status === 201 && body.agent_id && body.agent_key && AGENT_KEY_RE.test(body.agent_key)) {
      const identity: AgentIdentity = { v: 1, hub_url: options.hubUrl, agent_id: body.agent_id, name: body.name ?? name, key: body.agent_key, enrolled_at: new Date().toISOString() };
      await saveIdentity(options.dataDir, identity);
      line(out, identity.name, `enrolled with ${options.hubUrl} as ${identity.agent_id}; identity saved in ${options.dataDir}/agent.json`);
      return identity;
    }
    if (res.status >= 500 || res.status === 429) {
      const delay = Math.max(backoff.next(), Number(res.headers.get('retry-after') ?? 0) * 1000);
      line(out, name, `enrollment refused for now (HTTP ${res.status} ${body.error ?? ''}); retrying in ${(delay / 1000).toFixed(1)} s`);
      await new Promise((r) => setTimeout(r, delay));
      continue;
    }
    const code = isErrorCode(body.error) ? body.error : 'invalid_input';
    throw new BastionError(code, `enrollment refused: ${(body.message ?? `HTTP ${res.status}`).slice(0, 300)}`);
  }
}

/** Load or create the identity, then connect. */
export async function startAgent(options: AgentOptions): Promise<RunningAgent> {
  const out = options.out ?? ((l: string) => process.stdout.write(l + '\n'));
  await ensureDataDir(options.dataDir);
  let identity = await loadIdentity(options.dataDir);
  if (identity) {
    checkHub(identity, options.hubUrl);
    if (options.enrollToken) line(out, identity.name, 'already enrolled; --enroll-token is not needed and was not used');
  } else {
    if (!options.enrollToken) {
      throw new BastionError('invalid_config', `${options.dataDir} holds no agent identity: the first start needs --enroll-token (ask an admin: bastion agents token)`, { details: { field: 'enroll_token', reason: 'required' } });
    }
    if (!ENROLLMENT_TOKEN_RE.test(options.enrollToken)) throw new BastionError('enrollment_token_invalid', 'the enrollment token is malformed (expected bet_ and 43 characters)');
    identity = await enroll(options, out);
  }
  if (options.replaceKey !== undefined) {
    if (!AGENT_KEY_RE.test(options.replaceKey)) throw new BastionError('agent_key_invalid', 'the new key is malformed (expected bak_ and 43 characters)');
    identity = { ...identity, key: options.replaceKey };
    await saveIdentity(options.dataDir, identity);
    line(out, identity.name, 'stored the new key');
  }
  const id = identity;
  const cache = await ResultsCache.open(options.dataDir);
  const session = new AgentSession({
    hubUrl: options.hubUrl,
    key: id.key,
    hello: {
      type: 'hello',
      version: options.version,
      capabilities: { kinds: [...AGENT_WORK_KINDS], targets: ['local_dir', 'webdav'], formats: ['archive_v1', 'raw_tree_v1'], os: process.platform, arch: process.arch, hostname: os.hostname().slice(0, 255) },
    },
    ...(options.backoff ? { backoff: options.backoff } : {}),
  });
  const runner = new WorkRunner(
    {
      agentId: id.agent_id,
      dataDir: options.dataDir,
      cache,
      send: (frame: OutgoingFrame) => session.send(frame),
      out: (l) => line(out, id.name, l),
      logger: options.logger,
    },
    options.work,
  );
  session.on('mode', (c: ModeChange) => {
    if (c.to === 'ready') line(out, id.name, `connected to ${options.hubUrl}`);
    else if (c.to === 'waiting') line(out, id.name, `disconnected (${c.reason}); retrying in ${((c.retryInMs ?? 0) / 1000).toFixed(1)} s`);
    else if (c.to === 'stopped') line(out, id.name, `stopped: ${c.reason ?? 'stopped'}`);
  });
  session.on('frame', (frame: HubFrame) => {
    switch (frame.type) {
      case 'snapshot_delete':
      case 'incomplete_cleanup':
      case 'backup_run':
        runner.accept(frame);
        return;
      case 'cancel':
        runner.cancel(frame.message_id, frame.reason);
        return;
      case 'protocol_error':
        options.logger.warn({ code: frame.code, ref_type: frame.ref_type, message_id: frame.message_id, message: frame.message }, 'the hub refused a frame from this agent');
        return;
    }
  });
  session.on('invalid', (r: { code: string; message: string; type?: string; messageId?: string }) => {
    options.logger.warn({ code: r.code, type: r.type, message_id: r.messageId }, 'refused a frame from the hub');
    if (r.messageId && (r.type === 'snapshot_delete' || r.type === 'incomplete_cleanup' || r.type === 'backup_run')) runner.refuse(r.type, r.messageId, r.message);
    else session.send({ type: 'protocol_error', code: r.code as never, message: r.message, ...(r.type ? { ref_type: r.type } : {}), ...(r.messageId ? { message_id: r.messageId } : {}) });
  });
  session.start();
  return {
    identity: id,
    session,
    runner,
    stop: async () => {
      await runner.stop();
      return session.stop('the agent was asked to stop');
    },
  };
}
