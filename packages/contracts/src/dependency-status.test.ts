import { describe, expect, it } from "vitest";
import { DependencyStatus, describeFailure, type StatusLogger } from "./dependency-status.ts";

function recorder(): StatusLogger & { said: { level: string; fields: Record<string, unknown>; message: string }[] } {
  const said: { level: string; fields: Record<string, unknown>; message: string }[] = [];
  return {
    said,
    warn: (fields, message) => said.push({ level: "warn", fields, message }),
    info: (fields, message) => said.push({ level: "info", fields, message }),
  };
}

describe("DependencyStatus", () => {
  it("says an outage in two lines however many connections fail however often", () => {
    const log = recorder();
    const status = new DependencyStatus("redis", log);
    const [main, subscriber] = [{}, {}];
    status.reached(main);
    expect(log.said).toHaveLength(0);
    for (let attempt = 0; attempt < 20; attempt++) {
      status.failed(main, new Error("connect ECONNREFUSED 127.0.0.1:6379"));
      status.failed(subscriber, Object.assign(new AggregateError([]), { code: "ECONNREFUSED" }));
    }
    expect(status.available).toBe(false);
    status.reached(main);
    // Still out: the subscriber has not reached it yet.
    expect(log.said).toHaveLength(1);
    status.reached(subscriber);
    expect(status.available).toBe(true);
    expect(log.said).toEqual([
      { level: "warn", fields: { dependency: "redis", reason: "connect ECONNREFUSED 127.0.0.1:6379" }, message: "redis unavailable" },
      { level: "info", fields: { dependency: "redis", downSeconds: 0, failedAttempts: 40 }, message: "redis is back after 0 s, 40 failed connection attempts" },
    ]);
  });

  it("a connection closed on purpose holds no outage open; the next one that reaches it ends it", () => {
    const log = recorder();
    const status = new DependencyStatus("postgres", log);
    const [closed, other] = [{}, {}];
    status.failed(closed, new Error("read ECONNRESET"));
    status.failed(other, new Error("connect ECONNREFUSED"));
    status.forget(closed);
    status.reached(other);
    expect(log.said.map((entry) => entry.message)).toEqual(["postgres unavailable", "postgres is back after 0 s, 2 failed connection attempts"]);
  });

  it("describes a failure by its message, or its code when the message is empty", () => {
    expect(describeFailure(new Error("Connection is closed."))).toBe("Connection is closed.");
    expect(describeFailure(Object.assign(new AggregateError([]), { code: "ECONNREFUSED" }))).toBe("ECONNREFUSED");
  });
});
