/**
 * The address classifier of the URL fetcher: pure functions (no DNS, no sockets) that parse a host
 * the way URL parsers and resolvers read it — including the legacy IPv4 spellings `2130706433`,
 * `0x7f.1`, `0177.0.0.1` and `127.1`, trailing dots, IPv6 zone ids and brackets — and say whether
 * the fetcher may connect to an address, or why not.
 *
 * Only globally routable unicast addresses are allowed by default. Everything else is refused with
 * a reason: private, loopback, link-local, cloud metadata, carrier-grade NAT, unique-local,
 * documentation, benchmarking, multicast, broadcast, reserved, and IPv6 addresses that embed one of
 * those IPv4 addresses (IPv4-mapped, IPv4-compatible, NAT64, 6to4, SIIT). A private deployment
 * opens what it needs with an explicit allow-list of CIDRs and host names (`RAG_FETCH_ALLOW`).
 */

/** Why an address is refused. */
export type AddressCategory =
  | 'unspecified'
  | 'private'
  | 'loopback'
  | 'link_local'
  | 'cloud_metadata'
  | 'carrier_grade_nat'
  | 'ietf_protocol'
  | 'documentation'
  | 'benchmarking'
  | 'relay_6to4'
  | 'multicast'
  | 'broadcast'
  | 'reserved'
  | 'unique_local'
  | 'site_local'
  | 'discard'
  | 'teredo'
  | 'nat64_local'
  | 'ipv4_compatible'
  | 'malformed';

/** A parsed IP address: IPv4 as an unsigned 32-bit number, IPv6 as a 128-bit integer. */
export type ParsedIp = { family: 4; value: number } | { family: 6; value: bigint };

/** AddressVerdict says whether the fetcher may connect to an address. */
export type AddressVerdict =
  | { allowed: true; address: string; allowListed: boolean }
  | { allowed: false; address: string; category: AddressCategory; reason: string };

/** HostVerdict says what a URL host is: an address (with its verdict) or a name still to resolve. */
export type HostVerdict =
  | { kind: 'ip'; ip: ParsedIp; verdict: AddressVerdict }
  | { kind: 'name'; name: string; allowListed: boolean; verdict: { allowed: true } | { allowed: false; category: AddressCategory; reason: string } };

/** Cidr is one allow-list range. */
export interface Cidr {
  family: 4 | 6;
  base: bigint;
  prefix: number;
  text: string;
}

/** AddressPolicy is the explicit allow-list of a private deployment (empty: public addresses only). */
export interface AddressPolicy {
  cidrs: readonly Cidr[];
  /** Host names (lower case, no trailing dot); `*.example.org` matches every name below example.org. */
  hosts: readonly string[];
}

/** The policy without an allow-list: only public addresses. */
export const PUBLIC_ONLY: AddressPolicy = Object.freeze({ cidrs: [], hosts: [] });

/** Categories that no allow-list opens: they never name one remote host (0.0.0.0 even reaches this machine). */
const NEVER_ALLOWED: ReadonlySet<AddressCategory> = new Set(['unspecified', 'multicast', 'broadcast', 'malformed']);

interface Range {
  family: 4 | 6;
  base: bigint;
  prefix: number;
  category: AddressCategory;
  label: string;
}

function v4(text: string, prefix: number, category: AddressCategory, label: string): Range {
  return { family: 4, base: BigInt(parseIPv4Strict(text)!), prefix, category, label };
}

function v6(text: string, prefix: number, category: AddressCategory, label: string): Range {
  return { family: 6, base: parseIPv6(text)!, prefix, category, label };
}

/**
 * Refused IPv4 ranges, most specific first (the first match gives the reason). The metadata
 * addresses sit inside wider ranges or are public (Azure's wire server), so they come first.
 */
