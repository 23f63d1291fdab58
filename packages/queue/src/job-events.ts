import type { Redis } from "ioredis";

/** Redis pub/sub channel on which jobs' ends are announced (message: job ids, space-separated). */
function finishedChannel(prefix: string): string {
  return `${prefix}:jobs:finished`;
}

/** Says that a job reached a terminal state; long-polls waiting on it answer at once. */
export async function publishJobFinished(redis: Redis, prefix: string, jobId: string): Promise<void> {
  await publishJobsFinished(redis, prefix, [jobId]);
}

/** publishJobFinished for many jobs in one message (a worker finishes jobs a batch at a time). */
export async function publishJobsFinished(redis: Redis, prefix: string, jobIds: readonly string[]): Promise<void> {
  if (jobIds.length > 0) await redis.publish(finishedChannel(prefix), jobIds.join(" "));
}

/**
 * One Redis subscription per process that wakes the requests waiting on a job (GET
 * /v1/jobs/{id}?wait=N) as soon as it finishes, without a database query per tick.
 */
export class JobFinishedEvents {
  readonly #subscriber: Redis;
  readonly #channel: string;
  readonly #waiters = new Map<string, Set<() => void>>();
  #ready: Promise<unknown> | undefined;

  constructor(redis: Redis, prefix: string) {
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
  }

  /**
   * Resolves when the job is announced finished or after `timeoutMs`, whichever comes first. Call
   * it before checking the job's state, then check, so an end between the two is not missed.
   */
  async waitFor(jobId: string, timeoutMs: number): Promise<{ wait: Promise<void>; cancel: () => void }> {
    this.#ready ??= this.#subscriber.subscribe(this.#channel);
    await this.#ready;
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

  close(): void {
    this.#subscriber.disconnect();
  }
}
