import { Redis } from "ioredis";

/** Works against the Redis every machine of this project runs. */
export const DEFAULT_REDIS_URL = "redis://127.0.0.1:6379";

/**
 * A Redis connection as BullMQ needs it: workers block on Redis, so commands must wait for a
 * reconnect rather than fail after a retry count.
 */
export function createRedisConnection(url: string): Redis {
  return new Redis(url, { maxRetriesPerRequest: null, enableReadyCheck: true, lazyConnect: false });
}
