/**
 * Who the client is when Bastion sits behind reverse proxies.
 *
 * X-Forwarded-For and X-Forwarded-Proto are written by whoever sends the
 * request, so they are believed only when the peer itself is a configured
 * trusted proxy (`BASTION_TRUSTED_PROXIES`). The list is read right to left:
 * each hop appends the address it saw, so the rightmost entry that is not a
 * trusted proxy is the client; anything left of it could be forged. A
 * malformed entry ends the walk and the peer address is used. The login
 * throttle keys on the result, so getting this wrong would let one client
 * lock out everyone behind the same proxy, or let an attacker rotate
 * addresses at will.
 */
import net from 'node:net';

/** A parsed set of trusted proxy networks. */
export interface TrustedProxies {
  /** True when `address` (normalised) is inside one of the networks. */
  contains(address: string): boolean;
  /** The networks as written (for logs and docs). */
  readonly networks: readonly string[];
}

/**
 * Normalise an IP address: IPv6 compressed and lower-cased, IPv4-mapped IPv6
 * (`::ffff:127.0.0.1`, `0000:…:ffff:7f00:0001` as uWS prints it) turned into
 * IPv4, zone ids and brackets dropped. Returns undefined when not an address.
 */
export function normalizeAddress(raw: string): string | undefined {
  let value = raw.trim();
  if (value.startsWith('[') && value.endsWith(']')) value = value.slice(1, -1);
  const zone = value.indexOf('%');
  if (zone >= 0) value = value.slice(0, zone);
  const kind = net.isIP(value);
  if (kind === 4) return value.split('.').map((o) => String(Number(o))).join('.');
  if (kind !== 6) return undefined;
  // The URL parser prints IPv6 in canonical compressed form.
  const canonical = new URL(`http://[${value}]/`).hostname.slice(1, -1);
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(canonical);
  if (mapped) {
    const hi = parseInt(mapped[1] as string, 16);
    const lo = parseInt(mapped[2] as string, 16);
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  }
  return canonical;
}

/**
 * Parse a comma-separated list of addresses and CIDR networks
 * (`10.0.0.0/8, 127.0.0.1, fd00::/8`). Throws an Error naming the bad entry.
 */
export function parseTrustedProxies(text: string): TrustedProxies {
  const list = new net.BlockList();
  const networks: string[] = [];
  for (const raw of text.split(',')) {
    const entry = raw.trim();
    if (entry === '') continue;
    const slash = entry.indexOf('/');
    const addressPart = slash >= 0 ? entry.slice(0, slash) : entry;
    const address = normalizeAddress(addressPart);
    if (!address) throw new Error(`${JSON.stringify(entry)} is not an IP address or CIDR network`);
    const family = net.isIP(address) === 4 ? 'ipv4' : 'ipv6';
    const max = family === 'ipv4' ? 32 : 128;
    const prefix = slash >= 0 ? Number(entry.slice(slash + 1)) : max;
    if (!Number.isInteger(prefix) || prefix < 0 || prefix > max || (slash >= 0 && !/^\d{1,3}$/.test(entry.slice(slash + 1)))) {
      throw new Error(`${JSON.stringify(entry)} has an invalid prefix length (0–${max} for ${family === 'ipv4' ? 'IPv4' : 'IPv6'})`);
    }
    list.addSubnet(address, prefix, family);
    networks.push(entry);
  }
  return {
    networks,
    contains(address: string): boolean {
      const a = normalizeAddress(address);
      if (!a) return false;
      return list.check(a, net.isIP(a) === 4 ? 'ipv4' : 'ipv6');
    },
  };
}

/** No proxy is trusted. */
export const NO_TRUSTED_PROXIES: TrustedProxies = { networks: [], contains: () => false };

/** What the gateway concludes about a request's origin. */
export interface ClientInfo {
  /** Client IP address (normalised). */
  address: string;
  /** True when the client used HTTPS to reach the (trusted) proxy. */
  secure: boolean;
  /** True when the peer is a trusted proxy (so X-Forwarded-* headers were considered). */
  viaTrustedProxy: boolean;
}

/** Resolve the client address and scheme from the peer address and the forwarding headers. */
export function resolveClient(peer: string, headers: Readonly<Record<string, string | undefined>>, trusted: TrustedProxies): ClientInfo {
  const peerAddress = normalizeAddress(peer) ?? peer;
  if (!trusted.contains(peerAddress)) return { address: peerAddress, secure: false, viaTrustedProxy: false };
  let address = peerAddress;
  const xff = headers['x-forwarded-for'];
  if (xff) {
    const hops = xff.split(',').map((h) => h.trim());
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = normalizeAddress(hops[i] as string);
      if (!hop) {
        address = peerAddress;
        break;
      }
      address = hop;
      if (!trusted.contains(hop)) break;
    }
  }
  // The nearest proxy's view of the scheme: the last value of a comma list.
  const proto = headers['x-forwarded-proto']?.split(',').pop()?.trim().toLowerCase();
  return { address, secure: proto === 'https', viaTrustedProxy: true };
}
