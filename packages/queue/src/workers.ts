import type { Redis } from "ioredis";

/** What each worker says about itself, for /readyz and /metrics on the API. */
export type WorkerStatus = { id: string; provider: string; concurrency: number; startedAt: string; seenAt: string };

/** A worker not heard from for this long is gone (crashed, or stopped without saying so). */
export const WORKER_STALE_MS = 30_000;

function key(prefix: string): string {
  return `${prefix}:workers`;
}

export async function publishWorkerStatus(redis: Redis, prefix: string, status: Omit<WorkerStatus, "seenAt">): Promise<void> {
  await redis.hset(key(prefix), status.id, JSON.stringify({ ...status, seenAt: new Date().toISOString() }));
}

export async function removeWorkerStatus(redis: Redis, prefix: string, id: string): Promise<void> {
  await redis.hdel(key(prefix), id);
}

/** Workers heard from recently; stale entries are dropped on the way. */
export async function listWorkers(redis: Redis, prefix: string): Promise<WorkerStatus[]> {
  const entries = await redis.hgetall(key(prefix));
  const live: WorkerStatus[] = [];
  const stale: string[] = [];
  for (const [id, text] of Object.entries(entries)) {
    const status = JSON.parse(text) as WorkerStatus;
    if (Date.now() - Date.parse(status.seenAt) > WORKER_STALE_MS) stale.push(id);
    else live.push(status);
  }
  if (stale.length > 0) await redis.hdel(key(prefix), ...stale);
  return live.sort((a, b) => a.id.localeCompare(b.id));
}
