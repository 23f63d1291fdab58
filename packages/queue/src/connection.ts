import { ConfigError, DependencyStatus, type StatusLogger } from "@coalesce/contracts";
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from "ioredis";

/** Works against the Redis every machine of this project runs. */
export const DEFAULT_REDIS_URL = "redis://127.0.0.1:6379";

/** How long a fail-fast connection's command may wait for Redis' answer (a half-open socket answers never). */
export const FAIL_FAST_COMMAND_TIMEOUT_MS = 2_000;

/** Where Sentinel listens unless the URL says otherwise (Redis' own default for it). */
export const DEFAULT_SENTINEL_PORT = 26379;

/**
 * A connection to one Redis, to the master a Sentinel group points at (a plain `Redis` that follows
 * failovers by itself), or to a Redis Cluster. Both have the same commands; what differs is that on
 * a cluster every key one script, MULTI or pipeline touches must hash to one slot (see
 * hashTaggedPrefix).
 */
export type RedisClient = Redis | Cluster;

type Node = { host: string; port: number };

/** What a REDIS_URL names, parsed once (see parseRedisUrl for the forms). */
export type RedisTarget =
  | { kind: "standalone"; url: string }
  | {
      kind: "sentinel";
      sentinels: Node[];
      /** The master's name in Sentinel's configuration (`sentinel monitor <name> ...`). */
      masterName: string;
      db: number;
      username?: string;
      password?: string;
      sentinelUsername?: string;
      sentinelPassword?: string;
      tls: boolean;
    }
  | { kind: "cluster"; nodes: Node[]; username?: string; password?: string; tls: boolean };

const FORMS =
  "redis://[[user]:password@]host[:port][/db], redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/master-name[/db][?sentinelPassword=...]" +
  " or redis+cluster://[[user]:password@]host[:port][,host[:port]...] (rediss... for TLS)";

/**
 * Reads a REDIS_URL. Besides ioredis' own `redis://` and `rediss://`, two forms that name several
 * hosts, spelled the way the redis+sentinel scheme of other Redis clients (redis-py's helpers,
 * RedisVL, Prefect) spells them, so one URL can serve tools in several languages:
 *
 *   redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/master-name[/db][?sentinelUsername=&sentinelPassword=]
 *   redis+cluster://[[user]:password@]host[:port][,host[:port]...]
 *
 * `rediss+sentinel://` and `rediss+cluster://` use TLS (to Sentinel and to the data nodes alike).
 * The password in the user part is the data nodes'; Sentinels that want one of their own take it
 * as `sentinelPassword`. Sentinel hosts default to port 26379, cluster nodes to 6379. A cluster
 * URL needs only some of the nodes: the client learns the rest from them.
 * Throws an Error saying what is wrong and which forms are understood.
 */
