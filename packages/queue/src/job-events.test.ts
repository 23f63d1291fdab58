// Against the real Redis on this machine, on a channel of its own.
import { randomBytes } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import { createRedisConnection, DEFAULT_REDIS_URL } from "./connection.ts";
import { JobFinishedEvents, publishJobsFinished } from "./job-events.ts";

const redis = createRedisConnection(process.env.REDIS_URL ?? DEFAULT_REDIS_URL);
const prefix = `coalesce-test-events-${randomBytes(4).toString("hex")}`;
const events = new JobFinishedEvents(redis, prefix);

afterAll(() => {
  events.close();
  redis.disconnect();
});

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
});
