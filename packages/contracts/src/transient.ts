/**
 * Errors classified once, where they enter: a *transient infrastructure* failure (Postgres or Redis
 * unreachable, a connection reset, a database shutting down) says nothing about the work, so it is
 * waited out and retried without spending the work's attempts; anything else is the work's own.
 */

/** Which dependency a transient failure came from, where the error shows it. */
export type Dependency = "postgres" | "redis" | "network";

/** Socket-level failures: the peer is not there, or went away mid-conversation. */
const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "ETIMEDOUT",
  "EPIPE",
  "EHOSTUNREACH",
  "EHOSTDOWN",
  "ENETUNREACH",
  "ENETDOWN",
  "EAI_AGAIN",
  "ENOTFOUND",
  "ENOTCONN",
]);

/**
 * SQLSTATEs that mean the server, not the statement: class 08 (connection exception), 57P01 admin
 * shutdown, 57P02 crash shutdown, 57P03 cannot connect now (starting up), 53300 too many connections.
 */
function isTransientSqlState(code: string): boolean {
  return code.startsWith("08") || code === "57P01" || code === "57P02" || code === "57P03" || code === "53300";
}

/** Prisma's own codes for an unreachable or vanished database, and its pool timing out. */
const PRISMA_CODES = new Set(["P1001", "P1002", "P1008", "P1017", "P2024"]);

/** Kinds of prisma driver-adapter errors that are about the connection. */
const ADAPTER_KINDS = new Set(["DatabaseNotReachable", "ConnectionClosed", "SocketTimeout", "TooManyConnections"]);

/** Messages of pg and ioredis that carry no code. */
const PG_MESSAGES = [
  "Connection terminated",
  "timeout exceeded when trying to connect",
  "Client has encountered a connection error",
  "Client was closed and is not queryable",
  "Cannot use a pool after calling end",
  // pg's query_timeout: no answer at all, where a live server would have cancelled the statement
  // itself (statement_timeout, set shorter, see packages/db connectDatabase): the connection is dead.
  "Query read timeout",
];
const REDIS_MESSAGES = ["Connection is closed", "Stream isn't writeable", "Reached the max retries per request", "Command timed out", "connect ETIMEDOUT"];

type Inspectable = {
  code?: unknown;
  name?: unknown;
  message?: unknown;
  cause?: unknown;
  errors?: unknown;
  meta?: { driverAdapterError?: { cause?: { kind?: unknown; originalCode?: unknown } } };
};

/**
 * The dependency a transient infrastructure failure came from, or null when the error is not one
 * (a bad statement, a constraint, the work's own fault). Follows `cause` chains and AggregateErrors.
 */
export function transientDependency(error: unknown, depth = 0): Dependency | null {
  if (!error || typeof error !== "object" || depth > 5) return null;
  const e = error as Inspectable;
  const code = typeof e.code === "string" ? e.code : "";
  const name = typeof e.name === "string" ? e.name : "";
  const message = typeof e.message === "string" ? e.message : "";

  if (e instanceof TransientError) return e.dependency;
  if (PRISMA_CODES.has(code)) return "postgres";
  const adapter = e.meta?.driverAdapterError?.cause;
  if (adapter) {
    if (typeof adapter.kind === "string" && ADAPTER_KINDS.has(adapter.kind)) return "postgres";
    if (typeof adapter.originalCode === "string" && isTransientSqlState(adapter.originalCode)) return "postgres";
  }
  // pg's DatabaseError carries the SQLSTATE as a five-character code.
  if (/^[0-9A-Z]{5}$/.test(code) && isTransientSqlState(code)) return "postgres";
  if (name === "MaxRetriesPerRequestError") return "redis";
  if (PG_MESSAGES.some((text) => message.includes(text))) return "postgres";
  if (REDIS_MESSAGES.some((text) => message.includes(text))) return "redis";
  if (NETWORK_CODES.has(code)) return "network";
  if (Array.isArray(e.errors) && e.errors.length > 0) {
    const inner = e.errors.map((item) => transientDependency(item, depth + 1));
    if (inner.every((dependency) => dependency !== null)) return inner[0] ?? null;
  }
  return transientDependency(e.cause, depth + 1);
}

/** True for a failure of Postgres, Redis or the network under them rather than of the work. */
export function isTransientError(error: unknown): boolean {
  return transientDependency(error) !== null;
}

/** Raised where code already knows a dependency is unavailable (a readiness check, a timeout). */
export class TransientError extends Error {
  readonly dependency: Dependency;
  constructor(dependency: Dependency, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "TransientError";
    this.dependency = dependency;
  }
}
