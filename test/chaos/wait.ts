// Every wait in the fault suite has a deadline and says what it was waiting for when it gives up.
import { setTimeout as sleep } from "node:timers/promises";

export { sleep };

export class WaitTimeout extends Error {}

/** Thrown by a check to stop waiting at once: what it waits for can no longer happen (a process died). */
export class GiveUp extends Error {}

/**
 * Polls `check` every `everyMs` until it returns something other than false/null/undefined, and
 * returns that. `describe` (if given) is added to the timeout's message: the last state seen.
 */
export async function until<T>(
  what: string,
  timeoutMs: number,
  check: () => Promise<T | false | null | undefined> | T | false | null | undefined,
  options: { everyMs?: number; describe?: () => string } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown = null;
  for (;;) {
    try {
      const value = await check();
      if (value !== false && value !== null && value !== undefined) return value;
      lastError = null;
    } catch (error) {
      // GiveUp (and a nested wait's timeout) is final; anything else (a refused connection) is retried.
      if (error instanceof WaitTimeout || error instanceof GiveUp) throw error;
      lastError = error;
    }
    if (Date.now() > deadline) {
      const last = options.describe?.() ?? (lastError ? `last error: ${(lastError as Error).message}` : "");
      throw new WaitTimeout(`gave up after ${(timeoutMs / 1000).toFixed(0)} s waiting for ${what}${last ? ` (${last})` : ""}`);
    }
    await sleep(options.everyMs ?? 200);
  }
}
