/**
 * Redaction and error-text hygiene. Everything that leaves a process boundary
 * as text (task rows, events, logs, API errors) goes through these, so
 * credentials and multi-line dumps never reach an operator's screen or a DBA's
 * query result.
 */

/** Longest error text stored on a task or event, in UTF-8 bytes, before the ellipsis. */
export const MAX_ERROR_BYTES = 500;

/**
 * Strip userinfo, query and fragment from a URL. With `trailingSlash`, the path
 * ends in `/` (how target snapshots store WebDAV base URLs). Text that does not
 * parse as an absolute URL is returned unchanged, except that anything that
 * looks like `scheme://user:pass@` has its userinfo removed.
 */
export function redactUrl(raw: string, opts: { trailingSlash?: boolean } = {}): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return raw.replace(/([a-z][a-z0-9+.-]*:\/\/)[^/@\s]*@/gi, '$1');
  }
  url.username = '';
  url.password = '';
  url.search = '';
  url.hash = '';
  if (opts.trailingSlash && !url.pathname.endsWith('/')) url.pathname += '/';
  return url.toString();
}

/** Every absolute URL inside free text, with its credentials, query and fragment removed. */
export function redactUrlsInText(text: string): string {
  return text.replace(/\b[a-z][a-z0-9+.-]*:\/\/[^\s"'<>]+/gi, (m) => redactUrl(m));
}

/**
 * Cut `text` to at most `maxBytes` UTF-8 bytes without splitting a character
 * (surrogate pairs included); appends `…` when something was cut.
 */
export function truncateUtf8(text: string, maxBytes: number): string {
  if (Buffer.byteLength(text, 'utf8') <= maxBytes) return text;
  let bytes = 0;
  let end = 0;
  for (const ch of text) {
    const n = Buffer.byteLength(ch, 'utf8');
    if (bytes + n > maxBytes) break;
    bytes += n;
    end += ch.length;
  }
  return text.slice(0, end) + '…';
}

/**
 * The one-line, bounded, credential-free form of an error message that tasks,
 * events and API responses store: URLs redacted, control characters and line
 * breaks turned into spaces, runs of space collapsed, trimmed, cut to
 * {@link MAX_ERROR_BYTES} bytes on a character boundary.
 */
export function sanitizeErrorText(text: string, maxBytes: number = MAX_ERROR_BYTES): string {
  const oneLine = redactUrlsInText(text)
    .replace(/[\u0000-\u001f\u007f\u2028\u2029]+/g, ' ')
    .replace(/ {2,}/g, ' ')
    .trim();
  return truncateUtf8(oneLine, maxBytes);
}
