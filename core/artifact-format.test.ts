import t from 'tap';
import {
  COMPLETE_BYTES,
  entryRecordSchema,
  isSafeRelativePath,
  looksLikeRunDir,
  manifestSchema,
  parseManifest,
  parsePartName,
  partName,
  serializeEntryRecord,
  serializeManifest,
  type Manifest,
} from './artifact-format.ts';

const HASH = 'a'.repeat(64);

// The reference's manifest_round_trip fixture (crates/bastion-core/src/manifest.rs), with a real hash.
const REFERENCE_MANIFEST = `{
  "format_version": 1,
  "job_id": "00000000-0000-0000-0000-000000000000",
  "run_id": "00000000-0000-0000-0000-000000000000",
  "started_at": "2025-12-30T12:00:00Z",
  "ended_at": "2025-12-30T12:00:01Z",
  "pipeline": {
    "format": "archive_v1",
    "tar": "pax",
    "compression": "zstd",
    "encryption": "none",
    "split_bytes": 268435456
  },
  "artifacts": [
    {
      "name": "payload.part000001",
      "size": 123,
      "hash_alg": "blake3",
      "hash": "${HASH}"
    }
  ],
  "entry_index": {
    "name": "entries.jsonl.zst",
    "count": 42
  }
}`;

t.test('part names: 6 digits from 1', async (t) => {
  t.equal(partName(1), 'payload.part000001');
  t.equal(partName(999_999), 'payload.part999999');
  t.throws(() => partName(0));
  t.throws(() => partName(1_000_000));
  t.throws(() => partName(1.5));
  t.equal(parsePartName('payload.part000042'), 42);
  for (const bad of ['payload.part000000', 'payload.part42', 'payload.part0000001', 'xpayload.part000001', 'payload.part00000a']) t.equal(parsePartName(bad), null, bad);
});

t.test('manifest bytes equal the reference serde_json pretty output', async (t) => {
  const m = parseManifest(new TextEncoder().encode(REFERENCE_MANIFEST));
  t.equal(new TextDecoder().decode(serializeManifest(m)), REFERENCE_MANIFEST);
  t.equal(new TextDecoder().decode(COMPLETE_BYTES), '{}');
});

t.test('manifest: format defaults to archive_v1; encryption_key sits before split_bytes', async (t) => {
  const legacy = JSON.parse(REFERENCE_MANIFEST);
  delete legacy.pipeline.format;
  t.equal(manifestSchema.parse(legacy).pipeline.format, 'archive_v1');
  const enc: Manifest = manifestSchema.parse({ ...JSON.parse(REFERENCE_MANIFEST), pipeline: { ...JSON.parse(REFERENCE_MANIFEST).pipeline, encryption: 'age', encryption_key: 'k1' } });
  const text = new TextDecoder().decode(serializeManifest(enc));
  t.match(text, /"encryption": "age",\n {4}"encryption_key": "k1",\n {4}"split_bytes"/);
});

t.test('manifest: hostile and inconsistent values are refused', async (t) => {
  const base = JSON.parse(REFERENCE_MANIFEST);
  const cases: Array<[string, (m: any) => void]> = [
    ['version 2', (m) => (m.format_version = 2)],
    ['upper-case uuid', (m) => (m.job_id = '00000000-0000-0000-0000-00000000000A')],
    ['not a uuid', (m) => (m.run_id = '../../etc')],
    ['bad time', (m) => (m.started_at = 'yesterday')],
    ['impossible date', (m) => (m.ended_at = '2025-13-45T99:00:00Z')],
    ['negative size', (m) => (m.artifacts[0].size = -1)],
    ['zero-byte part', (m) => (m.artifacts[0].size = 0)],
    ['part bigger than split', (m) => (m.artifacts[0].size = m.pipeline.split_bytes + 1)],
    ['bad hash', (m) => (m.artifacts[0].hash = 'b3:deadbeef')],
    ['unknown hash alg', (m) => (m.artifacts[0].hash_alg = 'md5')],
    ['traversal in part name', (m) => (m.artifacts[0].name = '../payload.part000001')],
    ['gap in parts', (m) => (m.artifacts[0].name = 'payload.part000002')],
    ['short middle part', (m) => m.artifacts.push({ ...m.artifacts[0], name: 'payload.part000002' })],
    ['raw tree with parts', (m) => (m.pipeline = { format: 'raw_tree_v1', tar: 'none', compression: 'none', encryption: 'none', split_bytes: 0 })],
    ['archive without tar', (m) => (m.pipeline.tar = 'none')],
    ['key without encryption', (m) => (m.pipeline.encryption_key = 'k')],
    ['wrong index name', (m) => (m.entry_index.name = 'entries.json')],
    ['fractional count', (m) => (m.entry_index.count = 1.5)],
  ];
  for (const [name, mutate] of cases) {
    const m = structuredClone(base);
    mutate(m);
    t.notOk(manifestSchema.safeParse(m).success, name);
  }
  t.throws(() => parseManifest(new Uint8Array([0xff, 0xfe])), 'invalid UTF-8');
});

