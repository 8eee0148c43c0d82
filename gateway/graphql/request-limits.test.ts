import t from 'tap';
import { buildSchema, getIntrospectionQuery, parse, specifiedRules, validate } from 'graphql';
import { LIMITS, QueryComplexityRule, checkPagination, measureOperation, selectOperation } from './request-limits.ts';

const schema = buildSchema(`
  type Query { node: Node, jobs(first: Int, last: Int, offset: Int): JobConnection, version: String }
  type Mutation { ping: Boolean }
  type Node { id: ID, child: Node, name: String }
  type JobConnection { nodes: [Job], totalCount: Int }
  type Job { name: String, runs(first: Int, last: Int): RunConnection }
  type RunConnection { nodes: [Run] }
  type Run { id: ID }
`);

function codes(query: string): string[] {
  return validate(schema, parse(query), [...specifiedRules, QueryComplexityRule]).map((e) => String(e.extensions?.code ?? 'graphql'));
}

function nest(depth: number): string {
  let q = 'id';
  for (let i = 0; i < depth - 1; i++) q = `child { ${q} }`;
  return `{ node { ${q} } }`;
}

t.test('depth, aliases and field counts', (t) => {
  t.same(codes(nest(LIMITS.maxDepth - 1)), [], 'at the depth limit');
  t.same(codes(nest(LIMITS.maxDepth)), ['query_too_complex'], 'one level deeper');
  const aliases = Array.from({ length: LIMITS.maxAliases + 1 }, (_, i) => `a${i}: version`).join(' ');
  t.same(codes(`{ ${aliases} }`), ['query_too_complex']);
  t.same(codes(`{ ${Array.from({ length: LIMITS.maxAliases }, (_, i) => `a${i}: version`).join(' ')} }`), []);
  // Fragments are expanded: a fragment used many times counts every time.
  const spreads = Array.from({ length: 25 }, (_, i) => `n${i}: node { ...F }`).join(' ');
  const fragment = `fragment F on Node { ${Array.from({ length: 45 }, (_, i) => `x${i}: name`).join(' ')} }`;
  t.ok(codes(`{ ${spreads} } ${fragment}`).includes('query_too_complex'), 'expanded fragments counted');
  t.same(codes(getIntrospectionQuery()), [], "GraphiQL's introspection query passes");
  let deep = 'name';
  for (let i = 0; i < LIMITS.maxIntrospectionDepth; i++) deep = `ofType { ${deep} }`;
  t.same(codes(`{ __schema { types { fields { type { ${deep} } } } } }`), ['query_too_complex'], 'deep introspection bounded');
  // A fragment cycle is reported by graphql's own rule, not a hang here.
  t.ok(codes('{ node { ...A } } fragment A on Node { child { ...B } } fragment B on Node { child { ...A } }').includes('graphql'));
  const m = measureOperation(selectOperation(parse('{ node { id name } version }'), undefined)!, () => undefined);
  t.same(m, { fields: 4, aliases: 0, depth: 2, introspectionDepth: 0 });
  t.end();
});

t.test('pagination: first or last required, 0…200, rows bounded along paths', (t) => {
  const check = (q: string, vars?: Record<string, unknown>, op?: string) => checkPagination(schema, parse(q), op, vars).map((e) => `${e.extensions?.code}: ${e.message}`);
  t.same(check('{ jobs(first: 50) { totalCount } }'), []);
  t.same(check('{ jobs(last: 200) { totalCount } }'), []);
  t.match(check('{ jobs { totalCount } }'), [/pagination_required: jobs: give `first` or `last`/]);
  t.match(check('{ j: jobs(first: null) { totalCount } }'), [/pagination_required: j \(jobs\)/]);
  t.match(check('{ jobs(first: 201) { totalCount } }'), [/must be between 0 and 200, got 201/]);
  t.match(check('{ jobs(first: -1) { totalCount } }'), [/got -1/]);
  t.match(check('query($n: Int) { jobs(first: $n) { totalCount } }', { n: 1000 }), [/got 1000/], 'variables count');
  t.same(check('query($n: Int = 20) { jobs(first: $n) { totalCount } }'), [], 'variable defaults count');
  t.match(check('query($n: Int = 20) { jobs(first: $n) { totalCount } }', { n: null }), [/pagination_required/]);
  t.same(check('{ jobs(first: "x") { totalCount } }'), [], 'wrong literal types are left to coercion');
  t.match(check('{ jobs(first: 200) { nodes { runs(first: 200) { nodes { id } } } } }'), [/query_too_complex: .*40200 rows/], 'nested pages multiply');
  t.same(check('{ jobs(first: 100) { nodes { runs(first: 100) { nodes { id } } } } }'), []);
  t.match(check('{ jobs(first: 10) { nodes { runs { nodes { id } } } } }'), [/pagination_required: runs/], 'nested connections too');
  t.match(check('{ ...Q } fragment Q on Query { jobs { totalCount } }'), [/pagination_required/], 'through fragments');
  t.same(check('query A { jobs(first: 1) { totalCount } } query B { jobs { totalCount } }', {}, 'A'), [], 'only the selected operation');
  t.same(check('mutation { ping }'), []);
  t.end();
});
