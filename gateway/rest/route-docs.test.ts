import fs from 'node:fs/promises';
import t from 'tap';
import { API_DOC_FILE, renderRouteTable, withRouteTable } from './route-docs.ts';
import { REST_ROUTES } from './routes.ts';

t.test('docs/api.md lists every REST route (run `npm run api:schema` after adding one)', async (t) => {
  const doc = await fs.readFile(API_DOC_FILE, 'utf8');
  t.equal(withRouteTable(doc, renderRouteTable(REST_ROUTES)), doc);
  for (const r of REST_ROUTES) t.ok(doc.includes(`\`${r.path}\``), r.path);
});

t.test('rendering', (t) => {
  const table = renderRouteTable([{ method: 'post', path: '/a/:id', role: 'operator', summary: 'do a|b', handle: async () => undefined }]);
  t.equal(table.split('\n')[2], '| POST | `/a/:id` | operator | yes | do a\\|b |');
  t.throws(() => withRouteTable('no markers', table), /markers/);
  t.end();
});
