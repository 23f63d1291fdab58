import { describe, expect, it } from "vitest";
import { DEFAULT_RETRY_SCHEDULE, nextAttemptDelayMs, parseRetrySchedule, RETRY_AFTER_FLOOR_MS } from "./retry-schedule.ts";

describe("parseRetrySchedule", () => {
  it("parses the default schedule", () => {
    expect(parseRetrySchedule(DEFAULT_RETRY_SCHEDULE)).toEqual([
      5000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000,
    ]);
  });

  it("takes ms, bare milliseconds, fractions, upper case and spaces", () => {
    expect(parseRetrySchedule("100ms, 250 ,1.5s,2M")).toEqual([100, 250, 1500, 120_000]);
  });

  it.each([
    ["", "step 1 is an empty step"],
    ["5s,,5m", "step 2 is an empty step"],
    ["5s,5x", 'step 2 is "5x"'],
    ["-5s", 'step 1 is "-5s"'],
    ["5 s", 'step 1 is "5 s"'],
  ])("rejects %j with a message naming the step", (text, message) => {
    expect(() => parseRetrySchedule(text)).toThrow(message);
  });
});

describe("nextAttemptDelayMs", () => {
  const schedule = parseRetrySchedule("5s,5m,30m");

  it("sends the first attempt at once, then follows the schedule, then gives up", () => {
    expect([0, 1, 2, 3, 4].map((made) => nextAttemptDelayMs(schedule, made, null))).toEqual([0, 5000, 300_000, 1_800_000, null]);
  });

  it("uses the receiver's Retry-After instead of the step, but not below the floor", () => {
    expect(nextAttemptDelayMs(schedule, 1, 7000)).toBe(7000);
    expect(nextAttemptDelayMs(schedule, 2, 7000)).toBe(7000);
    expect(nextAttemptDelayMs(schedule, 1, 0)).toBe(RETRY_AFTER_FLOOR_MS);
  });

  it("gives up when the schedule is used up even if the receiver asked for a retry", () => {
    expect(nextAttemptDelayMs(schedule, 4, 7000)).toBeNull();
  });
});