const V4_RANGES: readonly Range[] = [
  v4('169.254.169.254', 32, 'cloud_metadata', 'the cloud instance metadata service (169.254.169.254)'),
  v4('169.254.170.2', 32, 'cloud_metadata', 'the container metadata service (169.254.170.2)'),
  v4('168.63.129.16', 32, 'cloud_metadata', "Azure's wire server and metadata host (168.63.129.16)"),
  v4('100.100.100.200', 32, 'cloud_metadata', "Alibaba Cloud's metadata service (100.100.100.200)"),
  v4('192.0.0.192', 32, 'cloud_metadata', "Oracle Cloud's metadata service (192.0.0.192)"),
  v4('255.255.255.255', 32, 'broadcast', 'the limited broadcast address (255.255.255.255)'),
  v4('0.0.0.0', 8, 'unspecified', 'an unspecified "this network" address (0.0.0.0/8)'),
  v4('10.0.0.0', 8, 'private', 'a private address (10.0.0.0/8)'),
  v4('100.64.0.0', 10, 'carrier_grade_nat', 'a carrier-grade NAT shared address (100.64.0.0/10)'),
  v4('127.0.0.0', 8, 'loopback', 'a loopback address (127.0.0.0/8)'),
  v4('169.254.0.0', 16, 'link_local', 'a link-local address (169.254.0.0/16)'),
  v4('172.16.0.0', 12, 'private', 'a private address (172.16.0.0/12)'),
  v4('192.0.0.0', 24, 'ietf_protocol', 'an IETF protocol assignment (192.0.0.0/24)'),
  v4('192.0.2.0', 24, 'documentation', 'a documentation address (192.0.2.0/24)'),
  v4('192.88.99.0', 24, 'relay_6to4', 'the deprecated 6to4 relay anycast range (192.88.99.0/24)'),
  v4('192.168.0.0', 16, 'private', 'a private address (192.168.0.0/16)'),
  v4('198.18.0.0', 15, 'benchmarking', 'a benchmarking address (198.18.0.0/15)'),
  v4('198.51.100.0', 24, 'documentation', 'a documentation address (198.51.100.0/24)'),
  v4('203.0.113.0', 24, 'documentation', 'a documentation address (203.0.113.0/24)'),
  v4('224.0.0.0', 4, 'multicast', 'a multicast address (224.0.0.0/4)'),
  v4('240.0.0.0', 4, 'reserved', 'a reserved address (240.0.0.0/4)'),
];

/** Refused IPv6 ranges that do not embed an IPv4 address, most specific first. */
const V6_RANGES: readonly Range[] = [
  v6('::', 128, 'unspecified', 'the unspecified address (::)'),
  v6('::1', 128, 'loopback', 'the loopback address (::1)'),
  v6('fd00:ec2::254', 128, 'cloud_metadata', 'the cloud instance metadata service (fd00:ec2::254)'),
  v6('64:ff9b:1::', 48, 'nat64_local', 'a local-use NAT64 address (64:ff9b:1::/48)'),
  v6('100::', 64, 'discard', 'a discard-only address (100::/64)'),
  v6('2001::', 32, 'teredo', 'a Teredo tunnel address (2001::/32)'),
  v6('2001:2::', 48, 'benchmarking', 'a benchmarking address (2001:2::/48)'),
  v6('2001:db8::', 32, 'documentation', 'a documentation address (2001:db8::/32)'),
  v6('2001::', 23, 'ietf_protocol', 'an IETF protocol assignment (2001::/23)'),
  v6('3fff::', 20, 'documentation', 'a documentation address (3fff::/20)'),
  v6('fc00::', 7, 'unique_local', 'a unique-local address (fc00::/7)'),
  v6('fe80::', 10, 'link_local', 'a link-local address (fe80::/10)'),
  v6('fec0::', 10, 'site_local', 'a deprecated site-local address (fec0::/10)'),
  v6('ff00::', 8, 'multicast', 'a multicast address (ff00::/8)'),
];

const V6_MAPPED = parseIPv6('::ffff:0:0')!; // ::ffff:0:0/96
const V6_SIIT = parseIPv6('::ffff:0:0:0')!; // ::ffff:0:0:0/96 (IPv4-translated)
const V6_NAT64 = parseIPv6('64:ff9b::')!; // 64:ff9b::/96
const V6_6TO4 = parseIPv6('2002::')!; // 2002::/16
const V6_GLOBAL = parseIPv6('2000::')!; // 2000::/3

