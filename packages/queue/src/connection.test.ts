import { ConfigError } from "@coalesce/contracts";
import { describe, expect, it } from "vitest";
import { createRedisConnection, DEFAULT_REDIS_URL, hashTaggedPrefix, isCluster, parseRedisUrl, queuePrefixFor, redisUrlProblem } from "./connection.ts";

describe("REDIS_URL forms", () => {
  it("hands redis:// and rediss:// to ioredis as they are", () => {
    expect(parseRedisUrl("redis://127.0.0.1:6379")).toEqual({ kind: "standalone", url: "redis://127.0.0.1:6379" });
    expect(parseRedisUrl("rediss://:secret@cache.internal:6380/2")).toEqual({ kind: "standalone", url: "rediss://:secret@cache.internal:6380/2" });
  });

  it("reads Sentinels, the master's name, the db and both passwords from redis+sentinel://", () => {
    expect(parseRedisUrl("redis+sentinel://:pw@s1:26379,s2,[::1]:26380/mymaster/3?sentinelPassword=spw")).toEqual({
      kind: "sentinel",
      sentinels: [
        { host: "s1", port: 26379 },
        { host: "s2", port: 26379 },
        { host: "::1", port: 26380 },
      ],
      masterName: "mymaster",
      db: 3,
      password: "pw",
      sentinelPassword: "spw",
      tls: false,
    });
    expect(parseRedisUrl("rediss+sentinel://app:pw@s1/primary")).toMatchObject({ kind: "sentinel", username: "app", password: "pw", db: 0, tls: true });
  });

  it("reads the seed nodes of redis+cluster://", () => {
    expect(parseRedisUrl("redis+cluster://n1:7000,n2:7001,n3")).toEqual({
      kind: "cluster",
      nodes: [
        { host: "n1", port: 7000 },
        { host: "n2", port: 7001 },
        { host: "n3", port: 6379 },
      ],
      tls: false,
    });
    expect(parseRedisUrl("rediss+cluster://default:pw@n1:7000")).toMatchObject({ kind: "cluster", username: "default", password: "pw", tls: true });
  });

  it("says what is wrong, and which forms it takes", () => {
    expect(redisUrlProblem("http://localhost:6379")).toMatch(/unknown scheme http:\/\/; expected redis:\/\/.*redis\+sentinel:\/\/.*redis\+cluster:\/\//);
    expect(redisUrlProblem("redis+sentinel://s1:26379")).toMatch(/needs the master's name/);
    expect(redisUrlProblem("redis+sentinel://s1:26379/mymaster/x")).toMatch(/db a number/);
    expect(redisUrlProblem("redis+cluster://n1:7000/1")).toMatch(/database 0 only/);
    expect(redisUrlProblem("redis://a:1,b:2")).toMatch(/takes one host/);
    expect(redisUrlProblem("redis+cluster://n1:99999")).toMatch(/port out of range/);
    expect(redisUrlProblem("localhost:6379")).toMatch(/not a Redis URL/);
    expect(redisUrlProblem(DEFAULT_REDIS_URL)).toBeUndefined();
  });
});

describe("the queue prefix on a cluster", () => {
  it("wraps an untagged prefix in braces and keeps one that has a tag", () => {
    expect(hashTaggedPrefix("coalesce")).toBe("{coalesce}");
    expect(hashTaggedPrefix("{coalesce}")).toBe("{coalesce}");
    expect(hashTaggedPrefix("prod-{coalesce}-eu")).toBe("prod-{coalesce}-eu");
  });

  it("refuses a brace that is no tag, naming QUEUE_PREFIX", () => {
    expect(() => hashTaggedPrefix("{}coalesce")).toThrow(/no hash tag/);
    expect(() => hashTaggedPrefix("coal{esce")).toThrow(/no hash tag/);
    expect(() => queuePrefixFor("redis+cluster://n1:7000", "coal{esce")).toThrow(ConfigError);
    expect(() => queuePrefixFor("redis+cluster://n1:7000", "coal{esce")).toThrow(/QUEUE_PREFIX: .*no hash tag.*REDIS_URL is a cluster/);
  });

  it("leaves the prefix alone on one Redis and behind Sentinel", () => {
    expect(queuePrefixFor("redis://127.0.0.1:6379", "coalesce")).toBe("coalesce");
    expect(queuePrefixFor("redis+sentinel://s1/mymaster", "coal{esce")).toBe("coal{esce");
    expect(queuePrefixFor("redis+cluster://n1:7000", "coalesce")).toBe("{coalesce}");
  });
});

describe("createRedisConnection", () => {
  it("gives a Cluster for redis+cluster:// and a Redis otherwise, without connecting first", async () => {
    const plain = createRedisConnection(process.env.REDIS_URL ?? DEFAULT_REDIS_URL);
    // Port 1 refuses at once: the cluster client keeps trying in the background until disconnected.
    const cluster = createRedisConnection("redis+cluster://127.0.0.1:1");
    try {
      expect(isCluster(plain)).toBe(false);
      if (!isCluster(cluster)) throw new Error("expected a Cluster for redis+cluster://");
      expect(await plain.ping()).toBe("PONG");
      // BullMQ refuses a worker connection whose commands give up; the cluster's nodes get the same setting.
      expect(cluster.options.redisOptions?.maxRetriesPerRequest).toBeNull();
      const duplicate = cluster.duplicate();
      expect(isCluster(duplicate)).toBe(true);
      duplicate.disconnect();
    } finally {
      plain.disconnect();
      cluster.disconnect();
    }
  });
});
