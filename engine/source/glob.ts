/**
 * Include/exclude patterns of a filesystem source, compiled once per run.
 *
 * Matching rules (documented for operators; tested in glob.test.ts):
 * - A pattern that starts with `/` is anchored: it is matched against the
 *   entry's whole absolute path (`/srv/app/cache/x.tmp`).
 * - A pattern that contains no other `/` (e.g. `*.log`, `node_modules`) is
 *   matched against the entry's base name, at any depth.
 * - Any other relative pattern (`cache/**`, `**​/tmp/*.bin`) is matched
 *   against the path relative to the source path the entry was found under
 *   (for source `/srv/app`, the entry `/srv/app/cache/x` has relative path
 *   `cache/x`).
 * - `*` matches any run of characters except `/`; `?` one character except
 *   `/`; `**` as a whole segment matches zero or more segments (`a/**` also
 *   matches `a` itself and everything under it); `[abc]`, `[a-z]`, `[!a-z]`
 *   (or `[^a-z]`) match one character of (not of) the class; `\x` matches `x`
 *   literally. Matching is case-sensitive and works on characters (UTF-16
 *   code points), so `?` matches `é`.
 * - A trailing `/` makes a pattern match directories only (`build/`).
 *
 * Matching runs in O(pattern × path) time (two-pointer wildcard matching with
 * backtracking to the last star only), so no pattern can make it explode the
 * way a backtracking regular expression would.
 *
 * Exclude wins over include. An excluded directory is not descended into. When
 * include patterns are given, only files and symlinks matching one of them are
 * stored; directories are always walked, and a directory is stored when it is
 * a source path itself, matches an include pattern, or holds a stored entry.
 */
import { BastionError } from '../../core/errors.ts';

/** Which path of an entry a pattern looks at. */
type Anchor = 'absolute' | 'basename' | 'relative';

/** One token of a segment pattern. Each consumes one character, except `star`. */
type Token =
  | { t: 'lit'; c: string }
  | { t: 'any' }
  | { t: 'star' }
  | { t: 'class'; negate: boolean; items: Array<[string, string]> };

/** A segment pattern, or `**` (zero or more whole segments). */
type Segment = { t: 'globstar' } | { t: 'seg'; tokens: Token[] };

interface CompiledPattern {
  source: string;
  anchor: Anchor;
  dirOnly: boolean;
  segments: Segment[];
}

/** Paths of one entry, as the matcher sees them. */
export interface MatchTarget {
  /** Absolute path (`/srv/app/cache/x`). */
  absolute: string;
  /** Path relative to its source path (`cache/x`; `''` for the source path itself). */
  relative: string;
  isDir: boolean;
}

/** A compiled list of patterns. */
export class GlobSet {
  readonly patterns: readonly CompiledPattern[];

  constructor(patterns: readonly string[], field = 'source.include') {
    this.patterns = patterns.map((p, i) => compilePattern(p, `${field}[${i}]`));
  }

  get isEmpty(): boolean {
    return this.patterns.length === 0;
  }

  /** True when some pattern matches the entry. */
  matches(target: MatchTarget): boolean {
    for (const p of this.patterns) {
      if (p.dirOnly && !target.isDir) continue;
      let subject: string;
      if (p.anchor === 'absolute') subject = target.absolute;
      else if (p.anchor === 'relative') subject = target.relative;
      else subject = baseName(target.absolute);
      if (subject === '' && p.anchor !== 'absolute') continue;
      if (matchSegments(p.segments, subject.split('/'))) return true;
    }
    return false;
  }
}

function baseName(p: string): string {
  const i = p.lastIndexOf('/');
  return i < 0 ? p : p.slice(i + 1);
}

/** Compile one pattern; a malformed one (unclosed `[`, dangling `\`) is `invalid_glob` naming `field`. */
export function compilePattern(pattern: string, field: string): CompiledPattern {
  const fail = (reason: string): never => {
    throw new BastionError('invalid_glob', `${field}: ${reason}`, { details: { field, reason } });
  };
  if (pattern.length === 0) fail('empty pattern');
  if (pattern.includes('\0')) fail('NUL byte in pattern');
  let body = pattern;
  let dirOnly = false;
  while (body.length > 1 && body.endsWith('/')) {
    dirOnly = true;
    body = body.slice(0, -1);
  }
  let anchor: Anchor;
  if (body.startsWith('/')) anchor = 'absolute';
  else if (body.includes('/')) anchor = 'relative';
  else anchor = 'basename';

  const segments: Segment[] = [];
  for (const seg of body.split('/')) {
    if (seg === '**') {
      // Consecutive `**` segments mean the same as one.
      if (segments.at(-1)?.t !== 'globstar') segments.push({ t: 'globstar' });
    } else {
      segments.push({ t: 'seg', tokens: tokenize(seg, fail) });
    }
  }
  return { source: pattern, anchor, dirOnly, segments };
}