function inRange(family: 4 | 6, value: bigint, base: bigint, prefix: number): boolean {
  const bits = family === 4 ? 32 : 128;
  if (prefix === 0) return true;
  const shift = BigInt(bits - prefix);
  return value >> shift === base >> shift;
}

/**
 * parseIPv4 reads an IPv4 host the way URL parsers and inet_aton do: one to four parts, each
 * decimal, hex (`0x…`) or octal (leading `0`), the last part filling the remaining bytes, and one
 * trailing dot ignored. Returns the address as a number, or undefined when it is not valid.
 */
export function parseIPv4(input: string): number | undefined {
  let parts = input.split('.');
  if (parts.length > 1 && parts[parts.length - 1] === '') parts = parts.slice(0, -1);
  if (parts.length === 0 || parts.length > 4) return undefined;
  const numbers: number[] = [];
  for (const part of parts) {
    const n = parseIPv4Number(part);
    if (n === undefined) return undefined;
    numbers.push(n);
  }
  const last = numbers.pop()!;
  if (numbers.some((n) => n > 255)) return undefined;
  if (last >= 256 ** (4 - numbers.length)) return undefined;
  let value = last;
  numbers.forEach((n, i) => {
    value += n * 256 ** (3 - i);
  });
  return value >>> 0;
}

function parseIPv4Number(part: string): number | undefined {
  if (part === '') return undefined;
  let radix = 10;
  let digits = part;
  if (/^0x/i.test(part)) {
    radix = 16;
    digits = part.slice(2);
    if (digits === '') return 0;
  } else if (part.length > 1 && part.startsWith('0')) {
    radix = 8;
    digits = part.slice(1);
  }
  const valid = radix === 16 ? /^[0-9a-f]+$/i : radix === 8 ? /^[0-7]+$/ : /^[0-9]+$/;
  if (!valid.test(digits)) return undefined;
  // Parse as a bigint first: a huge part must fail, not lose precision and wrap.
  const big = radix === 10 ? BigInt(digits) : BigInt((radix === 16 ? '0x' : '0o') + digits);
  return big > 0xffffffffn ? undefined : Number(big);
}

/** parseIPv4Strict reads only the dotted-quad decimal form (no leading zeros). */
export function parseIPv4Strict(input: string): number | undefined {
  const parts = input.split('.');
  if (parts.length !== 4 || !parts.every((p) => /^(0|[1-9][0-9]{0,2})$/.test(p) && Number(p) <= 255)) return undefined;
  return parts.reduce((acc, p) => acc * 256 + Number(p), 0) >>> 0;
}

/** endsInANumber says whether a host is meant as an IPv4 address (its last label is numeric), as URL parsers decide. */
function endsInANumber(host: string): boolean {
  let parts = host.split('.');
  if (parts[parts.length - 1] === '') {
    if (parts.length === 1) return false;
    parts = parts.slice(0, -1);
  }
  const last = parts[parts.length - 1]!;
  return /^[0-9]+$/.test(last) || /^0x[0-9a-f]*$/i.test(last);
}

/** parseIPv6 reads an IPv6 address (with `::`, and a dotted IPv4 tail) without zone id or brackets, as a 128-bit number. */
export function parseIPv6(input: string): bigint | undefined {
  if (!/^[0-9a-f:.]+$/i.test(input)) return undefined;
  let text = input;
  let tail: number[] = [];
  const lastColon = text.lastIndexOf(':');
  if (text.includes('.')) {
    const v4text = text.slice(lastColon + 1);
    const v4 = parseIPv4Strict(v4text);
    if (v4 === undefined) return undefined;
    tail = [v4 >>> 16, v4 & 0xffff];
    // Keep what stands before the IPv4 tail: "::ffff:" → "::ffff", "::" stays, "1:2:3:4:5:6:" → "1:2:3:4:5:6".
    text = text.slice(0, lastColon + 1);
    if (!text.endsWith('::')) text = text.slice(0, -1);
  }
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const group = (g: string) => (/^[0-9a-f]{1,4}$/i.test(g) ? parseInt(g, 16) : NaN);
  const head = halves[0] ? halves[0].split(':').map(group) : [];
  const rest = halves.length === 2 && halves[1] ? halves[1].split(':').map(group) : [];
  if ([...head, ...rest].some((g) => Number.isNaN(g))) return undefined;
  let groups: number[];
  if (halves.length === 2) {
    const missing = 8 - head.length - rest.length - tail.length;
    if (missing < 1) return undefined;
    groups = [...head, ...new Array<number>(missing).fill(0), ...rest, ...tail];
  } else {
    groups = [...head, ...tail];
  }
  if (groups.length !== 8) return undefined;
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(g), 0n);
}

