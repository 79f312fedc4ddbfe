// Which addresses an http(s) image import may connect to (issue #15, SSRF). By default every address but
// loopback, link-local (169.254.0.0/16 with the cloud metadata service, fe80::/10) and unspecified ones;
// `--image-url-allow` (host names and CIDRs) lets those through for the hosts it names. The check is made on
// the address actually connected to: the http agent resolves names through `guardedLookup`, and the socket's
// remote address is checked again once connected (an IP literal in the URL skips the lookup).
import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns';
import { BlockList, isIP, type LookupFunction } from 'node:net';

export interface UrlAllowlist {
  /** host names allowed whatever they resolve to, lower case */
  hosts: Set<string>;
  /** networks allowed even when refused by default */
  networks: BlockList;
}

const REFUSED = (() => {
  const list = new BlockList();
  list.addSubnet('127.0.0.0', 8, 'ipv4'); // loopback
  list.addSubnet('0.0.0.0', 8, 'ipv4'); // unspecified / "this network"
  list.addSubnet('169.254.0.0', 16, 'ipv4'); // link-local, cloud metadata
  list.addAddress('::1', 'ipv6');
  list.addAddress('::', 'ipv6');
  list.addSubnet('fe80::', 10, 'ipv6');
  return list;
})();

/** Parses `--image-url-allow` entries: `host.name`, `10.0.0.5`, `10.0.0.0/8`, `fd00::/8`. Throws naming a bad one. */
export function parseAllowlist(entries: readonly string[]): UrlAllowlist {
  const hosts = new Set<string>();
  const networks = new BlockList();
  for (const raw of entries) {
    const entry = raw
      .trim()
      .toLowerCase()
      .replace(/^\[(.*)\]$/, '$1');
    const cidr = /^([^/]+)\/(\d{1,3})$/.exec(entry);
    if (cidr) {
      const family = isIP(cidr[1]!);
      const bits = Number(cidr[2]);
      if (family === 0 || bits > (family === 4 ? 32 : 128))
        throw new Error(`${JSON.stringify(raw)} is not a valid CIDR`);
      networks.addSubnet(cidr[1]!, bits, family === 4 ? 'ipv4' : 'ipv6');
    } else if (isIP(entry)) {
      networks.addAddress(entry, isIP(entry) === 4 ? 'ipv4' : 'ipv6');
    } else if (/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/.test(entry)) {
      hosts.add(entry);
    } else {
      throw new Error(`${JSON.stringify(raw)} is neither a host name, an IP address nor a CIDR`);
    }
  }
  return { hosts, networks };
}

/** An IPv4-mapped IPv6 address (::ffff:127.0.0.1) is the IPv4 address it maps. */
function normalise(address: string): { address: string; type: 'ipv4' | 'ipv6' } {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return { address: mapped[1]!, type: 'ipv4' };
  return { address, type: isIP(address) === 6 ? 'ipv6' : 'ipv4' };
}

/** Why connecting to `address` for `host` is refused, or undefined when it is allowed. */
export function refusal(allow: UrlAllowlist, host: string, address: string): string | undefined {
  const h = host
    .toLowerCase()
    .replace(/^\[(.*)\]$/, '$1')
    .replace(/\.$/, '');
  if (allow.hosts.has(h)) return undefined;
  const { address: a, type } = normalise(address);
  if (isIP(a) === 0) return `${address} is not an IP address`;
  if (allow.networks.check(a, type)) return undefined;
  if (REFUSED.check(a, type)) {
    return `${host} is ${a}, a loopback, link-local or unspecified address; allow it with --image-url-allow (SDS_IMAGE_URL_ALLOW)`;
  }
  return undefined;
}

/** A `lookup` for http(s) requests that fails instead of answering an address that is refused. */
export function guardedLookup(allow: UrlAllowlist): LookupFunction {
  return ((
    hostname: string,
    options: LookupOptions,
    callback: (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void,
  ) => {
    dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, '', 0);
      const list = addresses as LookupAddress[];
      const allowed = list.filter((a) => refusal(allow, hostname, a.address) === undefined);
      if (allowed.length === 0) {
        const why = list.length > 0 ? refusal(allow, hostname, list[0]!.address)! : `${hostname} has no address`;
        return callback(Object.assign(new Error(why), { code: 'EADDRNOTALLOWED' }), '', 0);
      }
      if (options.all) return callback(null, allowed);
      return callback(null, allowed[0]!.address, allowed[0]!.family);
    });
  }) as LookupFunction;
}
