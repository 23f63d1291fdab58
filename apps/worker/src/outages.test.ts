import { Writable } from "node:stream";
import { TransientError } from "@coalesce/contracts";
import pino from "pino";
import { describe, expect, it } from "vitest";
import { Outages } from "./outages.ts";

function logged() {
  const lines: { level: number; msg: string; [field: string]: unknown }[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split("\n")) if (line) lines.push(JSON.parse(line) as (typeof lines)[number]);
      done();
    },
  });
  return { logger: pino({ level: "debug" }, stream), lines };
}

const refused = () => Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), { code: "ECONNREFUSED" });

describe("Outages", () => {
  it("holds an outage from its first failure to the first answer, counting the failures between, in two debug lines", async () => {
    const { logger, lines } = logged();
    const outages = new Outages(logger, 5_000);
    for (let i = 0; i < 100; i++) outages.failed("postgres", refused());
    expect(outages.isDown("postgres")).toBe(true);
    outages.ok("postgres");
    outages.ok("postgres");
    await new Promise((resolve) => setImmediate(resolve));
    expect(lines.map((line) => [line.level, line.msg])).toEqual([
      [20, "postgres unreachable from the worker's work; holding work back"],
      [20, "postgres answers the worker's work again"],
    ]);
    expect(lines[1]).toMatchObject({ dependency: "postgres", failures: 100, downForMs: expect.any(Number) });
    expect(outages.isDown("postgres")).toBe(false);
  });

  it("counts a failure against the dependency the error names, else the one the caller was talking to", () => {
    const { logger } = logged();
    const outages = new Outages(logger, 5_000);
    expect(outages.failed("postgres", refused())).toBe("postgres");
    expect(outages.failed("postgres", new TransientError("redis", "Redis did not answer"))).toBe("redis");
    expect(outages.isDown("redis")).toBe(true);
  });

  it("waits briefly at first, longer as the outage lasts, never past the cap", () => {
    const { logger } = logged();
    const outages = new Outages(logger, 2_000);
    const first = outages.retryDelayMs("postgres");
    expect(first).toBeGreaterThan(0);
    expect(first).toBeLessThanOrEqual(2_000 * 1.25);
    for (let i = 0; i < 50; i++) expect(outages.retryDelayMs("postgres")).toBeLessThanOrEqual(2_000 * 1.25);
  });
});
