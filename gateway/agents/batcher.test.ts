import t from 'tap';
import { Batcher } from './batcher.ts';

t.test('one batch in flight; what arrives meanwhile goes together into the next; outputs map to inputs', async (t) => {
  const sizes: number[] = [];
  let release!: () => void;
  const b = new Batcher<number, number>(async (items) => {
    sizes.push(items.length);
    if (sizes.length === 1) await new Promise<void>((r) => (release = r));
    return items.map((i) => i * 10);
  });
  const first = b.submit(1);
  await new Promise((r) => setImmediate(r));
  const rest = [2, 3, 4].map((i) => b.submit(i));
  release();
  t.same(await Promise.all([first, ...rest]), [10, 20, 30, 40]);
  t.same(sizes, [1, 3], 'the three that waited went in one batch');
});

t.test('a failing batch rejects its items only; the batcher keeps working; size is bounded', async (t) => {
  let fail = true;
  const sizes: number[] = [];
  const b = new Batcher<number, number>(
    async (items) => {
      sizes.push(items.length);
      if (fail) throw new Error('db down');
      return items;
    },
    { maxBatch: 2 },
  );
  await t.rejects(b.submit(1), /db down/);
  fail = false;
  t.same(await Promise.all([b.submit(1), b.submit(2), b.submit(3)]), [1, 2, 3]);
  t.same(sizes, [1, 2, 1]);
});