t.test('entry records: field order, optional fields, nulls for non-files', async (t) => {
  t.equal(
    serializeEntryRecord({ path: 'a/b', kind: 'file', size: 3, hash_alg: 'blake3', hash: HASH }),
    `{"path":"a/b","kind":"file","size":3,"hash_alg":"blake3","hash":"${HASH}"}`,
  );
  t.equal(
    serializeEntryRecord({
      path: 'd',
      kind: 'symlink',
      size: 0,
      hash_alg: null,
      hash: null,
      hardlink_group: undefined,
      symlink_target: '../x',
      xattrs: { 'user.z': 'AA==', 'user.a': 'AQ==' },
      gid: 5,
      uid: 4,
      mode: 0o120777,
      mtime: 7,
    }),
    '{"path":"d","kind":"symlink","size":0,"hash_alg":null,"hash":null,"mtime":7,"mode":41471,"uid":4,"gid":5,"xattrs":{"user.a":"AQ==","user.z":"AA=="},"symlink_target":"../x"}',
  );
  // Same escaping as serde_json: newline and quote escaped, non-ASCII raw.
  t.equal(serializeEntryRecord({ path: 'a\n"é', kind: 'dir', size: 0, hash_alg: null, hash: null }), '{"path":"a\\n\\"é","kind":"dir","size":0,"hash_alg":null,"hash":null}');
});

t.test('entry records: hostile values refused', async (t) => {
  const ok = { path: 'a', kind: 'file', size: 1, hash_alg: 'blake3', hash: HASH };
  t.ok(entryRecordSchema.safeParse(ok).success);
  const bad: Array<Record<string, unknown>> = [
    { ...ok, path: '/etc/passwd' },
    { ...ok, path: 'a/../../x' },
    { ...ok, path: 'a//b' },
    { ...ok, path: 'a/./b' },
    { ...ok, path: '' },
    { ...ok, path: 'a\0b' },
    { ...ok, kind: 'fifo' },
    { ...ok, hash: null },
    { ...ok, kind: 'dir' },
    { ...ok, size: -5 },
    { ...ok, xattrs: { 'user.x': 'not base64!' } },
    { ...ok, hardlink_group: 'x:y' },
    { ...ok, symlink_target: 'x' },
    { path: 'a', kind: 'dir', size: 0, hash_alg: null, hash: null, hardlink_group: '1:2' },
  ];
  for (const b of bad) t.notOk(entryRecordSchema.safeParse(b).success, JSON.stringify(b));
});

t.test('relative path safety and run-dir markers', async (t) => {
  for (const p of ['a', 'a/b', 'data/x y/ü', 'a\nb', 'a\\b', '..a', 'a..']) t.ok(isSafeRelativePath(p), p);
  for (const p of ['', '/a', 'a/', '.', '..', 'a/..', './a', 'a//b', 'a\0']) t.notOk(isSafeRelativePath(p), JSON.stringify(p));
  t.ok(looksLikeRunDir(['payload.part000001.partial']));
  t.ok(looksLikeRunDir(['complete.json']));
  t.notOk(looksLikeRunDir(['photos', 'notes.txt']));
});