/** formatIp writes an address in its canonical text form. */
export function formatIp(ip: ParsedIp): string {
  if (ip.family === 4) return [ip.value >>> 24, (ip.value >>> 16) & 255, (ip.value >>> 8) & 255, ip.value & 255].join('.');
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((ip.value >> BigInt(i * 16)) & 0xffffn));
  // RFC 5952: compress the longest run (of two or more) of zero groups.
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

/** parseIp reads a literal address: IPv6 (brackets and zone id allowed) or IPv4 in any legacy spelling. */
export function parseIp(input: string): ParsedIp | undefined {
  let text = input.trim().toLowerCase();
  if (text.startsWith('[') && text.endsWith(']')) text = text.slice(1, -1);
  if (text.includes(':')) {
    const zone = text.indexOf('%');
    if (zone >= 0) text = text.slice(0, zone);
    const value = parseIPv6(text);
    return value === undefined ? undefined : { family: 6, value };
  }
  const value = parseIPv4(text);
  return value === undefined ? undefined : { family: 4, value };
}

/** The IPv4 address an IPv6 address carries, and how, when it carries one. */
function embeddedIPv4(value: bigint): { v4: number; how: string } | undefined {
  const low32 = Number(value & 0xffffffffn);
  if (inRange(6, value, V6_MAPPED, 96)) return { v4: low32, how: 'an IPv4-mapped IPv6 address' };
  if (inRange(6, value, V6_SIIT, 96)) return { v4: low32, how: 'an IPv4-translated (SIIT) IPv6 address' };
  if (inRange(6, value, V6_NAT64, 96)) return { v4: low32, how: 'a NAT64 IPv6 address' };
  if (inRange(6, value, V6_6TO4, 16)) return { v4: Number((value >> 80n) & 0xffffffffn), how: 'a 6to4 IPv6 address' };
  // IPv4-compatible (::a.b.c.d, deprecated); :: and ::1 are matched before this.
  if (value >> 32n === 0n && value > 1n) return { v4: low32, how: 'an IPv4-compatible IPv6 address' };
  return undefined;
}

type Classification = { category: AddressCategory; reason: string } | undefined;

function classifyV4(value: number): Classification {
  const big = BigInt(value);
  for (const r of V4_RANGES) if (inRange(4, big, r.base, r.prefix)) return { category: r.category, reason: r.label };
  return undefined;
}

/**
 * classifyIp says why an address is not a public unicast one, or undefined when it is. IPv6
 * addresses that embed an IPv4 address are judged by the address they embed.
 */
export function classifyIp(ip: ParsedIp): Classification {
  if (ip.family === 4) return classifyV4(ip.value);
  for (const r of V6_RANGES) {
    if (r.prefix === 128 && inRange(6, ip.value, r.base, r.prefix)) return { category: r.category, reason: r.label };
  }
  const embedded = embeddedIPv4(ip.value);
  if (embedded) {
    const v4text = formatIp({ family: 4, value: embedded.v4 });
    const inner = classifyV4(embedded.v4);
    if (inner) return { category: inner.category, reason: `${embedded.how} of ${v4text}, ${inner.reason}` };
    if (embedded.how.includes('IPv4-compatible')) return { category: 'ipv4_compatible', reason: `a deprecated IPv4-compatible IPv6 address (::${v4text})` };
    return undefined;
  }
  for (const r of V6_RANGES) if (inRange(6, ip.value, r.base, r.prefix)) return { category: r.category, reason: r.label };
  if (!inRange(6, ip.value, V6_GLOBAL, 3)) return { category: 'reserved', reason: 'a reserved IPv6 address (outside 2000::/3)' };
  return undefined;
}

