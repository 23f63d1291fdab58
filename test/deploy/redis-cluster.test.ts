// The API and worker on a real three-node Redis Cluster (redis+cluster://): jobs, predict and rate
// limits work, and every key the project writes shares the queue prefix's hash tag, so no script,
// MULTI or pipeline can span slots.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestServices, type TestServices } from "../support/services.ts";
import { findBinary, redisCli, runIrisJobs, startCoalesce, startRedisCluster, type Coalesce, type RedisCluster } from "./data-topology.ts";

const KEY = "csk_cluster_0123456789abcdef";
const available = findBinary("redis-server") !== undefined && findBinary("redis-cli") !== undefined;
if (!available) console.warn("skipping the Redis Cluster test: redis-server and redis-cli are not installed (apt-get install redis-server)");

describe.skipIf(!available)("on a Redis Cluster", () => {
  let cluster: RedisCluster;
  let services: TestServices;
  let coalesce: Coalesce;

  beforeAll(async () => {
    cluster = await startRedisCluster();
    services = await createTestServices();
    coalesce = await startCoalesce({ ...services.env, REDIS_URL: cluster.url }, KEY);
  });

  afterAll(async () => {
    await coalesce?.stop();
    await services?.cleanup();
    await cluster?.stop();
  });

  it("completes a JSON job and a CSV job", async () => {
    const { json, csv, rows } = await runIrisJobs(coalesce);
    expect(json).toMatchObject({ status: "succeeded", counts: { total: rows, succeeded: rows, failed: 0 } });
    expect(csv).toMatchObject({ status: "succeeded", counts: { total: rows, succeeded: rows, failed: 0 } });
  });

  it("answers a predict through the cluster's stream, and again from the cache", async () => {
    const body = JSON.stringify({ inputs: [{ features: [5.1, 3.5, 1.4, 0.2] }, { features: [6.7, 3.0, 5.2, 2.3] }] });
    for (let i = 0; i < 2; i++) {
      const answer = await coalesce.call<{ outputs: { index: number; outputs: { label: number } }[] }>("POST", "/v1/models/iris/predict", body);
      expect(answer.status, JSON.stringify(answer.body)).toBe(200);
      expect(answer.body.outputs.map((row) => row.outputs.label)).toEqual([0, 2]);
    }
  });

  it("counts requests against the key's rate limit in the cluster", async () => {
    const first = await coalesce.call("GET", "/v1/jobs?limit=1");
    const second = await coalesce.call("GET", "/v1/jobs?limit=1");
    expect(first.headers.get("ratelimit-policy")).toMatch(/^"reads";q=\d+;w=1$/);
    // The counter lives in the cluster: advertised on every answer, decreasing within a window.
    expect(first.headers.get("ratelimit")).toMatch(/^"reads";r=\d+;t=1$/);
    expect(second.headers.get("ratelimit")).toMatch(/^"reads";r=\d+;t=1$/);
    // A key of 2 requests/s: a burst of writes is refused past them, by the counter in the cluster.
    const made = await coalesce.call<{ secret: string }>("POST", "/v1/api-keys", JSON.stringify({ name: "slow", scopes: ["jobs:write", "jobs:read"], rate_limit_rps: 2 }));
    expect(made.status, JSON.stringify(made.body)).toBe(201);
    const statuses = await Promise.all(
      Array.from({ length: 8 }, () =>
        fetch(`${coalesce.baseUrl}/v1/jobs`, { method: "POST", headers: { Authorization: `Bearer ${made.body.secret}`, "Content-Type": "application/json" }, body: "{}" }).then((r) => r.status),
      ),
    );
    expect(statuses.filter((status) => status === 429).length).toBeGreaterThanOrEqual(5);
  });

  it("keeps every key of the queue prefix, the rate counters' included, in one slot", async () => {
    const prefix = `{${services.queuePrefix}}`;
    const keys: string[] = [];
    for (const port of cluster.ports) {
      const found = await redisCli(port, "--scan", "--pattern", `${prefix}*`);
      keys.push(...found.split("\n").filter(Boolean));
    }
    expect(keys.some((key) => key.startsWith(`${prefix}:predict:`))).toBe(true);
    expect(keys.some((key) => key.startsWith(`${prefix}:rate:`))).toBe(true);
    expect(keys.some((key) => key.startsWith(`${prefix}:workers`))).toBe(true);
    const slots = new Set(await Promise.all(keys.map((key) => redisCli(cluster.ports[0]!, "cluster", "keyslot", key))));
    expect([...slots]).toEqual([await redisCli(cluster.ports[0]!, "cluster", "keyslot", services.queuePrefix)]);
  });
});
