import { DependencyStatus, type StatusLogger } from "@coalesce/contracts";
import { Redis } from "ioredis";

/** Works against the Redis every machine of this project runs. */
export const DEFAULT_REDIS_URL = "redis://127.0.0.1:6379";

/** How long a fail-fast connection's command may wait for Redis' answer (a half-open socket answers never). */
export const FAIL_FAST_COMMAND_TIMEOUT_MS = 2_000;

export type RedisConnectionOptions = {
  /**
   * Fail a command at once while Redis is unreachable (and after FAIL_FAST_COMMAND_TIMEOUT_MS
   * without an answer) instead of holding it until Redis is back: for request paths that must
   * answer, such as the API's. BullMQ Workers need the default, where commands wait for a
   * reconnect, since BullMQ refuses a blocking connection that gives up on a command.
   * @defaultValue false
   */
  failFast?: boolean;
  /**
   * Where this connection and every duplicate of it (BullMQ's, a subscriber's) say that Redis went
   * away and came back: one warning, then one info line with counts (see DependencyStatus).
   * @defaultValue silent
   */
  logger?: StatusLogger;
};

/**
 * A Redis connection for BullMQ and the process' own commands. Every connection made from it,
 * duplicates included, has an 'error' listener, so an outage never reaches ioredis' "Unhandled
 * error event" dump on stderr; it is reported through `logger` instead.
 */
export function createRedisConnection(url: string, options: RedisConnectionOptions = {}): Redis {
  const redis = options.failFast
    ? new Redis(url, {
        // Nothing queued while disconnected, nothing resent after a reconnect: the caller hears now.
        enableOfflineQueue: false,
        maxRetriesPerRequest: 0,
        commandTimeout: FAIL_FAST_COMMAND_TIMEOUT_MS,
        enableReadyCheck: true,
        lazyConnect: false,
      })
    : new Redis(url, { maxRetriesPerRequest: null, enableReadyCheck: true, lazyConnect: false });
  return watchConnection(redis, new DependencyStatus("redis", options.logger));
}

/** Reports the connection's comings and goings to `status`, and those of every duplicate of it. */
function watchConnection(redis: Redis, status: DependencyStatus): Redis {
  redis.on("error", (error: unknown) => status.failed(redis, error));
  redis.on("ready", () => status.reached(redis));
  redis.on("end", () => status.forget(redis));
  // ioredis copies a connection's options to its duplicates but not its listeners; BullMQ
  // duplicates the connection it is given (a Worker's blocking connection) through this method.
  const duplicate = redis.duplicate.bind(redis);
  redis.duplicate = (override) => watchConnection(duplicate(override), status);
  return redis;
}
