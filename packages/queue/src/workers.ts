import type { Redis } from "ioredis";

/** What each worker says about itself, for /readyz and /metrics on the API. */
export type WorkerStatus = {
  id: string;
  provider: string;
  concurrency: number;
  startedAt: string;
  seenAt: string;
  /** How long after `seenAt` this worker counts as gone (its STALLED_TAKEOVER_MS); older entries lack it. */
  staleAfterMs?: number;
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
 * on a live worker within `takeoverMs`, and drops off /readyz within the same bound. A chunk's lock
 * lapses at most lockDuration after the last renewal, and the next stalled check after that (at
 * most stalledInterval later) hands it back: lockDuration + stalledInterval = takeoverMs. Locks are
 * renewed every quarter of lockDuration, so a live worker keeps them as long as its event loop is
 * never blocked for more than three quarters of it (inference runs on threads of its own).
 */
export function workerTimings(takeoverMs: number): WorkerTimings {
  const lockDurationMs = Math.round((takeoverMs * 2) / 3);
  return {
    lockDurationMs,
    lockRenewMs: Math.max(1, Math.floor(lockDurationMs / 4)),
    stalledIntervalMs: Math.max(1, takeoverMs - lockDurationMs),
    heartbeatMs: Math.max(1, Math.floor(takeoverMs / 5)),
    staleAfterMs: takeoverMs,
  };
}

function key(prefix: string): string {
  return `${prefix}:workers`;
}

export async function publishWorkerStatus(redis: Redis, prefix: string, status: Omit<WorkerStatus, "seenAt">): Promise<void> {
  await redis.hset(key(prefix), status.id, JSON.stringify({ ...status, seenAt: new Date().toISOString() }));
}

export async function removeWorkerStatus(redis: Redis, prefix: string, id: string): Promise<void> {
  await redis.hdel(key(prefix), id);
}

/** Workers heard from recently (each by its own staleness bound); stale entries are dropped on the way. */
export async function listWorkers(redis: Redis, prefix: string): Promise<WorkerStatus[]> {
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