function matchesCidr(policy: AddressPolicy, ip: ParsedIp): Cidr | undefined {
  const candidates: ParsedIp[] = [ip];
  // An allow-listed IPv4 range also covers the same addresses written as IPv4-mapped IPv6.
  if (ip.family === 6 && inRange(6, ip.value, V6_MAPPED, 96)) candidates.push({ family: 4, value: Number(ip.value & 0xffffffffn) });
  for (const c of policy.cidrs) {
    for (const cand of candidates) {
      if (cand.family === c.family && inRange(c.family, cand.family === 4 ? BigInt(cand.value) : cand.value, c.base, c.prefix)) return c;
    }
  }
  return undefined;
}

/** hostAllowListed says whether a host name is on the allow-list (exact, or below a `*.` entry). */
export function hostAllowListed(policy: AddressPolicy, host: string): boolean {
  const name = normalizeName(host);
  return policy.hosts.some((h) => (h.startsWith('*.') ? name.endsWith(h.slice(1)) && name.length > h.length - 1 : name === h));
}

function normalizeName(host: string): string {
  return host.trim().toLowerCase().replace(/\.$/, '');
}

/**
 * checkIp decides one address: public unicast addresses are allowed; others only when an allow-list
 * CIDR covers them, or when the host name was allow-listed (`hostAllowed`) — never cloud metadata
 * through a host name, and never unspecified, multicast or broadcast addresses.
 */
export function checkIp(address: string | ParsedIp, policy: AddressPolicy = PUBLIC_ONLY, hostAllowed = false): AddressVerdict {
  const ip = typeof address === 'string' ? parseIp(address) : address;
  const text = typeof address === 'string' ? address : formatIp(address);
  if (!ip) return { allowed: false, address: text, category: 'malformed', reason: `${JSON.stringify(text)} is not an IP address` };
  const canonical = formatIp(ip);
  const c = classifyIp(ip);
  if (c && NEVER_ALLOWED.has(c.category)) return { allowed: false, address: canonical, category: c.category, reason: `${canonical} is ${c.reason}` };
  if (matchesCidr(policy, ip)) return { allowed: true, address: canonical, allowListed: true };
  if (!c) return { allowed: true, address: canonical, allowListed: false };
  if (hostAllowed && c.category !== 'cloud_metadata') return { allowed: true, address: canonical, allowListed: true };
  return { allowed: false, address: canonical, category: c.category, reason: `${canonical} is ${c.reason}` };
}

/** Names that always mean this machine or a metadata service, whatever DNS says. */
const LOCAL_NAMES: ReadonlyArray<{ test: (n: string) => boolean; category: AddressCategory; reason: string }> = [
  { test: (n) => n === 'localhost' || n.endsWith('.localhost'), category: 'loopback', reason: 'names this machine (localhost)' },
  { test: (n) => n === 'metadata.google.internal' || n === 'metadata' || n === 'instance-data' || n === 'instance-data.ec2.internal', category: 'cloud_metadata', reason: 'names a cloud metadata service' },
];

/**
 * checkHost classifies the host of a URL: a literal address gets its verdict now; a name is
 * checked for syntax and for names that always mean this machine or a metadata service, and its
 * addresses are checked when the connection is made (checkResolved).
 */
