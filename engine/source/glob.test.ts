import t from 'tap';
import { BastionError } from '../../core/errors.ts';
import { GlobSet } from './glob.ts';

const file = (absolute: string, relative: string) => ({ absolute, relative, isDir: false });
const dir = (absolute: string, relative: string) => ({ absolute, relative, isDir: true });

t.test('pattern anchoring and wildcards', async (t) => {
  const cases: Array<[string, ReturnType<typeof file>, boolean]> = [
    // base-name patterns match at any depth
    ['*.log', file('/srv/app/a.log', 'a.log'), true],
    ['*.log', file('/srv/app/deep/er/b.log', 'deep/er/b.log'), true],
    ['*.log', file('/srv/app/a.log.gz', 'a.log.gz'), false],
    ['node_modules', dir('/srv/app/x/node_modules', 'x/node_modules'), true],
    ['?.txt', file('/s/é.txt', 'é.txt'), true],
    ['?.txt', file('/s/ab.txt', 'ab.txt'), false],
    // relative patterns look at the path under the source path
    ['cache/*', file('/srv/app/cache/x', 'cache/x'), true],
    ['cache/*', file('/srv/app/cache/x/y', 'cache/x/y'), false],
    ['cache/*', file('/srv/app/sub/cache/x', 'sub/cache/x'), false],
    ['cache/**', file('/srv/app/cache/x/y', 'cache/x/y'), true],
    ['cache/**', dir('/srv/app/cache', 'cache'), true],
    ['**/tmp/*.bin', file('/srv/app/tmp/a.bin', 'tmp/a.bin'), true],
    ['**/tmp/*.bin', file('/srv/app/a/b/tmp/a.bin', 'a/b/tmp/a.bin'), true],
    ['**/tmp/*.bin', file('/srv/app/a/btmp/a.bin', 'a/btmp/a.bin'), false],
    ['a/**/b', file('/s/a/b', 'a/b'), true],
    ['a/**/**/b', file('/s/a/b', 'a/b'), true],
    ['a/**/b', file('/s/a/x/y/b', 'a/x/y/b'), true],
    ['a/**/b', file('/s/ab', 'ab'), false],
    ['**', file('/s/anything/at/all', 'anything/at/all'), true],
    // absolute patterns look at the absolute path
    ['/srv/app/secret*', file('/srv/app/secret.key', 'secret.key'), true],
    ['/srv/app/secret*', file('/srv/app/x/secret.key', 'x/secret.key'), false],
    ['/srv/**/*.key', file('/srv/app/x/secret.key', 'x/secret.key'), true],
    // classes and escapes
    ['[abc].txt', file('/s/b.txt', 'b.txt'), true],
    ['[abc].txt', file('/s/d.txt', 'd.txt'), false],
    ['[a-c].txt', file('/s/c.txt', 'c.txt'), true],
    ['[!a-c].txt', file('/s/c.txt', 'c.txt'), false],
    ['[^a-c].txt', file('/s/z.txt', 'z.txt'), true],
    ['[]].txt', file('/s/].txt', '].txt'), true],
    ['\\*.txt', file('/s/*.txt', '*.txt'), true],
    ['\\*.txt', file('/s/a.txt', 'a.txt'), false],
    ['a.b', file('/s/aXb', 'aXb'), false],
    ['(x)+', file('/s/(x)+', '(x)+'), true],
    // directory-only patterns
    ['build/', dir('/s/build', 'build'), true],
    ['build/', file('/s/build', 'build'), false],
    // case-sensitive
    ['*.LOG', file('/s/a.log', 'a.log'), false],
  ];
  for (const [pattern, target, expected] of cases) {
    t.equal(new GlobSet([pattern]).matches(target), expected, `${pattern} vs ${target.absolute}`);
  }
});

t.test('a set matches when any pattern does; empty set matches nothing', async (t) => {
  const set = new GlobSet(['*.a', '*.b']);
  t.ok(set.matches(file('/x/1.b', '1.b')));
  t.notOk(set.matches(file('/x/1.c', '1.c')));
  t.ok(new GlobSet([]).isEmpty);
  t.notOk(new GlobSet([]).matches(file('/x/1.c', '1.c')));
});

t.test('relative and base-name patterns never match the source path itself by its empty relative path', async (t) => {
  t.notOk(new GlobSet(['**/x']).matches(dir('/srv', '')));
  t.ok(new GlobSet(['srv']).matches(dir('/srv', '')), 'base name of the source path itself');
});

t.test('malformed patterns are invalid_glob naming the field', async (t) => {
  for (const bad of ['[abc', 'abc\\', '', 'a\0b']) {
    try {
      new GlobSet(['ok', bad], 'source.exclude');
      t.fail(`accepted ${JSON.stringify(bad)}`);
    } catch (e) {
      t.ok(e instanceof BastionError);
      t.equal((e as BastionError).code, 'invalid_glob');
      t.equal((e as BastionError).details?.field, 'source.exclude[1]');
    }
  }
});

t.test('hostile patterns do not blow up', async (t) => {
  // Many stars compile to [^/]* runs; a pathological subject must still finish.
  const set = new GlobSet(['*a*a*a*a*a*a*a*a*a*a*b']);
  t.notOk(set.matches(file('/s/' + 'a'.repeat(40), 'a'.repeat(40))));
  t.ok(new GlobSet(['[.*+?^${}()|\\]]']).matches(file('/s/$', '$')));
});
