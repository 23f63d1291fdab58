import { lookup as dnsLookup } from "node:dns/promises";
import { BlockList, isIP } from "node:net";

/** Where webhooks may be sent. Built once from the environment and passed to every check. */
export type WebhookUrlPolicy = {
  /** Accept plain `http:` URLs, for a receiver on a developer machine. */
  allowHttp: boolean;
  /**
   * CIDRs (`127.0.0.0/8`, `::1/128`, `10.1.2.3/32`) and exact hostnames that may be reached even though
   * they are private or internal. A hostname entry trusts whatever that name resolves to.
   */
  allowlist: readonly string[];
};

/** Resolves every address of a hostname; `dns.promises.lookup` by default, a fake in tests. */
export type WebhookLookup = (
  hostname: string,
  options: { all: true },
) => Promise<readonly { address: string; family: number }[]>;

export type WebhookTarget = { address: string; family: 4 | 6 };

/** The address check said no; `message` is a sentence for the user. */
export class WebhookTargetRefused extends Error {
  override name = "WebhookTargetRefused";
}

const MAX_URL_LENGTH = 2048;
const PUBLIC_ONLY = "webhooks are only delivered to public addresses (unless the server lists it in WEBHOOK_ALLOWLIST)";

type Range = { cidr: string; description: string };

// Checked in order, so a specific range (the AWS metadata address, broadcast) names itself before the
// wider range around it.
const BLOCKED_IPV4: readonly Range[] = [
  { cidr: "0.0.0.0/8", description: "in 0.0.0.0/8, which means this host" },
  { cidr: "10.0.0.0/8", description: "a private address (10.0.0.0/8)" },
  { cidr: "100.64.0.0/10", description: "a carrier-grade NAT address (100.64.0.0/10)" },
  { cidr: "127.0.0.0/8", description: "a loopback address" },
  { cidr: "169.254.0.0/16", description: "a link-local / cloud metadata address" },
  { cidr: "172.16.0.0/12", description: "a private address (172.16.0.0/12)" },
  { cidr: "192.0.0.0/24", description: "an IETF protocol address (192.0.0.0/24)" },
  { cidr: "192.168.0.0/16", description: "a private address (192.168.0.0/16)" },
  { cidr: "198.18.0.0/15", description: "a benchmarking address (198.18.0.0/15)" },
  { cidr: "224.0.0.0/4", description: "a multicast address" },
  { cidr: "255.255.255.255/32", description: "the broadcast address" },
  { cidr: "240.0.0.0/4", description: "a reserved address (240.0.0.0/4)" },
];

const BLOCKED_IPV6: readonly Range[] = [
  { cidr: "::/128", description: "the unspecified address" },
  { cidr: "::1/128", description: "a loopback address" },
  // The IPv4-compatible form is deprecated and never routed publicly; some resolvers still hand it out.
  { cidr: "::/96", description: "an IPv4-compatible address (::/96)" },
  { cidr: "fd00:ec2::254/128", description: "the AWS metadata address" },
  { cidr: "fc00::/7", description: "a unique local (private) address" },
  { cidr: "fe80::/10", description: "a link-local address" },
  { cidr: "ff00::/8", description: "a multicast address" },
];

type CompiledRange = { list: BlockList; description: string };

function compileRanges(ranges: readonly Range[], family: "ipv4" | "ipv6"): CompiledRange[] {
  return ranges.map(({ cidr, description }) => {
    const [network = "", prefix] = cidr.split("/");
    const list = new BlockList();
    list.addSubnet(network, Number(prefix), family);
    return { list, description };
  });
}

const BLOCKED = { ipv4: compileRanges(BLOCKED_IPV4, "ipv4"), ipv6: compileRanges(BLOCKED_IPV6, "ipv6") };

type AllowlistEntry = { kind: "subnet"; network: string; prefix: number; family: "ipv4" | "ipv6" } | { kind: "hostname"; name: string };

const HOSTNAME_LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

