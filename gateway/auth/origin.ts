/**
 * Same-origin check for browser WebSocket upgrades made with the session
 * cookie. Browsers attach cookies to cross-site WebSocket handshakes and do
 * not apply CORS to them, so without this check any page the user visits
 * could open a socket as the user. The Origin must have the scheme the
 * client used (https behind a TLS proxy) and the host the request was sent
 * to. Requests without an Origin are not from a browser and pass.
 */

/** True when the handshake's Origin (if any) is this server. */
export function originAllowed(headers: Readonly<Record<string, string | undefined>>, secure: boolean): boolean {
  const origin = headers.origin;
  if (origin === undefined) return true;
  const host = headers.host;
  if (!host) return false;
  let given: URL;
  let expected: URL;
  try {
    given = new URL(origin);
    expected = new URL(`${secure ? 'https' : 'http'}://${host}`);
  } catch {
    return false;
  }
  return given.protocol === expected.protocol && given.host === expected.host;
}
