// Against the real Redis on this machine, on a channel of its own.
import { randomBytes } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import { startTcpProxy } from "../../../test/support/tcp-proxy.ts";
import { createRedisConnection, DEFAULT_REDIS_URL } from "./connection.ts";
import { JobFinishedEvents, publishJobFinished, publishJobsFinished } from "./job-events.ts";

const REDIS_URL = process.env.REDIS_URL ?? DEFAULT_REDIS_URL;
const redis = createRedisConnection(REDIS_URL);
const prefix = `coalesce-test-events-${randomBytes(4).toString("hex")}`;
const events = new JobFinishedEvents(redis, prefix);

afterAll(() => {
  events.close();
  redis.disconnect();
});

async function until(condition: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`not true within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe("JobFinishedEvents", () => {
  it("wakes the waiters of every job named in one announcement, and only those", async () => {
    const [a, b, c] = await Promise.all(["job_a", "job_b", "job_c"].map((id) => events.waitFor(id, 5_000)));
    const woken: string[] = [];
    void a!.wait.then(() => woken.push("job_a"));
    void b!.wait.then(() => woken.push("job_b"));
    void c!.wait.then(() => woken.push("job_c"));
    await publishJobsFinished(redis, prefix, ["job_a", "job_b"]);
    await Promise.all([a!.wait, b!.wait]);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(woken.sort()).toEqual(["job_a", "job_b"]);
    c!.cancel();
  });

  it("while Redis is down: waiting never hangs, `listening` says no announcement can come, and it listens again once Redis is back", async () => {
    const url = new URL(REDIS_URL);
    const proxy = await startTcpProxy(Number(url.port || 6379), url.hostname);
    url.hostname = "127.0.0.1";
    url.port = String(proxy.port);
    const said: string[] = [];
    const logger = { warn: (_: object, message: string) => said.push(message), info: (_: object, message: string) => said.push(message) };
    const connection = createRedisConnection(url.toString(), { failFast: true, logger });
    const outage = new JobFinishedEvents(connection, prefix);
    try {
      await (await outage.waitFor("job_x", 10)).wait;
      await until(() => outage.listening);

      await proxy.down();
      await until(() => !outage.listening);
      // Resolves at its timeout, not when Redis comes back.
      const waiting = await outage.waitFor("job_y", 100);
      await waiting.wait;
      // An announcement while Redis is down is lost, not an error: the job's end is in Postgres.
      expect(await publishJobFinished(connection, prefix, "job_y")).toBe(false);

      await proxy.up();
      await until(() => outage.listening);
      const woken = await outage.waitFor("job_z", 5_000);
      await publishJobFinished(redis, prefix, "job_z");
      await woken.wait;
      await until(() => said.length >= 2);
      expect(said).toEqual(["redis unavailable", expect.stringMatching(/^redis is back after \d+ s, \d+ failed connection attempts$/)]);
    } finally {
      outage.close();
      connection.disconnect();
      await proxy.close();
    }
  });
});
