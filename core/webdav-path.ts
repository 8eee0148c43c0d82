/**
 * WebDAV URL arithmetic, kept pure so every rule about names and encodings is
 * table-tested without a server: base URL normalisation (credentials pulled
 * out of the URL, trailing slash added), relative-path validation and
 * per-segment percent-encoding.
 *
 * Names come from backed-up file systems (raw_tree_v1 stores user files under
 * `data/<their path>`), so any character a POSIX file name may hold must
 * survive: spaces, `#`, `?`, `%`, newlines, any Unicode. Each segment is
 * encoded with encodeURIComponent, which leaves only `A-Z a-z 0-9 - _ . ! ~ * ' ( )`
 * literal; all of those are legal in a path segment and no server treats them
 * specially. Segments `.` and `..` and empty segments are refused: they would
 * address a different resource than the one named.
 */

/** Longest relative name we accept, in UTF-16 units; far beyond any real path, small enough to bound URLs. */
export const MAX_RELATIVE_PATH_LENGTH = 4096;

/** Credentials for HTTP Basic auth. */
export interface WebdavCredentials {
  username: string;
  password: string;
}

/** Outcome of {@link normalizeWebdavBaseUrl}. */
export type BaseUrlResult =
  | { ok: true; url: URL; userinfo: WebdavCredentials | null }
  | { ok: false; problem: string };

/**
 * Parse a WebDAV base URL: http(s) only, a host, no query or fragment. Userinfo
 * (`https://user:pass@host/`) is removed from the URL and returned decoded, so
 * credentials never travel in a request line or appear where the URL is
 * printed. The path always ends in `/`. Problems never quote the input (it may
 * hold a password).
 */
export function normalizeWebdavBaseUrl(raw: string): BaseUrlResult {
  if (typeof raw !== 'string' || raw.length === 0) return { ok: false, problem: 'base URL is empty' };
  if (raw.length > 2048) return { ok: false, problem: 'base URL is longer than 2048 characters' };
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { ok: false, problem: 'base URL is not a valid absolute URL' };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return { ok: false, problem: 'base URL must use http or https' };
  if (url.hostname === '') return { ok: false, problem: 'base URL has no host' };
  if (url.search !== '' || raw.includes('?')) return { ok: false, problem: 'base URL must not contain a query' };
  if (url.hash !== '' || raw.includes('#')) return { ok: false, problem: 'base URL must not contain a fragment' };
  let userinfo: WebdavCredentials | null = null;
  if (url.username !== '' || url.password !== '') {
    try {
      userinfo = { username: decodeURIComponent(url.username), password: decodeURIComponent(url.password) };
    } catch {
      return { ok: false, problem: 'base URL credentials are not valid percent-encoding' };
    }
    url.username = '';
    url.password = '';
  }
  if (!url.pathname.endsWith('/')) url.pathname += '/';
  return { ok: true, url, userinfo };
}

/** A high surrogate not followed by a low one, or a low one not preceded by a high one. */
const LONE_SURROGATE_RE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Outcome of {@link parseRelativePath}. */
export type RelativePathResult =
  | { ok: true; segments: string[]; collection: boolean }
  | { ok: false; problem: string };

/**
 * Split a relative POSIX name (`data/a b/file`) into segments. A trailing `/`
 * marks a collection. Refused: empty names, a leading `/`, empty, `.` or `..`
 * segments, NUL bytes, lone UTF-16 surrogates (not encodable) and names longer
 * than {@link MAX_RELATIVE_PATH_LENGTH}. The empty string with `allowRoot`
 * means the base collection itself.
 */
export function parseRelativePath(name: string, opts: { allowRoot?: boolean } = {}): RelativePathResult {
  if (typeof name !== 'string') return { ok: false, problem: 'name must be a string' };
  if (name === '' || name === '/') {
    return opts.allowRoot ? { ok: true, segments: [], collection: true } : { ok: false, problem: 'name is empty' };
  }
  if (name.length > MAX_RELATIVE_PATH_LENGTH) return { ok: false, problem: `name is longer than ${MAX_RELATIVE_PATH_LENGTH} characters` };
  if (name.startsWith('/')) return { ok: false, problem: 'name must be relative (no leading /)' };
  if (name.includes('\0')) return { ok: false, problem: 'name must not contain NUL' };
  if (LONE_SURROGATE_RE.test(name)) return { ok: false, problem: 'name contains an unpaired UTF-16 surrogate' };
  const collection = name.endsWith('/');
  const segments = (collection ? name.slice(0, -1) : name).split('/');
  for (const s of segments) {
    if (s === '') return { ok: false, problem: 'name must not contain empty segments (//)' };
    if (s === '.' || s === '..') return { ok: false, problem: 'name must not contain . or .. segments' };
  }
  return { ok: true, segments, collection };
}

/** Percent-encode segments and join them; a trailing `/` when `collection`. */
export function encodeSegments(segments: readonly string[], collection: boolean): string {
  const joined = segments.map((s) => encodeURIComponent(s)).join('/');
  return collection && joined !== '' ? joined + '/' : joined;
}

/** The absolute URL of `segments` under `base` (which ends in `/`). */
export function resolveUnder(base: URL, segments: readonly string[], collection: boolean): URL {
  return new URL(encodeSegments(segments, collection), base);
}

/**
 * The decoded path segments of a URL path or an absolute URL, or null when the
 * text is not valid percent-encoded UTF-8. Used to compare hrefs returned by
 * servers (which encode differently from us: `%C3%A9` vs `é`, `%27` vs `'`)
 * with the URLs we requested.
 *
 * `?` and `#` are NOT treated as query/fragment delimiters: a multistatus href
 * names a resource and never carries either, while webdav-server 2.6.3 encodes
 * hrefs with encodeURI and so sends a file named `#1?x` as a literal `…/#1?x`.
 * Our own request paths are fully percent-encoded, so they contain neither.
 */
export function decodePathSegments(pathOrUrl: string): string[] | null {
  let path = pathOrUrl;
  const authority = /^[a-z][a-z0-9+.-]*:\/\/[^/]*/i.exec(pathOrUrl);
  if (authority !== null) path = pathOrUrl.slice(authority[0].length);
  const out: string[] = [];
  for (const raw of path.split('/')) {
    if (raw === '') continue;
    try {
      out.push(decodeURIComponent(raw));
    } catch {
      return null;
    }
  }
  return out;
}
