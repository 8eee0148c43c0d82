import t from 'tap';
import { clearSessionCookie, csrfMatches, csrfTokenFor, isApiToken, isSessionToken, newSessionToken, readCookie, sessionCookie, tokenHash } from './tokens.ts';
import { readCredential } from './authenticate.ts';

t.test('session tokens, CSRF tokens and hashes', (t) => {
  const a = newSessionToken();
  const b = newSessionToken();
  t.ok(isSessionToken(a));
  t.not(a, b);
  t.equal(tokenHash(a).length, 32);
  t.equal(csrfTokenFor(a), csrfTokenFor(a), 'stable per session');
  t.not(csrfTokenFor(a), csrfTokenFor(b), 'different per session');
  t.ok(csrfMatches(a, csrfTokenFor(a)));
  t.ok(csrfMatches(a, ` ${csrfTokenFor(a)} `), 'surrounding space ignored');
  t.notOk(csrfMatches(a, csrfTokenFor(b)));
  t.notOk(csrfMatches(a, undefined));
  t.notOk(csrfMatches(a, ''));
  t.notOk(csrfMatches(a, csrfTokenFor(a).slice(1)));
  t.ok(isApiToken(`bst_${'A'.repeat(43)}`));
  t.notOk(isApiToken(`bst_${'A'.repeat(42)}`));
  t.notOk(isApiToken(a));
  t.end();
});

t.test('cookies', (t) => {
  t.equal(readCookie('a=1; bastion_session=xyz; b=2', 'bastion_session'), 'xyz');
  t.equal(readCookie('bastion_session="quoted"', 'bastion_session'), 'quoted');
  t.equal(readCookie('xbastion_session=no', 'bastion_session'), undefined);
  t.equal(readCookie(undefined, 'bastion_session'), undefined);
  t.equal(readCookie('=; ;bastion_session', 'bastion_session'), undefined);
  const c = sessionCookie('tok', false);
  t.match(c, /^bastion_session=tok; Path=\/; HttpOnly; SameSite=Lax; Max-Age=604800$/);
  t.match(sessionCookie('tok', true), /; Secure$/);
  t.match(clearSessionCookie(false), /Max-Age=0/);
  t.end();
});

t.test('readCredential: Authorization wins; malformed values are not looked up', (t) => {
  const session = newSessionToken();
  const api = `bst_${'b'.repeat(43)}`;
  t.same(readCredential({ cookie: `bastion_session=${session}` }), { kind: 'session', token: session });
  t.same(readCredential({ authorization: `Bearer ${api}`, cookie: `bastion_session=${session}` }), { kind: 'token', token: api });
  t.same(readCredential({ authorization: `bearer ${api}` }), { kind: 'token', token: api }, 'scheme is case-insensitive');
  t.same(readCredential({ authorization: 'Basic dXNlcjpwYXNz' }), { kind: 'malformed', what: 'authorization' });
  t.same(readCredential({ authorization: `Bearer ${session}` }), { kind: 'malformed', what: 'authorization' }, 'a session token is not a bearer token');
  t.same(readCredential({ cookie: "bastion_session=' or 1=1 --" }), { kind: 'malformed', what: 'cookie' });
  t.same(readCredential({}), { kind: 'none' });
  t.end();
});
