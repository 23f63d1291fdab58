import { describe, expect, it } from "vitest";
import {
  checkWebhookUrl,
  isBlockedAddress,
  parseWebhookAllowlist,
  resolveWebhookTarget,
  WebhookTargetRefused,
  type WebhookLookup,
  type WebhookUrlPolicy,
} from "./address-policy.ts";

const STRICT: WebhookUrlPolicy = { allowHttp: false, allowlist: [] };

function fixedLookup(addresses: string[]): WebhookLookup {
  return async () => addresses.map((address) => ({ address, family: address.includes(":") ? 6 : 4 }));
}

describe("isBlockedAddress", () => {
  it.each([
    ["0.0.0.0", "0.0.0.0 is in 0.0.0.0/8, which means this host"],
    ["10.0.0.1", "10.0.0.1 is a private address (10.0.0.0/8)"],
    ["100.64.0.1", "100.64.0.1 is a carrier-grade NAT address (100.64.0.0/10)"],
    ["127.0.0.1", "127.0.0.1 is a loopback address"],
    ["127.255.255.254", "127.255.255.254 is a loopback address"],
    ["169.254.169.254", "169.254.169.254 is a link-local / cloud metadata address"],
    ["172.16.0.1", "172.16.0.1 is a private address (172.16.0.0/12)"],
    ["172.31.255.255", "172.31.255.255 is a private address (172.16.0.0/12)"],
    ["192.0.0.8", "192.0.0.8 is an IETF protocol address (192.0.0.0/24)"],
    ["192.168.1.1", "192.168.1.1 is a private address (192.168.0.0/16)"],
    ["198.19.0.1", "198.19.0.1 is a benchmarking address (198.18.0.0/15)"],
    ["224.0.0.251", "224.0.0.251 is a multicast address"],
    ["240.0.0.1", "240.0.0.1 is a reserved address (240.0.0.0/4)"],
    ["255.255.255.255", "255.255.255.255 is the broadcast address"],
    ["::", ":: is the unspecified address"],
    ["::1", "::1 is a loopback address"],
    ["::7f00:1", "::7f00:1 is an IPv4-compatible address (::/96)"],
    ["fc00::1", "fc00::1 is a unique local (private) address"],
    ["fd12:3456::1", "fd12:3456::1 is a unique local (private) address"],
    ["fe80::1", "fe80::1 is a link-local address"],
    ["fe80::1%eth0", "fe80::1%eth0 is a link-local address"],
    ["ff02::1", "ff02::1 is a multicast address"],
    ["fd00:ec2::254", "fd00:ec2::254 is the AWS metadata address"],
    ["::ffff:127.0.0.1", "::ffff:127.0.0.1 is an IPv4-mapped form of 127.0.0.1, a loopback address"],
    ["::ffff:a9fe:a9fe", "::ffff:a9fe:a9fe is an IPv4-mapped form of 169.254.169.254, a link-local / cloud metadata address"],
    ["0:0:0:0:0:ffff:0a00:0001", "0:0:0:0:0:ffff:0a00:0001 is an IPv4-mapped form of 10.0.0.1, a private address (10.0.0.0/8)"],
    ["64:ff9b::192.168.0.1", "64:ff9b::192.168.0.1 is a NAT64 form of 192.168.0.1, a private address (192.168.0.0/16)"],
    ["64:ff9b::a9fe:a9fe", "64:ff9b::a9fe:a9fe is a NAT64 form of 169.254.169.254, a link-local / cloud metadata address"],
    ["2002:7f00:1::", "2002:7f00:1:: is a 6to4 form of 127.0.0.1, a loopback address"],
    ["2002:a9fe:a9fe::1", "2002:a9fe:a9fe::1 is a 6to4 form of 169.254.169.254, a link-local / cloud metadata address"],
    ["2002:c0a8:101:1::5", "2002:c0a8:101:1::5 is a 6to4 form of 192.168.1.1, a private address (192.168.0.0/16)"],
    // Teredo: 2001:0:SERVER:FLAGS:PORT:~CLIENT; 80ff:fffe is 127.0.0.1 with every bit inverted.
    ["2001:0:808:808::80ff:fffe", "2001:0:808:808::80ff:fffe is a Teredo address whose client is 127.0.0.1, a loopback address"],
    ["2001:0:4136:e378:8000:63bf:f5ff:fffe", "2001:0:4136:e378:8000:63bf:f5ff:fffe is a Teredo address whose client is 10.0.0.1, a private address (10.0.0.0/8)"],
    ["2001::a9fe:a9fe:0:0:f7f7:f7f7", "2001::a9fe:a9fe:0:0:f7f7:f7f7 is a Teredo address whose server is 169.254.169.254, a link-local / cloud metadata address"],
    ["example.com", "example.com is not an IP address"],
  ])("blocks %s", (ip, reason) => {
    expect(isBlockedAddress(ip, [])).toBe(reason);
  });

  it.each(["8.8.8.8", "93.184.216.34", "172.32.0.1", "100.128.0.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1", "2001:0:4136:e378:8000:63bf:f7f7:f7f7", "2001:db9::1"])(
    "lets %s through",
    (ip) => {
      expect(isBlockedAddress(ip, [])).toBeNull();
    },
  );

  it("lets allowlisted ranges through, including their IPv4-mapped forms, and nothing beside them", () => {
    const allowlist = ["127.0.0.0/8", "::1/128", "10.1.2.3/32"];
    expect(isBlockedAddress("127.0.0.1", allowlist)).toBeNull();
    expect(isBlockedAddress("::ffff:127.0.0.1", allowlist)).toBeNull();
    expect(isBlockedAddress("::1", allowlist)).toBeNull();
    expect(isBlockedAddress("10.1.2.3", allowlist)).toBeNull();
    expect(isBlockedAddress("10.1.2.4", allowlist)).toBe("10.1.2.4 is a private address (10.0.0.0/8)");
    expect(isBlockedAddress("169.254.169.254", allowlist)).not.toBeNull();
    expect(isBlockedAddress("2002:7f00:1::", allowlist)).toBeNull();
    expect(isBlockedAddress("2002:a00:4::", allowlist)).toBe("2002:a00:4:: is a 6to4 form of 10.0.0.4, a private address (10.0.0.0/8)");
  });
});

