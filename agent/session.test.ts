import t from 'tap';
import { freePort, startHub } from '../test/agent-harness.ts';
import { makeAgent } from '../test/factories.ts';
import { AgentSession, type ModeChange } from './session.ts';

const hello = { type: 'hello' as const, version: 'test', capabilities: { kinds: ['snapshot_delete' as const], targets: ['local_dir' as const], formats: ['archive_v1' as const] } };

t.test('modes: waiting with growing jittered delays while the hub is away, stopped on stop()', async (t) => {
  const port = await freePort();
  if (process.env.DBG) console.log('DBG free port', port);
  const changes: ModeChange[] = [];
  const session = new AgentSession({ hubUrl: `http://127.0.0.1:${port}`, key: `bak_${'a'.repeat(43)}`, hello, backoff: { initialMs: 100, maxMs: 400 } });
  session.on('mode', (c: ModeChange) => changes.push(c));
  session.start();
  await new Promise((r) => setTimeout(r, 1500));
  const waits = changes.filter((c) => c.to === 'waiting').map((c) => c.retryInMs ?? 0);
  t.ok(waits.length >= 3, `retried ${waits.length} times`);
  t.ok(waits[0]! >= 50 && waits[0]! <= 100, `first delay in [50, 100] ms: ${waits[0]}`);
  t.ok(waits[1]! >= 100 && waits[1]! <= 200, `second in [100, 200]: ${waits[1]}`);
  t.ok(waits.slice(3).every((w) => w >= 200 && w <= 400), 'then capped');
  t.same(changes.slice(0, 4).map((c) => `${c.from}>${c.to}`), ['idle>connecting', 'connecting>waiting', 'waiting>connecting', 'connecting>waiting']);
  const stopped = await session.stop();
  t.equal(stopped.to, 'stopped');
  t.equal(session.mode, 'stopped');
});

t.test('a refused key stops the session for good; a live one reaches ready and pings', async (t) => {
  const hub = await startHub(t, { workers: false, agentTiming: { pingIntervalMs: 1000 } });
  const refused = new AgentSession({ hubUrl: hub.url, key: `bak_${'b'.repeat(43)}`, hello });
  refused.start();
  const end = await refused.stopped;
  t.match(end, { to: 'stopped', refused: true, reason: /agent_key_invalid/ });

  const a = await makeAgent(hub.pool);
  const live = new AgentSession({ hubUrl: hub.url, key: a.key, hello });
  const modes: string[] = [];
  const reasons: string[] = [];
  live.on('mode', (c: ModeChange) => {
    modes.push(c.to);
    if (c.reason) reasons.push(c.reason);
  });
  const welcomed = new Promise((r) => live.once('welcome', r));
  live.start();
  await welcomed;
  t.same(modes, ['connecting', 'handshaking', 'ready'], `no retry needed ${reasons.join('; ')}`);
  await new Promise((r) => setTimeout(r, 2500));
  t.equal(live.mode, 'ready', 'pings answered: still ready');
  const conn = hub.gateway.agents?.connectionOf(a.id);
  t.ok(conn && conn.lastFrameAt > conn.openedAt + 900, 'the hub saw pings after the hello');
  await hub.pool.query('select bastion.revoke_agent($1)', [a.id]);
  t.match(await live.stopped, { to: 'stopped', refused: true }, 'revoked: closed at once and stopped');
});
