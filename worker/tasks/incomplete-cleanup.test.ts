import t from 'tap';
import { WebdavError } from '../../core/webdav-errors.ts';
import { TaskAttemptError } from '../../core/task-attempt-error.ts';
import { classifyFailure } from '../queue/classify-failure.ts';
import { CLEANUP_ERROR_KINDS, mapCleanupFailure } from './incomplete-cleanup.ts';

t.test('failures map onto the cleanup kinds: no http; 4xx → config, odd answers → unknown; the rest unchanged', async (t) => {
  const status = (s: number) => new WebdavError(`HTTP ${s}`, { kind: s === 401 || s === 403 ? 'auth' : s >= 500 || s === 429 || s === 408 ? 'network' : 'http', reason: 'status', status: s, method: 'DELETE', url: 'https://dav.example/j/r/' });
  const cases: Array<[string, unknown, string]> = [
    ['400', status(400), 'config'],
    ['409', status(409), 'config'],
    ['412', status(412), 'config'],
    ['301', status(301), 'config'],
    ['401', status(401), 'auth'],
    ['403', status(403), 'auth'],
    ['503', status(503), 'network'],
    ['429', status(429), 'network'],
    ['bad response', new WebdavError('no Content-Length', { kind: 'http', reason: 'bad_response', status: 200 }), 'unknown'],
    ['walk limit', new WebdavError('too many', { kind: 'http', reason: 'too_many_entries' }), 'unknown'],
    ['connection', new WebdavError('refused', { kind: 'network', reason: 'connection' }), 'network'],
    ['config', new WebdavError('bad url', { kind: 'config', reason: 'invalid_config' }), 'config'],
    ['offline', new TaskAttemptError('offline', 'agent_offline', 'agent away'), 'offline'],
    ['io', Object.assign(new Error('EACCES'), { code: 'EACCES' }), 'io'],
    ['a stray http kind', new TaskAttemptError('http', 'x', 'y'), 'unknown'],
    ['anything', new RangeError('boom'), 'unknown'],
  ];
  for (const [name, err, kind] of cases) {
    const f = mapCleanupFailure(classifyFailure(err));
    t.equal(f.kind, kind, name);
    t.ok(CLEANUP_ERROR_KINDS.includes(f.kind), `${name}: a kind the table accepts`);
    t.equal(f.fields['error_kind'], kind, `${name}: the event says the recorded kind`);
    t.equal(typeof f.fields['hint'], 'string');
  }
  const f = mapCleanupFailure(classifyFailure(status(400)));
  t.same([f.fields['http_status'], f.fields['url']], [400, 'https://dav.example/j/r/'], 'HTTP status and redacted URL kept');
});
