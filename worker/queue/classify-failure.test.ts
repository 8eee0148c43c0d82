import t from 'tap';
import { BastionError } from '../../core/errors.ts';
import { TaskAttemptError } from '../../core/task-attempt-error.ts';
import { WebdavError } from '../../core/webdav-errors.ts';
import { SecretError } from '../../engine/secrets/secret-key.ts';
import { classifyFailure } from './classify-failure.ts';

t.test('classified errors keep their kind, fields and Retry-After', async (t) => {
  const a = classifyFailure(new TaskAttemptError('offline', 'agent_offline', 'agent x is away', { fields: { agent_id: 'x' }, retryAfterSeconds: 5 }));
  t.same([a.kind, a.error, a.fields['agent_id'], a.fields['reason'], a.retryAfterSeconds], ['offline', 'agent x is away', 'x', 'agent_offline', 5]);
  const w = classifyFailure(new WebdavError('DELETE https://dav.example/j/r/ failed: 429', { kind: 'network', reason: 'status', status: 429, retryAfterSeconds: 30, method: 'DELETE', url: 'https://dav.example/j/r/' }));
  t.same([w.kind, w.fields['http_status'], w.fields['retry_after_secs'], w.fields['http_method'], w.retryAfterSeconds], ['network', 429, 30, 'DELETE', 30]);
  const s = classifyFailure(new SecretError('secret_not_found', 'WebDAV secret "dav" does not exist on node hub'));
  t.same([s.kind, s.fields['error_code']], ['config', 'secret_not_found']);
  t.equal(classifyFailure(new BastionError('target_io_error', 'disk')).kind, 'io');
  t.equal(classifyFailure(new BastionError('invalid_input', 'x')).kind, 'unknown');
});

t.test('file system errors are io; anything else unknown; every failure gets a hint', async (t) => {
  const fsErr = classifyFailure(Object.assign(new Error("EBUSY: resource busy, rmdir '/x'"), { code: 'EBUSY' }));
  t.same([fsErr.kind, fsErr.fields['errno']], ['io', 'EBUSY']);
  const odd = classifyFailure('a string was thrown');
  t.equal(odd.kind, 'unknown');
  t.match(odd.error, /a string was thrown/);
  t.equal(classifyFailure(new TypeError('x is undefined')).kind, 'unknown');
  for (const f of [fsErr, odd]) t.type(f.fields['hint'], 'string');
});

t.test('stored text is one line, credential-free and at most 500 bytes', async (t) => {
  const e = classifyFailure(new Error(`GET https://bob:pa55@host/x?token=t0k failed\n${'ü'.repeat(600)}`));
  t.ok(Buffer.byteLength(e.error) <= 500);
  t.notOk(e.error.includes('pa55'));
  t.notOk(e.error.includes('t0k'));
  t.notOk(e.error.includes('\n'));
  t.ok(e.error.endsWith('…'));
});