describe("parseWebhookAllowlist", () => {
  it("parses CIDRs, single addresses and hostnames, skipping blanks", () => {
    expect(parseWebhookAllowlist(" 127.0.0.0/8, ::1/128 ,10.1.2.3,Hooks.Internal,, ")).toEqual([
      "127.0.0.0/8",
      "::1/128",
      "10.1.2.3",
      "hooks.internal",
    ]);
    expect(parseWebhookAllowlist("")).toEqual([]);
  });

  it.each([
    ["10.0.0.0/33", 'invalid webhook allowlist entry "10.0.0.0/33": the prefix length of an IPv4 range is 0 to 32'],
    ["::1/129", "the prefix length of an IPv6 range is 0 to 128"],
    ["10.0.0.0/", "the prefix length of an IPv4 range is 0 to 32"],
    ["10.0.0.0/8/8", "expected one address and one prefix length"],
    ["10.0.0.256/8", "expected a CIDR like"],
    ["hooks_internal", 'invalid webhook allowlist entry "hooks_internal": expected a CIDR like 127.0.0.0/8'],
    ["https://hooks.internal", "expected a CIDR like"],
  ])("rejects %j", (text, message) => {
    expect(() => parseWebhookAllowlist(`127.0.0.0/8,${text}`)).toThrow(message);
  });
});

