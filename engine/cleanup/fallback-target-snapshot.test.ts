import { randomUUID } from 'node:crypto';
import t from 'tap';
import { makeSpec } from '../../test/factories.ts';
import { fallbackTargetSnapshot } from './fallback-target-snapshot.ts';

t.test('a valid spec gives the snapshot a run records at start', async (t) => {
  const agent = randomUUID();
  t.same(fallbackTargetSnapshot(makeSpec({ target: { type: 'local_dir', base_dir: '/srv/b' } }), agent), {
    ok: true,
    snapshot: { node_id: agent, target: { type: 'local_dir', base_dir: '/srv/b' } },
  });
  const dav = fallbackTargetSnapshot(makeSpec({ target: { type: 'webdav', base_url: 'https://dav.example/x?ignored=1', secret_name: 'nas' } } as never), 'hub');
  t.same(dav, { ok: true, snapshot: { node_id: 'hub', target: { type: 'webdav', base_url: 'https://dav.example/x/', secret_name: 'nas' } } }, 'query dropped, trailing slash');
});

t.test('hostile specs and nodes: a reason and the field, never the value', async (t) => {
  const cases: Array<[string, unknown, string, string]> = [
    ['null spec', null, 'hub', 'invalid_job_spec'],
    ['a string', 'rm -rf /', 'hub', 'invalid_job_spec'],
    ['no target', { ...makeSpec(), target: undefined }, 'hub', 'invalid_job_spec'],
    ['relative base_dir', makeSpec({ target: { type: 'local_dir', base_dir: 'backups' } }), 'hub', 'invalid_job_spec'],
    ['dot-dot base_dir', makeSpec({ target: { type: 'local_dir', base_dir: '/srv/../etc' } }), 'hub', 'invalid_job_spec'],
    ['NUL in base_dir', makeSpec({ target: { type: 'local_dir', base_dir: '/srv/\0x' } }), 'hub', 'invalid_job_spec'],
    ['credentials in the URL', makeSpec({ target: { type: 'webdav', base_url: 'https://admin:hunter2@dav.example/', secret_name: 'n' } } as never), 'hub', 'invalid_job_spec'],
    ['a file: URL', makeSpec({ target: { type: 'webdav', base_url: 'file:///etc/passwd', secret_name: 'n' } } as never), 'hub', 'invalid_job_spec'],
    ['a secret name with a slash', makeSpec({ target: { type: 'webdav', base_url: 'https://dav.example/', secret_name: '../x' } } as never), 'hub', 'invalid_job_spec'],
    ['unknown target type', { ...makeSpec(), target: { type: 's3', bucket: 'b' } }, 'hub', 'invalid_job_spec'],
    ['an unknown key', { ...makeSpec(), surprise: true }, 'hub', 'invalid_job_spec'],
    ['a huge array', { ...makeSpec(), source: { type: 'filesystem', paths: Array.from({ length: 5000 }, (_, i) => `/p${i}`) } }, 'hub', 'invalid_job_spec'],
    ['a bad node', makeSpec(), '../hub', 'invalid_node_id'],
    ['an upper-case agent id', makeSpec(), randomUUID().toUpperCase(), 'invalid_node_id'],
  ];
  for (const [name, spec, node, reason] of cases) {
    const r = fallbackTargetSnapshot(spec, node);
    t.equal(r.ok, false, name);
    if (r.ok) continue;
    t.equal(r.reason, reason, name);
    t.notOk(r.message.includes('hunter2'), `${name}: no credential in the message`);
  }
  const r = fallbackTargetSnapshot(makeSpec({ target: { type: 'local_dir', base_dir: 'backups' } }), 'hub');
  t.match(!r.ok && r.message, /target\.base_dir/, 'the message names the field');
});
