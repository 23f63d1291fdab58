/** The delays between attempts that Standard Webhooks suggests: eight attempts over about 28 hours. */
export const DEFAULT_RETRY_SCHEDULE = "5s,5m,30m,2h,5h,10h,10h";

/** A receiver's Retry-After is honoured, but never sooner than this. */
export const RETRY_AFTER_FLOOR_MS = 1000;

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;
const STEP = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/;

/**
 * Parses a retry schedule such as `5s,5m,30m,2h` (units ms, s, m, h; a bare number is milliseconds)
 * into the delay before each retry, in milliseconds.
 */
export function parseRetrySchedule(text: string): number[] {
  const steps = text.split(",").map((step) => step.trim());
  return steps.map((step, index) => {
    const match = STEP.exec(step.toLowerCase());
    if (!match) {
      const shown = step === "" ? "an empty step" : `"${step}"`;
      throw new Error(`invalid retry schedule "${text}": step ${index + 1} is ${shown}; write delays like 5s,5m,30m,2h`);
    }
    const unit = (match[2] ?? "ms") as keyof typeof UNIT_MS;
    return Math.round(Number(match[1]) * UNIT_MS[unit]);
  });
}

/**
 * How long to wait before the next attempt after `attemptsMade` attempts (0 before the first, which goes
 * at once), or null once the schedule is used up. A Retry-After from the receiver replaces the schedule's
 * step. There is no jitter: retries of different messages are already spread by when each was first sent,
 * and a deterministic schedule lets a test, or a user reading the delivery log, know the next attempt time.
 */
export function nextAttemptDelayMs(schedule: readonly number[], attemptsMade: number, retryAfterMs: number | null): number | null {
  if (attemptsMade <= 0) return 0;
  const step = schedule[attemptsMade - 1];
  if (step === undefined) return null;
  return retryAfterMs === null ? step : Math.max(retryAfterMs, RETRY_AFTER_FLOOR_MS);
}