describe("checkWebhookUrl", () => {
  it("accepts a public https URL and returns it parsed", () => {
    const result = checkWebhookUrl("https://hooks.example.com/coalesce?tenant=7", STRICT);
    expect(result.ok && result.url.href).toBe("https://hooks.example.com/coalesce?tenant=7");
  });

  it.each([
    ["/webhooks", "not an absolute URL; give the full address, like https://example.com/webhooks"],
    ["http://hooks.example.com/", "http URLs are not allowed; use https (set WEBHOOK_ALLOW_HTTP=true for local development)"],
    ["ftp://hooks.example.com/", "ftp: URLs cannot receive webhooks; use https"],
    ["https://user:pass@hooks.example.com/", "the URL must not contain a username or password; verify the webhook signature instead"],
    ["https://hooks.example.com/#top", "the URL must not contain a fragment (#...); receivers never see it"],
    ["https://hooks.example.com/#", "the URL must not contain a fragment (#...); receivers never see it"],
    [`https://hooks.example.com/${"a".repeat(2030)}`, "the URL is 2056 characters long; the limit is 2048"],
    ["https://10.0.0.1/", "10.0.0.1 is a private address (10.0.0.0/8); webhooks are only delivered to public addresses (unless the server lists it in WEBHOOK_ALLOWLIST)"],
    ["https://[::1]/", "::1 is a loopback address; webhooks are only delivered to public addresses (unless the server lists it in WEBHOOK_ALLOWLIST)"],
    ["https://2130706433/", "127.0.0.1 is a loopback address; webhooks are only delivered to public addresses (unless the server lists it in WEBHOOK_ALLOWLIST)"],
    ["https://0x7f.1/", "127.0.0.1 is a loopback address; webhooks are only delivered to public addresses (unless the server lists it in WEBHOOK_ALLOWLIST)"],
    ["https://[2002:7f00:1::]/", "2002:7f00:1:: is a 6to4 form of 127.0.0.1, a loopback address; webhooks are only delivered to public addresses (unless the server lists it in WEBHOOK_ALLOWLIST)"],
    ["https://[2001:0:808:808::80ff:fffe]:8443/hook", "2001:0:808:808::80ff:fffe is a Teredo address whose client is 127.0.0.1, a loopback address; webhooks are only delivered to public addresses (unless the server lists it in WEBHOOK_ALLOWLIST)"],
  ])("refuses %s", (url, reason) => {
    expect(checkWebhookUrl(url, STRICT)).toEqual({ ok: false, reason });
  });

  it("accepts http and allowlisted addresses when the policy says so", () => {
    const policy: WebhookUrlPolicy = { allowHttp: true, allowlist: ["127.0.0.0/8", "::1/128"] };
    expect(checkWebhookUrl("http://127.0.0.1:8080/hook", policy).ok).toBe(true);
    expect(checkWebhookUrl("http://[::1]:8080/hook", policy).ok).toBe(true);
    expect(checkWebhookUrl("http://10.0.0.1/hook", policy).ok).toBe(false);
  });
});

describe("resolveWebhookTarget", () => {
  it("returns the first address of a public name, resolving it once", async () => {
    let calls = 0;
    const lookup: WebhookLookup = async (hostname, options) => {
      calls += 1;
      return fixedLookup(["93.184.216.34", "2606:2800:220:1::1"])(hostname, options);
    };
    await expect(resolveWebhookTarget(new URL("https://hooks.example.com/"), STRICT, lookup)).resolves.toEqual({
      address: "93.184.216.34",
      family: 4,
    });
    expect(calls).toBe(1);
  });

  it("refuses a name when any of its addresses is internal", async () => {
    const url = new URL("https://hooks.example.com/");
    await expect(resolveWebhookTarget(url, STRICT, fixedLookup(["93.184.216.34", "10.0.0.5"]))).rejects.toThrow(
      new WebhookTargetRefused(
        "hooks.example.com resolves to 10.0.0.5, a private address (10.0.0.0/8); webhooks are only delivered to public addresses (unless the server lists it in WEBHOOK_ALLOWLIST)",
      ),
    );
  });

  it("trusts whatever an allowlisted hostname resolves to, and only that hostname", async () => {
    const policy: WebhookUrlPolicy = { allowHttp: false, allowlist: ["hooks.internal"] };
    const lookup = fixedLookup(["10.0.0.5"]);
    await expect(resolveWebhookTarget(new URL("https://HOOKS.internal./"), policy, lookup)).resolves.toEqual({
      address: "10.0.0.5",
      family: 4,
    });
    await expect(resolveWebhookTarget(new URL("https://other.internal/"), policy, lookup)).rejects.toThrow(WebhookTargetRefused);
  });

  it("does not resolve IP literals", async () => {
    const lookup: WebhookLookup = async () => expect.unreachable("an IP literal was looked up");
    const url = new URL("https://[2606:4700:4700::1111]/");
    await expect(resolveWebhookTarget(url, STRICT, lookup)).resolves.toEqual({ address: "2606:4700:4700::1111", family: 6 });
    await expect(resolveWebhookTarget(new URL("https://169.254.169.254/"), STRICT, lookup)).rejects.toThrow(
      "169.254.169.254 is a link-local / cloud metadata address",
    );
  });
});