function tokenize(seg: string, fail: (reason: string) => never): Token[] {
  const out: Token[] = [];
  const chars = Array.from(seg);
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i]!;
    if (c === '\\') {
      const next = chars[i + 1];
      if (next === undefined) fail('pattern ends with an escape character');
      out.push({ t: 'lit', c: next! });
      i++;
    } else if (c === '*') {
      if (out.at(-1)?.t !== 'star') out.push({ t: 'star' }); // `a**b` inside a segment is `a*b`
    } else if (c === '?') {
      out.push({ t: 'any' });
    } else if (c === '[') {
      let j = i + 1;
      let negate = false;
      if (chars[j] === '!' || chars[j] === '^') {
        negate = true;
        j++;
      }
      const items: Array<[string, string]> = [];
      let first = true;
      while (j < chars.length && (chars[j] !== ']' || first)) {
        let lo = chars[j]!;
        if (lo === '\\') {
          if (chars[j + 1] === undefined) fail('pattern ends with an escape character');
          lo = chars[++j]!;
        }
        j++;
        let hi = lo;
        if (chars[j] === '-' && chars[j + 1] !== undefined && chars[j + 1] !== ']') {
          hi = chars[j + 1]!;
          if (hi === '\\') {
            if (chars[j + 2] === undefined) fail('pattern ends with an escape character');
            hi = chars[j + 2]!;
            j++;
          }
          j += 2;
        }
        items.push([lo, hi]);
        first = false;
      }
      if (j >= chars.length) fail('unclosed [ in pattern');
      out.push({ t: 'class', negate, items });
      i = j;
    } else {
      out.push({ t: 'lit', c });
    }
  }
  return out;
}

function tokenMatches(tok: Token, c: string): boolean {
  switch (tok.t) {
    case 'lit':
      return tok.c === c;
    case 'any':
      return true;
    case 'class': {
      const cp = c.codePointAt(0)!;
      const inside = tok.items.some(([lo, hi]) => cp >= lo.codePointAt(0)! && cp <= hi.codePointAt(0)!);
      return inside !== tok.negate;
    }
    case 'star':
      return false;
  }
}

/**
 * Wildcard match of one segment: two pointers, and on a mismatch go back to
 * just after the last star with one more character swallowed by it. Linear
 * in practice, O(tokens × chars) at worst.
 */
function matchTokens(tokens: Token[], name: string): boolean {
  const chars = Array.from(name);
  let ti = 0;
  let ci = 0;
  let starTi = -1;
  let starCi = 0;
  while (ci < chars.length) {
    const tok = tokens[ti];
    if (tok !== undefined && tok.t === 'star') {
      starTi = ti++;
      starCi = ci;
    } else if (tok !== undefined && tokenMatches(tok, chars[ci]!)) {
      ti++;
      ci++;
    } else if (starTi >= 0) {
      ti = starTi + 1;
      ci = ++starCi;
    } else {
      return false;
    }
  }
  while (tokens[ti]?.t === 'star') ti++;
  return ti === tokens.length;
}

/** The same algorithm one level up: `**` is the star, a segment pattern consumes one path segment. */
function matchSegments(segments: Segment[], parts: string[]): boolean {
  let si = 0;
  let pi = 0;
  let starSi = -1;
  let starPi = 0;
  while (pi < parts.length) {
    const seg = segments[si];
    if (seg !== undefined && seg.t === 'globstar') {
      starSi = si++;
      starPi = pi;
    } else if (seg !== undefined && matchTokens(seg.tokens, parts[pi]!)) {
      si++;
      pi++;
    } else if (starSi >= 0) {
      si = starSi + 1;
      pi = ++starPi;
    } else {
      return false;
    }
  }
  while (segments[si]?.t === 'globstar') si++;
  return si === segments.length;
}
