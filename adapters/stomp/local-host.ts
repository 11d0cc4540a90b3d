import { hostname, networkInterfaces } from 'node:os';

/** Names every host answers to. */
const LOOPBACK_NAMES: readonly string[] = ['localhost', 'localhost.localdomain', 'ip6-localhost', 'ip6-loopback'];

/** Addresses that mean "all interfaces" when a listener binds to them: they name no host. */
const ANY_ADDRESS: ReadonlySet<string> = new Set(['0.0.0.0', '::', '']);

/** How long the list of this machine's names and addresses is trusted (interfaces come and go). */
const CACHE_MS = 10_000;

let cached: { at: number; bind: string; names: ReadonlySet<string> } | undefined;

/** The host part of a `host` header: `[::1]:61613` -> `::1`, `example.org:61613` -> `example.org`. */
function hostPart(raw: string): string {
  let h = raw.trim().toLowerCase();
  if (h.startsWith('[')) {
    const close = h.indexOf(']');
    return close > 0 ? h.slice(1, close) : h;
  }
  const colon = h.indexOf(':');
  // One colon followed by digits is a port; more colons make an IPv6 address.
  if (colon > 0 && h.indexOf(':', colon + 1) < 0 && /^[0-9]+$/.test(h.slice(colon + 1))) h = h.slice(0, colon);
  if (h.endsWith('.')) h = h.slice(0, -1);
  return h;
}

function localNames(bind: string): ReadonlySet<string> {
  const now = Date.now();
  if (cached !== undefined && cached.bind === bind && now - cached.at < CACHE_MS) return cached.names;
  const names = new Set<string>(LOOPBACK_NAMES);
  const host = hostname().toLowerCase();
  names.add(host);
  const dot = host.indexOf('.');
  if (dot > 0) names.add(host.slice(0, dot));
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) {
      const addr = a.address.toLowerCase();
      names.add(addr);
      const zone = addr.indexOf('%');
      if (zone > 0) names.add(addr.slice(0, zone));
    }
  }
  const b = hostPart(bind);
  if (!ANY_ADDRESS.has(b)) names.add(b);
  cached = { at: now, bind, names };
  return names;
}

/**
 * Whether a STOMP `host` header names this broker rather than a vhost: a loopback name or
 * address, the machine's host name, an address of one of its interfaces, or the address the
 * listeners bind to (with or without a port).
 */
export function isLocalHost(raw: string, bind: string): boolean {
  const h = hostPart(raw);
  if (h === '') return false;
  if (h.startsWith('127.') && /^127(\.[0-9]{1,3}){3}$/.test(h)) return true;
  if (h === '::ffff:127.0.0.1' || h === '0:0:0:0:0:0:0:1') return true;
  return localNames(bind).has(h);
}
