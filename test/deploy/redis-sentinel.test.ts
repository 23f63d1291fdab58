// The API and worker behind Redis Sentinel (redis+sentinel://): jobs complete, and complete again
// after Sentinel promotes the replica, with no restart and nothing reconfigured.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestServices, type TestServices } from "../support/services.ts";
import { findBinary, redisCli, runIrisJobs, startCoalesce, startSentinelGroup, waitForJob, type Coalesce, type SentinelGroup } from "./data-topology.ts";
import type { Job } from "@coalesce/contracts";

const KEY = "csk_sentinel_0123456789abcdef";
const MASTER = "coalesce";
const available = findBinary("redis-server") !== undefined && findBinary("redis-cli") !== undefined;
if (!available) console.warn("skipping the Redis Sentinel test: redis-server and redis-cli are not installed (apt-get install redis-server)");

describe.skipIf(!available)("behind Redis Sentinel", () => {
  let group: SentinelGroup;
  let services: TestServices;
  let coalesce: Coalesce;

  beforeAll(async () => {
    group = await startSentinelGroup(MASTER);
    services = await createTestServices();
    coalesce = await startCoalesce({ ...services.env, REDIS_URL: group.url }, KEY);
  });

  afterAll(async () => {
    await coalesce?.stop();
    await services?.cleanup();
    await group?.stop();
  });

  it("completes a JSON job and a CSV job on the master Sentinel names", async () => {
    const { json, csv, rows } = await runIrisJobs(coalesce);
    expect(json).toMatchObject({ status: "succeeded", counts: { succeeded: rows, failed: 0 } });
    expect(csv).toMatchObject({ status: "succeeded", counts: { succeeded: rows, failed: 0 } });
    expect(await redisCli(group.masterPort, "exists", `${services.queuePrefix}:workers`)).toBe("1");
  });

  it("follows a failover to the promoted replica, and completes jobs there", async () => {
    expect(await redisCli(group.sentinelPort, "sentinel", "failover", MASTER)).toBe("OK");
    const deadline = Date.now() + 20_000;
    while (!(await redisCli(group.replicaPort, "info", "replication")).includes("role:master")) {
      if (Date.now() > deadline) throw new Error("the replica was not promoted within 20 s");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const inputs = Array.from({ length: 50 }, (_, i) => ({ features: [5 + (i % 3) / 10, 3.4, 1.5, 0.2] }));
    // The first request after the switch may meet a connection still on its way to the new master.
    let created: { status: number; body: Job } | undefined;
    for (let attempt = 0; attempt < 50 && created?.status !== 202; attempt++) {
      created = await coalesce.call<Job>("POST", "/v1/jobs", JSON.stringify({ model: "iris", inputs })).catch(() => undefined);
      if (created?.status !== 202) await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(created?.status).toBe(202);
    const done = await waitForJob(coalesce, created!.body.id);
    expect(done).toMatchObject({ status: "succeeded", counts: { succeeded: 50, failed: 0 } });
    // The work went through the new master: its worker heartbeat is there.
    expect(await redisCli(group.replicaPort, "exists", `${services.queuePrefix}:workers`)).toBe("1");
  });
});
