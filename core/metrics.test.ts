import t from 'tap';
import { MetricsRegistry } from './metrics.ts';

t.test('renders counters, gauges and histograms in the Prometheus text format', async (t) => {
  const r = new MetricsRegistry();
  const c = r.counter('demo_requests_total', 'Requests.', ['route']);
  c.inc({ route: '/a' });
  c.inc({ route: '/a' }, 2);
  c.inc({ route: 'we"ird\\\n' });
  const g = r.gauge('demo_open', 'Open things.');
  g.inc();
  g.inc();
  g.dec();
  const h = r.histogram('demo_seconds', 'Latency.', ['op'], [0.1, 1]);
  h.observe({ op: 'x' }, 0.05);
  h.observe({ op: 'x' }, 0.5);
  h.observe({ op: 'x' }, 5);
  let collected = 0;
  r.addCollector(() => {
    collected++;
    g.set({}, 7);
  });
  const text = await r.render();
  t.equal(collected, 1);
  t.match(text, '# HELP demo_requests_total Requests.\n# TYPE demo_requests_total counter\n');
  t.match(text, 'demo_requests_total{route="/a"} 3\n');
  t.match(text, 'demo_requests_total{route="we\\"ird\\\\\\n"} 1\n', 'label values escaped');
  t.match(text, '# TYPE demo_open gauge\ndemo_open 7\n');
  t.match(text, 'demo_seconds_bucket{op="x",le="0.1"} 1\ndemo_seconds_bucket{op="x",le="1"} 2\ndemo_seconds_bucket{op="x",le="+Inf"} 3\ndemo_seconds_sum{op="x"} 5.55\ndemo_seconds_count{op="x"} 3\n');
  t.ok(text.endsWith('\n'));
  t.equal(c.get({ route: '/a' }), 3);
  t.equal(h.count({ op: 'x' }), 3);
});

t.test('registration rules', (t) => {
  const r = new MetricsRegistry();
  const a = r.counter('same_total', 'x');
  t.equal(r.counter('same_total', 'x'), a, 'registering twice returns the first');
  t.throws(() => r.gauge('same_total', 'x'), /different types/);
  t.throws(() => r.counter('bad name', 'x'), /invalid metric name/);
  t.throws(() => r.histogram('h', 'x', ['le']), /invalid label/);
  t.throws(() => r.histogram('h2', 'x', [], []), /distinct buckets/);
  t.throws(() => a.inc({}, -1), /only go up/);
  t.end();
});
