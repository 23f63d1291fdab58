import { isTransientError } from "@coalesce/contracts";
import type { RedisClient } from "./connection.ts";

/** Redis pub/sub channel on which jobs' ends are announced (message: job ids, space-separated). */
function finishedChannel(prefix: string): string {
  return `${prefix}:jobs:finished`;
}

/**
 * How long a waiter waits for the subscription to be confirmed before it looks at the job anyway
 * (at most its own timeout): a subscription takes a round trip on a live connection, a little more
 * on one still connecting, and never comes on one that is down; the waiter then relies on looking
 * again by itself (see JobFinishedEvents.listening).
 */
const SUBSCRIBE_WAIT_MS = 1_000;

/**
 * Says that a job reached a terminal state; long-polls waiting on it answer at once. Best effort:
 * resolves false when Redis is unreachable, since the job's end is already in Postgres and a
 * long-poll that misses the announcement finds it when it next looks there.
 */
export async function publishJobFinished(redis: RedisClient, prefix: string, jobId: string): Promise<boolean> {
  return publishJobsFinished(redis, prefix, [jobId]);
}

/** publishJobFinished for many jobs in one message (a worker finishes jobs a batch at a time). */
export async function publishJobsFinished(redis: RedisClient, prefix: string, jobIds: readonly string[]): Promise<boolean> {
  if (jobIds.length === 0) return true;
  try {
    await redis.publish(finishedChannel(prefix), jobIds.join(" "));
    return true;
  } catch (error) {
    if (isTransientError(error)) return false;
    throw error;
  }
}

/**
 * One Redis subscription per process that wakes the requests waiting on a job (GET
 * /v1/jobs/{id}?wait=N) as soon as it finishes, without a database query per tick. While Redis is
 * unreachable nothing is announced: `listening` is false and waiters should look again on their own.
 */
export class JobFinishedEvents {
  readonly #subscriber: RedisClient;
  readonly #channel: string;
  readonly #waiters = new Map<string, Set<() => void>>();
  #subscription: Promise<void> | undefined;
  #subscribed = false;

  constructor(redis: RedisClient, prefix: string) {
    // A subscribed connection can do nothing else, so it is a connection of its own.
    this.#subscriber = redis.duplicate();
    this.#channel = finishedChannel(prefix);
    this.#subscriber.on("message", (_channel: string, message: string) => {
      for (const jobId of message.split(" ")) {
        const waiters = this.#waiters.get(jobId);
        if (!waiters) continue;
        this.#waiters.delete(jobId);
        for (const wake of waiters) wake();
      }
    });
    // A subscription refused while Redis was down is tried again once it is back (ioredis renews
    // subscriptions it already had by itself).
    this.#subscriber.on("ready", () => {
      if (this.#subscription === undefined && this.#waiters.size > 0) void this.#subscribe();
    });
  }

  /** True while announcements can arrive: subscribed, on a connection that is up. */
  get listening(): boolean {
    return this.#subscribed && this.#subscriber.status === "ready";
  }

  /**
   * Resolves when the job is announced finished or after `timeoutMs`, whichever comes first. Call
   * it before checking the job's state, then check, so an end between the two is not missed. Never
   * waits on Redis for longer than SUBSCRIBE_WAIT_MS.
   */
  async waitFor(jobId: string, timeoutMs: number): Promise<{ wait: Promise<void>; cancel: () => void }> {
    const subscribing = this.#subscribe();
    if (!this.#subscribed) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([subscribing, new Promise((resolve) => (timer = setTimeout(resolve, Math.min(SUBSCRIBE_WAIT_MS, timeoutMs))))]);
      clearTimeout(timer);
    }
    let wake!: () => void;
    let timer: NodeJS.Timeout | undefined;
    const wait = new Promise<void>((resolve) => {
      wake = resolve;
      timer = setTimeout(resolve, timeoutMs);
    });
    const waiters = this.#waiters.get(jobId) ?? new Set();
    waiters.add(wake);
    this.#waiters.set(jobId, waiters);
    const cancel = () => {
      clearTimeout(timer);
      waiters.delete(wake);
      if (waiters.size === 0 && this.#waiters.get(jobId) === waiters) this.#waiters.delete(jobId);
      wake();
    };
    void wait.then(() => clearTimeout(timer));
    return { wait, cancel };
  }

  /** Subscribes once; a failed attempt (Redis down) is forgotten so that a later call tries again. */
  #subscribe(): Promise<void> {
    this.#subscription ??= this.#subscriber.subscribe(this.#channel).then(
      () => {
        this.#subscribed = true;
      },
      () => {
        this.#subscription = undefined;
      },
    );
    return this.#subscription;
  }

  close(): void {
    this.#subscriber.disconnect();
  }
}
