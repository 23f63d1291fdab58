import type { RedisClient } from "./connection.ts";

/** What each worker says about itself, for /readyz and /metrics on the API. */
export type WorkerStatus = {
  id: string;
  provider: string;
  concurrency: number;
  startedAt: string;
  seenAt: string;
  /** How long after `seenAt` this worker counts as gone (its STALLED_TAKEOVER_MS); older entries lack it. */
  staleAfterMs?: number;
  /** Whether it answers predict requests (PREDICT_ROWS_IN_FLIGHT above 0); older entries lack it. */
  predict?: boolean;
};

/**
 * How long a dead worker's chunks wait before a live worker takes them over, by default
 * (STALLED_TAKEOVER_MS), and how long a worker not heard from is still listed.
 * @defaultValue 5000
 */
export const DEFAULT_STALLED_TAKEOVER_MS = 5_000;

/**
 * A worker not heard from for this long is gone (crashed, or stopped without saying so), where its
 * entry does not carry a bound of its own (written by a worker from before they did, which beat
 * every 10 s).
 */
export const WORKER_STALE_MS = 30_000;

/** BullMQ's lock and stalled-check settings, and the worker heartbeat, derived from one bound. */
export type WorkerTimings = {
  /** BullMQ `lockDuration`: a chunk's lock lapses this long after its worker last renewed it. */
  lockDurationMs: number;
  /** BullMQ `lockRenewTime`: how often a live worker renews its locks. */
  lockRenewMs: number;
  /** BullMQ `stalledInterval`: how often the queue looks for lapsed locks and hands their chunks back. */
  stalledIntervalMs: number;
  /** How often a worker says it is alive. */
  heartbeatMs: number;
  /** How long after its last heartbeat a worker is listed no more. */
  staleAfterMs: number;
};

/**
 * Settings under which a worker that dies (kill -9, a lost machine) has its chunks running again
 * on a live worker within `takeoverMs`, and drops off /readyz within the same bound.
 *
 * Detection: a chunk's lock lapses at most lockDuration after its last renewal, and the next stalled
 * check after that (at most stalledInterval later) hands it back, so lockDuration + stalledInterval
 * = 1/2 + 1/4 = 3/4 of takeoverMs; the last quarter is for a live worker to take it (woken at once by
 * BullMQ's marker) and start it. (At 2/3 + 1/3, detection alone used the whole bound: 6.4-6.9 s
 * were measured from kill -9 to the job moving again under a 5 s bound.)
 *
 * Renewal: BullMQ looks every lockRenewTime / 2 and renews locks older than that, so a lock is
 * renewed at most lockRenewTime (1/8) after the last time, plus a round trip. A live worker keeps its
 * locks as long as its event loop is never blocked for longer than lockDuration - lockRenewTime =
 * 3/8 of takeoverMs: 1.9 s at the default 5 s, against a worst block of 300-500 ms measured on a
 * busy worker (inference runs on threads of its own; with INFERENCE_THREADS=false a batch blocks
 * the loop for its whole run, hence the worker's larger bound then).
 */
export function workerTimings(takeoverMs: number): WorkerTimings {
  const lockDurationMs = Math.max(1, Math.floor(takeoverMs / 2));
  return {
    lockDurationMs,
    lockRenewMs: Math.max(1, Math.floor(lockDurationMs / 4)),
    stalledIntervalMs: Math.max(1, Math.floor(takeoverMs / 4)),
    heartbeatMs: Math.max(1, Math.floor(takeoverMs / 5)),
    // Three quarters, so that a dead worker is off /readyz, and its predict requests claimed by the
    // next look (every stalledInterval), within the bound itself: 5.1 s were measured with the whole bound.
    staleAfterMs: Math.max(1, Math.floor((takeoverMs * 3) / 4)),
  };
}

function key(prefix: string): string {
  return `${prefix}:workers`;
}

export async function publishWorkerStatus(redis: RedisClient, prefix: string, status: Omit<WorkerStatus, "seenAt">): Promise<void> {
  await redis.hset(key(prefix), status.id, JSON.stringify({ ...status, seenAt: new Date().toISOString() }));
}

export async function removeWorkerStatus(redis: RedisClient, prefix: string, id: string): Promise<void> {
  await redis.hdel(key(prefix), id);
}

/** Workers heard from recently (each by its own staleness bound); stale entries are dropped on the way. */
export async function listWorkers(redis: RedisClient, prefix: string): Promise<WorkerStatus[]> {
  const entries = await redis.hgetall(key(prefix));
  const live: WorkerStatus[] = [];
  const stale: string[] = [];
  for (const [id, text] of Object.entries(entries)) {
    const status = JSON.parse(text) as WorkerStatus;
    if (Date.now() - Date.parse(status.seenAt) > (status.staleAfterMs ?? WORKER_STALE_MS)) stale.push(id);
    else live.push(status);
  }
  if (stale.length > 0) await redis.hdel(key(prefix), ...stale);
  return live.sort((a, b) => a.id.localeCompare(b.id));
}
