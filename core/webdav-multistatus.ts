/**
 * Reading a PROPFIND Depth 1 answer (RFC 4918 §9.1, 207 Multi-Status) into the
 * children of one collection. Servers differ (NOTES.md): webdav-server returns
 * absolute-URL hrefs (with its own host, even behind a proxy), rclone returns
 * paths; encodings differ (`%27` vs `'`, upper vs lower hex). So hrefs are
 * reduced to decoded path segments and compared with the decoded segments of
 * the URL we asked for.
 *
 * Rules (reference §7): only propstats whose status is 200 are read; a
 * response with no 200 propstat is skipped; the self entry is dropped, and a
 * self entry that is not a collection is an error; entries that are not direct
 * children of the requested collection are ignored. A child whose decoded name
 * could address something else (`.`, `..`, a `/` from `%2F`, NUL) is a hostile
 * or broken answer and fails the whole parse: the tree walk builds DELETE URLs
 * from these names.
 */
import { decodePathSegments } from './webdav-path.ts';
import { childElement, childElements, parseXml, textContent, XmlParseError } from './webdav-xml.ts';

const DAV = 'DAV:';

/** One resource described by a multistatus response. */
export interface MultistatusEntry {
  /** The href as sent by the server (not decoded). */
  href: string;
  collection: boolean;
  /** getcontentlength for files, when given and valid; null otherwise. */
  size: number | null;
}

/** A direct child of the requested collection. */
export interface PropfindChild {
  /** Decoded name (one path segment). */
  name: string;
  collection: boolean;
  size: number | null;
}

/** Result of {@link parsePropfindChildren}. */
export type PropfindResult =
  | { ok: true; children: PropfindChild[] }
  | { ok: false; reason: 'bad_response' | 'not_a_collection'; problem: string };

/** `HTTP/1.1 200 OK` → 200; anything unparsable → 0. */
export function parseStatusLine(text: string): number {
  const m = /^\s*HTTP\/\d(?:\.\d)?\s+(\d{3})\b/.exec(text);
  return m ? Number(m[1]) : 0;
}

/**
 * Every response element of a multistatus body that has a 200 propstat.
 * Throws {@link XmlParseError} for malformed XML or a root that is not
 * DAV:multistatus.
 */
export function parseMultistatus(xml: string): MultistatusEntry[] {
  const root = parseXml(xml);
  if (root.ns !== DAV || root.name !== 'multistatus') throw new XmlParseError('root element is not DAV:multistatus', 0);
  const out: MultistatusEntry[] = [];
  for (const response of childElements(root, DAV, 'response')) {
    const hrefEl = childElement(response, DAV, 'href');
    if (hrefEl === undefined) continue;
    const href = textContent(hrefEl).trim();
    let found = false;
    let collection = false;
    let size: number | null = null;
    for (const propstat of childElements(response, DAV, 'propstat')) {
      const statusEl = childElement(propstat, DAV, 'status');
      if (statusEl === undefined || parseStatusLine(textContent(statusEl)) !== 200) continue;
      const prop = childElement(propstat, DAV, 'prop');
      if (prop === undefined) continue;
      found = true;
      const rt = childElement(prop, DAV, 'resourcetype');
      if (rt !== undefined && childElement(rt, DAV, 'collection') !== undefined) collection = true;
      const len = childElement(prop, DAV, 'getcontentlength');
      if (len !== undefined) size = parseContentLength(textContent(len));
    }
    if (found) out.push({ href, collection, size: collection ? null : size });
  }
  return out;
}

/** A non-negative safe integer written in decimal digits, or null. */
export function parseContentLength(text: string): number | null {
  const t = text.trim();
  if (!/^\d{1,16}$/.test(t)) return null;
  const n = Number(t);
  return Number.isSafeInteger(n) ? n : null;
}

function sameSegments(a: readonly string[], b: readonly string[], len: number): boolean {
  for (let k = 0; k < len; k++) if (a[k] !== b[k]) return false;
  return true;
}

/**
 * The direct children of the collection at `requestPath` (the path or URL we
 * sent PROPFIND to) from a Depth 1 multistatus body.
 */
export function parsePropfindChildren(xml: string, requestPath: string): PropfindResult {
  let entries: MultistatusEntry[];
  try {
    entries = parseMultistatus(xml);
  } catch (err) {
    if (err instanceof XmlParseError) return { ok: false, reason: 'bad_response', problem: `PROPFIND response is not a valid multistatus: ${err.message}` };
    throw err;
  }
  const self = decodePathSegments(requestPath);
  if (self === null) return { ok: false, reason: 'bad_response', problem: 'request path is not valid percent-encoding' };
  let sawSelf = false;
  const children: PropfindChild[] = [];
  const seen = new Set<string>();
  for (const e of entries) {
    const segs = decodePathSegments(e.href);
    if (segs === null) return { ok: false, reason: 'bad_response', problem: 'PROPFIND response has an href that is not valid percent-encoded UTF-8' };
    if (segs.length === self.length && sameSegments(segs, self, self.length)) {
      if (!e.collection) return { ok: false, reason: 'not_a_collection', problem: 'the requested path is a file, not a collection' };
      sawSelf = true;
      continue;
    }
    if (segs.length !== self.length + 1 || !sameSegments(segs, self, self.length)) continue;
    const name = segs[self.length]!;
    if (name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
      return { ok: false, reason: 'bad_response', problem: 'PROPFIND response names a child that is not a plain name' };
    }
    if (seen.has(name)) continue;
    seen.add(name);
    children.push({ name, collection: e.collection, size: e.size });
  }
  if (!sawSelf) return { ok: false, reason: 'bad_response', problem: 'PROPFIND response does not describe the requested collection (are hrefs rewritten by a proxy?)' };
  return { ok: true, children };
}