export function checkHost(host: string, policy: AddressPolicy = PUBLIC_ONLY): HostVerdict {
  let text = host.trim().toLowerCase();
  const bracketed = text.startsWith('[') && text.endsWith(']');
  if (bracketed || text.includes(':')) {
    const ip = parseIp(text);
    if (!ip || ip.family !== 6) return malformedName(host, 'is not a valid IPv6 address');
    return { kind: 'ip', ip, verdict: checkIp(ip, policy, hostAllowListed(policy, formatIp(ip))) };
  }
  if (endsInANumber(text)) {
    const value = parseIPv4(text);
    if (value === undefined) return malformedName(host, 'is not a valid IPv4 address');
    const ip: ParsedIp = { family: 4, value };
    return { kind: 'ip', ip, verdict: checkIp(ip, policy, hostAllowListed(policy, formatIp(ip))) };
  }
  text = text.replace(/\.$/, '');
  const labels = text.split('.');
  if (!text || text.length > 253 || !labels.every((l) => /^(?!-)[a-z0-9_-]{1,63}(?<!-)$/.test(l))) return malformedName(host, 'is not a valid host name');
  const allowListed = hostAllowListed(policy, text);
  if (!allowListed) {
    for (const n of LOCAL_NAMES) if (n.test(text)) return { kind: 'name', name: text, allowListed, verdict: { allowed: false, category: n.category, reason: `${text} ${n.reason}` } };
  }
  return { kind: 'name', name: text, allowListed, verdict: { allowed: true } };
}

function malformedName(host: string, what: string): HostVerdict {
  return { kind: 'name', name: host, allowListed: false, verdict: { allowed: false, category: 'malformed', reason: `${JSON.stringify(host)} ${what}` } };
}

/**
 * checkResolved decides the addresses a name resolved to, before connecting: all of them must be
 * allowed (a name that also points inside is refused as a whole), and there must be at least one.
 */
export function checkResolved(name: string, addresses: readonly string[], policy: AddressPolicy = PUBLIC_ONLY): AddressVerdict[] | { refused: string; category: AddressCategory } {
  if (addresses.length === 0) return { refused: `${name} resolved to no address`, category: 'malformed' };
  const allowed = hostAllowListed(policy, name);
  const verdicts = addresses.map((a) => checkIp(a, policy, allowed));
  const bad = verdicts.find((v) => !v.allowed);
  if (bad && !bad.allowed) return { refused: `${name} resolves to ${bad.reason}`, category: bad.category };
  return verdicts;
}

/**
 * parseAllowList reads `RAG_FETCH_ALLOW`: entries separated by commas or spaces, each a CIDR
 * (`10.0.0.0/8`, `fd00::/8`), a single address, a host name (`wiki.internal`) or a subdomain
 * pattern (`*.corp.example`). Throws an Error naming the first bad entry.
 */
export function parseAllowList(text: string): AddressPolicy {
  const cidrs: Cidr[] = [];
  const hosts: string[] = [];
  for (const raw of text.split(/[\s,]+/).filter(Boolean)) {
    const entry = raw.toLowerCase();
    const slash = entry.indexOf('/');
    const addrText = slash >= 0 ? entry.slice(0, slash) : entry;
    const strict4 = parseIPv4Strict(addrText);
    const ip6 = addrText.includes(':') ? parseIp(addrText) : undefined;
    if (strict4 !== undefined || ip6) {
      const family = strict4 !== undefined ? 4 : 6;
      const bits = family === 4 ? 32 : 128;
      const prefixText = slash >= 0 ? entry.slice(slash + 1) : String(bits);
      if (!/^[0-9]{1,3}$/.test(prefixText) || Number(prefixText) > bits) throw new Error(`${JSON.stringify(raw)} has a bad prefix length (0..${bits})`);
      const prefix = Number(prefixText);
      const value = family === 4 ? BigInt(strict4!) : (ip6 as { value: bigint }).value;
      const shift = BigInt(bits - prefix);
      cidrs.push({ family, base: (value >> shift) << shift, prefix, text: raw });
      continue;
    }
    if (slash >= 0) throw new Error(`${JSON.stringify(raw)} is not a CIDR (write a.b.c.d/n or an IPv6 prefix)`);
    const name = entry.replace(/\.$/, '');
    const bare = name.startsWith('*.') ? name.slice(2) : name;
    if (!bare || bare.length > 253 || endsInANumber(bare) || !bare.split('.').every((l) => /^(?!-)[a-z0-9_-]{1,63}(?<!-)$/.test(l))) {
      throw new Error(`${JSON.stringify(raw)} is not a CIDR, an IP address or a host name`);
    }
    hosts.push(name);
  }
  return { cidrs, hosts };
}