function parseAllowlistEntry(text: string): AllowlistEntry {
  const entry = text.trim().toLowerCase();
  const fail = (why: string) => new Error(`invalid webhook allowlist entry "${text.trim()}": ${why}`);
  const [network = "", prefixText, extra] = entry.split("/");
  const version = isIP(network);
  if (version !== 0) {
    if (extra !== undefined) throw fail("expected one address and one prefix length, like 10.1.2.0/24");
    const maxPrefix = version === 4 ? 32 : 128;
    const prefix = prefixText === undefined ? maxPrefix : Number(prefixText);
    if (prefixText !== undefined && (!/^\d{1,3}$/.test(prefixText) || prefix > maxPrefix)) {
      throw fail(`the prefix length of an IPv${version} range is 0 to ${maxPrefix}`);
    }
    return { kind: "subnet", network, prefix, family: version === 4 ? "ipv4" : "ipv6" };
  }
  const name = entry.replace(/\.$/, "");
  if (prefixText !== undefined || name.length > 253 || !name.split(".").every((label) => HOSTNAME_LABEL.test(label))) {
    throw fail("expected a CIDR like 127.0.0.0/8 or ::1/128, or a hostname like hooks.internal");
  }
  return { kind: "hostname", name };
}

/**
 * Parses a comma-separated allowlist (`127.0.0.0/8,::1/128,hooks.internal`) from the environment.
 * Blank entries are skipped; a malformed one throws an error that quotes it.
 */
export function parseWebhookAllowlist(text: string): string[] {
  const entries = text.split(",").filter((entry) => entry.trim() !== "");
  for (const entry of entries) parseAllowlistEntry(entry);
  return entries.map((entry) => entry.trim().toLowerCase());
}

type Allowlist = { addresses: BlockList; hostnames: Set<string> };

function compileAllowlist(entries: readonly string[]): Allowlist {
  const allowlist: Allowlist = { addresses: new BlockList(), hostnames: new Set() };
  for (const text of entries) {
    const entry = parseAllowlistEntry(text);
    if (entry.kind === "hostname") allowlist.hostnames.add(entry.name);
    else allowlist.addresses.addSubnet(entry.network, entry.prefix, entry.family);
  }
  return allowlist;
}

/** The eight 16-bit groups of an IPv6 address, or null when it is not one. */
function ipv6Groups(address: string): number[] | null {
  if (isIP(address) !== 6) return null;
  let text = address.replace(/%.*$/, "");
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = "", tail] = text.split("::");
  const parse = (part: string) => (part === "" ? [] : part.split(":").map((group) => Number.parseInt(group, 16)));
  const front = parse(head);
  const back = tail === undefined ? [] : parse(tail);
  return [...front, ...Array<number>(8 - front.length - back.length).fill(0), ...back];
}

type EmbeddedIpv4 = { form: string; ipv4: string };

function dottedQuad(high: number, low: number): string {
  return [high >> 8, high & 0xff, low >> 8, low & 0xff].join(".");
}

/**
 * The IPv4 addresses an IPv6 address carries and that a connection to it may end up at: IPv4-mapped
 * (`::ffff:a.b.c.d`) and NAT64 (`64:ff9b::a.b.c.d`) reach their IPv4 directly; 6to4 (`2002:aabb:ccdd::/48`)
 * is relayed to the IPv4 in its second and third groups; Teredo (`2001:0::/32`) carries its server's IPv4
 * in the third and fourth groups and its client's, each bit inverted, in the last two. 6to4 and Teredo are
 * judged by what they embed rather than refused outright: both are legitimately public transition ranges,
 * and an embedded private or loopback address is exactly the SSRF detour to close, so refusing that is
 * enough. For Teredo both embedded addresses must be public, since the relay talks to both.
 */
function embeddedIpv4(address: string): EmbeddedIpv4[] {
  const groups = ipv6Groups(address);
  if (!groups) return [];
  const [g0, g1 = 0, g2 = 0, g3 = 0, g4, g5, g6 = 0, g7 = 0] = groups;
  const zeroTo = (count: number) => groups.slice(0, count).every((group) => group === 0);
  if (zeroTo(5) && g5 === 0xffff) return [{ form: "an IPv4-mapped form of", ipv4: dottedQuad(g6, g7) }];
  if (g0 === 0x64 && g1 === 0xff9b && g2 === 0 && g3 === 0 && g4 === 0 && g5 === 0) return [{ form: "a NAT64 form of", ipv4: dottedQuad(g6, g7) }];
  if (g0 === 0x2002) return [{ form: "a 6to4 form of", ipv4: dottedQuad(g1, g2) }];
  if (g0 === 0x2001 && g1 === 0) {
    return [
      { form: "a Teredo address whose client is", ipv4: dottedQuad(g6 ^ 0xffff, g7 ^ 0xffff) },
      { form: "a Teredo address whose server is", ipv4: dottedQuad(g2, g3) },
    ];
  }
  return [];
}