export function parseRedisUrl(text: string): RedisTarget {
  const match = /^([a-z+]+):\/\/(?:([^@/]*)@)?([^/?#]*)(\/[^?#]*)?(?:\?([^#]*))?$/i.exec(text.trim());
  if (!match) throw new Error(`not a Redis URL; expected ${FORMS}`);
  const [, rawScheme = "", userInfo, hostList = "", path = "", query = ""] = match;
  const scheme = rawScheme.toLowerCase();
  if (scheme === "redis" || scheme === "rediss") {
    // ioredis parses these itself; only check that it would find a host.
    if (hostList === "" || hostList.includes(",")) throw new Error(`${scheme}:// takes one host; for several use redis+sentinel:// or redis+cluster:// (${FORMS})`);
    return { kind: "standalone", url: text.trim() };
  }
  const [base, topology] = scheme.split("+");
  if ((base !== "redis" && base !== "rediss") || (topology !== "sentinel" && topology !== "cluster")) {
    throw new Error(`unknown scheme ${rawScheme}://; expected ${FORMS}`);
  }
  const credentials = parseUserInfo(userInfo);
  const params = new URLSearchParams(query);
  const nodes = parseHosts(hostList, topology === "sentinel" ? DEFAULT_SENTINEL_PORT : 6379);
  if (topology === "cluster") {
    if (path !== "" && path !== "/") throw new Error("redis+cluster:// takes no path: a cluster has database 0 only");
    return { kind: "cluster", nodes, ...credentials, tls: base === "rediss" };
  }
  const [masterName = "", dbText = "0", ...rest] = path.replace(/^\//, "").split("/");
  if (masterName === "") throw new Error("redis+sentinel:// needs the master's name as its path: redis+sentinel://host:26379/mymaster");
  if (rest.length > 0 || !/^\d+$/.test(dbText)) throw new Error(`redis+sentinel:// path is /master-name[/db], with db a number; got ${path}`);
  const sentinelUsername = params.get("sentinelUsername") ?? undefined;
  const sentinelPassword = params.get("sentinelPassword") ?? undefined;
  return {
    kind: "sentinel",
    sentinels: nodes,
    masterName: decodeURIComponent(masterName),
    db: Number(dbText),
    ...credentials,
    ...(sentinelUsername !== undefined ? { sentinelUsername } : {}),
    ...(sentinelPassword !== undefined ? { sentinelPassword } : {}),
    tls: base === "rediss",
  };
}

/** A description of what is wrong with `text` as a REDIS_URL, or undefined when it is fine (for env schemas). */
export function redisUrlProblem(text: string): string | undefined {
  try {
    parseRedisUrl(text);
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}

function parseUserInfo(userInfo: string | undefined): { username?: string; password?: string } {
  if (userInfo === undefined || userInfo === "") return {};
  const colon = userInfo.indexOf(":");
  const username = decodeURIComponent(colon < 0 ? userInfo : userInfo.slice(0, colon));
  const password = colon < 0 ? undefined : decodeURIComponent(userInfo.slice(colon + 1));
  // As in redis://: a bare word is a password (AUTH password), user:password an ACL user.
  if (password === undefined) return { password: username };
  return { ...(username !== "" ? { username } : {}), password };
}

function parseHosts(list: string, defaultPort: number): Node[] {
  const nodes = list.split(",").map((entry) => {
    const found = /^(\[[0-9a-f:.]+\]|[^:[\]]+)(?::(\d+))?$/i.exec(entry.trim());
    if (!found) throw new Error(`cannot read host "${entry}": expected host or host:port, comma-separated`);
    const port = found[2] === undefined ? defaultPort : Number(found[2]);
    if (port < 1 || port > 65535) throw new Error(`port out of range in "${entry}"`);
    return { host: found[1]!.replace(/^\[|\]$/g, ""), port };
  });
  return nodes;
}

/**
 * The key prefix every key of a queue, and every other key the project writes beside it, starts
 * with. On a cluster it must carry a hash tag: Redis Cluster refuses a Lua script, MULTI or
 * pipeline whose keys live in different slots, and BullMQ's scripts touch several keys of a queue
 * at once, as do the predict submit and ack scripts and the cache's MGET. `{coalesce}` hashes every
 * `{coalesce}:...` key by `coalesce` alone, so they all share one slot.
 *
 * An untagged prefix is wrapped whole (`coalesce` becomes `{coalesce}`), so the defaults work on a
 * cluster; one that already has a tag is kept. A prefix with a brace that is no tag (`{}`, an
 * unclosed `{`) is refused: Redis would then hash each key by a part of its own, scattering them.
 */
export function hashTaggedPrefix(prefix: string): string {
  const open = prefix.indexOf("{");
  if (open < 0) return `{${prefix}}`;
  const close = prefix.indexOf("}", open + 1);
  if (close > open + 1) return prefix;
  throw new Error(`"${prefix}" has a brace but no hash tag; use a prefix without braces, or one with a non-empty {tag}`);
}

/**
 * The queue prefix a process must use with this REDIS_URL: QUEUE_PREFIX itself, or on a cluster
 * its hash-tagged form (see hashTaggedPrefix). API and worker apply the same rule to the same
 * variables, so they always agree. Throws a ConfigError naming QUEUE_PREFIX.
 */
export function queuePrefixFor(redisUrl: string, queuePrefix: string): string {
  if (parseRedisUrl(redisUrl).kind !== "cluster") return queuePrefix;
  try {
    return hashTaggedPrefix(queuePrefix);
  } catch (error) {
    throw new ConfigError(`invalid configuration:\n  QUEUE_PREFIX: ${(error as Error).message} (REDIS_URL is a cluster)`);
  }
}

/** True for a cluster connection: its keys spread over slots. */
export function isCluster(redis: RedisClient): redis is Cluster {
  return redis.isCluster;
}

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
 * A Redis connection for BullMQ and the process' own commands, to whatever `url` names (see
 * parseRedisUrl): a `Cluster` for redis+cluster://, a `Redis` otherwise. Every connection made
 * from it, duplicates included, has an 'error' listener, so an outage never reaches ioredis'
 * "Unhandled error event" dump on stderr; it is reported through `logger` instead.
 */
export function createRedisConnection(url: string, options: RedisConnectionOptions = {}): RedisClient {
  const target = parseRedisUrl(url);
  // Nothing queued while disconnected, nothing resent after a reconnect: the caller hears now.
  const behaviour: RedisOptions = options.failFast
    ? { enableOfflineQueue: false, maxRetriesPerRequest: 0, commandTimeout: FAIL_FAST_COMMAND_TIMEOUT_MS, enableReadyCheck: true, lazyConnect: false }
    : { maxRetriesPerRequest: null, enableReadyCheck: true, lazyConnect: false };
  const status = new DependencyStatus("redis", options.logger);
  if (target.kind === "standalone") return watchConnection(new Redis(target.url, behaviour), status);
  const auth = { ...(target.username !== undefined ? { username: target.username } : {}), ...(target.password !== undefined ? { password: target.password } : {}) };
  if (target.kind === "sentinel") {
    return watchConnection(
      new Redis({
        ...behaviour,
        ...auth,
        sentinels: target.sentinels,
        name: target.masterName,
        db: target.db,
        ...(target.sentinelUsername !== undefined ? { sentinelUsername: target.sentinelUsername } : {}),
        ...(target.sentinelPassword !== undefined ? { sentinelPassword: target.sentinelPassword } : {}),
        ...(target.tls ? { tls: {}, sentinelTLS: {}, enableTLSForSentinelMode: true } : {}),
        // After a failover the old master may still answer as a replica for a moment: BullMQ's
        // writes there fail with READONLY, and reconnecting asks Sentinel for the new master.
        reconnectOnError: (error) => error.message.startsWith("READONLY"),
      }),
      status,
    );
  }
  const { enableOfflineQueue, enableReadyCheck, lazyConnect, ...perNode } = behaviour;
  const clusterOptions: ClusterOptions = {
    ...(enableOfflineQueue !== undefined ? { enableOfflineQueue } : {}),
    ...(enableReadyCheck !== undefined ? { enableReadyCheck } : {}),
    ...(lazyConnect !== undefined ? { lazyConnect } : {}),
    // BullMQ reads maxRetriesPerRequest (which must be null for its workers) from here.
    redisOptions: { ...perNode, ...auth, ...(target.tls ? { tls: {} } : {}) },
  };
  return watchConnection(new Cluster(target.nodes, clusterOptions), status);
}

/** Reports the connection's comings and goings to `status`, and those of every duplicate of it. */
function watchConnection<T extends RedisClient>(redis: T, status: DependencyStatus): T {
  redis.on("error", (error: unknown) => status.failed(redis, error));
  redis.on("ready", () => status.reached(redis));
  redis.on("end", () => status.forget(redis));
  // ioredis copies a connection's options to its duplicates but not its listeners; BullMQ
  // duplicates the connection it is given (a Worker's blocking connection) through this method.
  // Redis.duplicate(options) and Cluster.duplicate(nodes, options) differ: pass on what was given.
  const patched = redis as unknown as { duplicate: (...args: unknown[]) => T };
  const duplicate = patched.duplicate.bind(redis);
  patched.duplicate = (...args: unknown[]) => watchConnection(duplicate(...args), status);
  return redis;
}

/**
 * A zod `superRefine` check for a REDIS_URL variable (this package does not depend on zod): the
 * issue names what is wrong and the forms understood.
 */
export function checkRedisUrl(text: string, ctx: { addIssue(issue: { code: "custom"; message: string }): void }): void {
  const problem = redisUrlProblem(text);
  if (problem !== undefined) ctx.addIssue({ code: "custom", message: problem });
}