/** What makes `ip` unreachable for webhooks, as a noun phrase ("a loopback address"), or null. */
function describeBlockedAddress(ip: string, allowlist: Allowlist): string | null {
  const address = ip.replace(/%.*$/, "");
  const version = isIP(address);
  if (version === 0) return "not an IP address";
  const embedded = version === 6 ? embeddedIpv4(address) : [];
  if (embedded.length > 0) {
    for (const { form, ipv4 } of embedded) {
      const inner = describeBlockedAddress(ipv4, allowlist);
      if (inner) return `${form} ${ipv4}, ${inner}`;
    }
    return null;
  }
  const family = version === 4 ? "ipv4" : "ipv6";
  if (allowlist.addresses.check(address, family)) return null;
  return BLOCKED[family].find((range) => range.list.check(address, family))?.description ?? null;
}

/**
 * Why webhooks may not be sent to `ip` ("169.254.169.254 is a link-local / cloud metadata address"),
 * or null when it is a public address or covered by a CIDR in `allowlist`.
 */
export function isBlockedAddress(ip: string, allowlist: readonly string[]): string | null {
  const description = describeBlockedAddress(ip, compileAllowlist(allowlist));
  return description && `${ip} is ${description}`;
}

/** The host of a URL without the brackets around an IPv6 literal. */
function bareHostname(url: URL): string {
  return url.hostname.replace(/^\[(.*)\]$/, "$1");
}

/**
 * The checks a webhook URL must pass, both when it is registered and again before each delivery: an
 * absolute https URL (http only where the policy allows it) without credentials or fragment, whose host,
 * when it is an IP literal, is public or allowlisted. Hostnames are judged by {@link resolveWebhookTarget}.
 */
export function checkWebhookUrl(url: string, policy: WebhookUrlPolicy): { ok: true; url: URL } | { ok: false; reason: string } {
  const refuse = (reason: string) => ({ ok: false as const, reason });
  if (url.length > MAX_URL_LENGTH) return refuse(`the URL is ${url.length} characters long; the limit is ${MAX_URL_LENGTH}`);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return refuse("not an absolute URL; give the full address, like https://example.com/webhooks");
  }
  if (parsed.protocol === "http:" && !policy.allowHttp) {
    return refuse("http URLs are not allowed; use https (set WEBHOOK_ALLOW_HTTP=true for local development)");
  }
  if (parsed.protocol !== "https:" && parsed.protocol !== "http:") {
    return refuse(`${parsed.protocol} URLs cannot receive webhooks; use https`);
  }
  if (parsed.username !== "" || parsed.password !== "") {
    return refuse("the URL must not contain a username or password; verify the webhook signature instead");
  }
  if (url.includes("#")) return refuse("the URL must not contain a fragment (#...); receivers never see it");
  const host = bareHostname(parsed);
  if (isIP(host) !== 0) {
    const blocked = isBlockedAddress(host, policy.allowlist);
    if (blocked) return refuse(`${blocked}; ${PUBLIC_ONLY}`);
  }
  return { ok: true, url: parsed };
}

function toTarget(address: string, family: number): WebhookTarget {
  return { address, family: family === 6 ? 6 : 4 };
}

/**
 * Resolves the URL's host once, to the address the delivery must connect to, so that a second lookup
 * cannot swap in an internal address after this check (DNS rebinding). Every resolved address must pass
 * {@link isBlockedAddress}, unless the hostname itself is allowlisted; IP literals are not resolved.
 *
 * @throws WebhookTargetRefused when the address is private or internal
 * @throws the lookup's own error when the name does not resolve
 */
export async function resolveWebhookTarget(
  url: URL,
  policy: WebhookUrlPolicy,
  lookup: WebhookLookup = dnsLookup,
): Promise<WebhookTarget> {
  const allowlist = compileAllowlist(policy.allowlist);
  const host = bareHostname(url);
  const version = isIP(host);
  if (version !== 0) {
    const blocked = describeBlockedAddress(host, allowlist);
    if (blocked) throw new WebhookTargetRefused(`${host} is ${blocked}; ${PUBLIC_ONLY}`);
    return toTarget(host, version);
  }
  const addresses = await lookup(host, { all: true });
  const [first] = addresses;
  if (!first) throw new Error(`${host} did not resolve to any address`);
  if (!allowlist.hostnames.has(host.replace(/\.$/, ""))) {
    for (const { address } of addresses) {
      const blocked = describeBlockedAddress(address, allowlist);
      if (blocked) throw new WebhookTargetRefused(`${host} resolves to ${address}, ${blocked}; ${PUBLIC_ONLY}`);
    }
  }
  return toTarget(first.address, first.family);
}
