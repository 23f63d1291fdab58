import { DependencyStatus, type StatusLogger } from "@coalesce/contracts";
import { PrismaPg } from "@prisma/adapter-pg";
import pg from "pg";
import { PrismaClient, type Prisma } from "./generated/client.ts";

/** The Prisma client, or a transaction handed out by `$transaction`; repositories take either. */
export type DbClient = PrismaClient | Prisma.TransactionClient;

export type Database = {
  prisma: PrismaClient;
  /** The pg pool under Prisma, for bulk SQL where Prisma is the bottleneck. */
  pool: pg.Pool;
  schema: string;
  /**
   * Opens a connection and runs one model query, so Prisma's one-off start-up cost (~0.5 s: the
   * query compiler, the first connection) is paid at process start, not by the first job.
   */
  warmUp(): Promise<void>;
  close(): Promise<void>;
};

export type DatabaseTarget = {
  /** pg connection settings without the Prisma-only `schema` parameter. */
  connectionString: string;
  /** Postgres schema that holds Coalesce's tables (`?schema=` in DATABASE_URL, as Prisma spells it). */
  schema: string;
  database: string;
  /**
   * Whether the URL goes through PgBouncer in transaction pooling mode (`?pgbouncer=true`, the flag
   * Prisma's own engines read for the same purpose). Then each transaction may meet another server
   * connection, so nothing may rely on a session: see connectDatabase, and migrations refuse it.
   */
  pooled: boolean;
};

/** Splits a Prisma-style DATABASE_URL into what pg understands and the schema name. */
export function parseDatabaseUrl(databaseUrl: string): DatabaseTarget {
  const url = new URL(databaseUrl);
  const schema = url.searchParams.get("schema") ?? "public";
  url.searchParams.delete("schema");
  const pooled = url.searchParams.get("pgbouncer") === "true";
  url.searchParams.delete("pgbouncer");
  const database = decodeURIComponent(url.pathname.replace(/^\//, "")) || "postgres";
  return { connectionString: url.toString(), schema, database, pooled };
}

export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

export type DatabaseOptions = {
  /** Connections in the pool. @defaultValue 10 */
  max?: number;
  /**
   * Longest wait for a connection, pooled or new, before the query fails as Postgres unavailable
   * (a refused connect fails at once; a silent network does not).
   * @defaultValue 10_000
   */
  connectTimeoutMs?: number;
  /**
   * Longest a statement may run: the server cancels it past this (statement_timeout), and the
   * client gives up a second later on a connection that does not answer at all (a half-open one),
   * which then fails as Postgres unavailable. Only for processes whose statements are all short:
   * the API's are (results export and long-poll read page by page and hold no statement open), a
   * worker's batch writes need not be.
   * @defaultValue no limit
   */
  queryTimeoutMs?: number;
  /** Where the pool says that Postgres went away and came back (see DependencyStatus). @defaultValue silent */
  logger?: StatusLogger;
};

/** How much longer the client waits for an answer than the server may work on the statement. */
const QUERY_TIMEOUT_MARGIN_MS = 1_000;

/** How long a connection sits idle before TCP keepalive probes ask whether the peer is still there. */
const KEEPALIVE_IDLE_MS = 10_000;

/**
 * Opens one pool and one Prisma client on it. Raw SQL through `pool` sees the same schema as
 * Prisma because the pool sets search_path on every connection. Every wait is bounded: for a
 * connection by `connectTimeoutMs`, for an answer by `queryTimeoutMs` where set.
 */
export function connectDatabase(databaseUrl: string, options: DatabaseOptions = {}): Database {
  const target = parseDatabaseUrl(databaseUrl);
  const status = new DependencyStatus("postgres", options.logger);
  // The server gives up first (57014, the statement's own fault); the client only when no answer
  // comes at all, which means the connection is dead (a transient failure, see transient.ts).
  // Through PgBouncer no startup parameter but a few reaches Postgres (1.18 refuses the rest, or drops
  // those in ignore_startup_parameters): statement_timeout, search_path and random_page_cost are then
  // set for the pool's database or role instead (docs/scaling-data.md), and warmUp checks the schema.
  const queryTimeout = options.queryTimeoutMs
    ? { ...(target.pooled ? {} : { statement_timeout: options.queryTimeoutMs }), query_timeout: options.queryTimeoutMs + QUERY_TIMEOUT_MARGIN_MS }
    : {};
  const pool: pg.Pool = new pg.Pool({
    connectionString: target.connectionString,
    max: options.max ?? 10,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 10_000,
    // Finds a connection whose peer vanished without a reset (a host gone, a network partition)
    // while it sits idle in the pool, instead of at the next query.
    keepAlive: true,
    keepAliveInitialDelayMillis: KEEPALIVE_IDLE_MS,
    ...queryTimeout,
    // Every connection the pool opens reports whether it could (see DependencyStatus).
    Client: reportingClient(status, () => pool, target.pooled),
    // Index probes priced as what they are for this working set (cached, on SSD), not as spinning-disk
    // seeks: with Postgres' default of 4, looking up a batch's ~100-250 chunks or jobs by id was
    // planned as a scan of the whole table once it held some 10,000 jobs.
    ...(target.pooled ? {} : { options: `-c search_path=${quoteIdent(target.schema)} -c random_page_cost=1.1` }),
  });
  // An idle client that loses its connection emits on the pool; without a listener node exits.
  pool.on("error", (error) => status.failed(pool, error));
  const adapter = new PrismaPg(pool, { schema: target.schema });
  const prisma = new PrismaClient({ adapter });
  return {
    prisma,
    pool,
    schema: target.schema,
    async warmUp() {
      if (target.pooled) await checkPooledSchema(pool, target.schema);
      await prisma.tenant.findFirst({ where: { id: "" }, select: { id: true } });
    },
    async close() {
      await prisma.$disconnect();
      await pool.end();
    },
  };
}

/**
 * Through PgBouncer the schema comes from the pool's side (its connect_query, or the role's
 * search_path), which this process cannot see: raw SQL would quietly read and write another
 * schema's tables if the two disagreed, so the process refuses to start instead.
 */
async function checkPooledSchema(pool: pg.Pool, schema: string): Promise<void> {
  const { rows } = await pool.query<{ schema: string | null }>("SELECT current_schema() AS schema");
  const found = rows[0]?.schema ?? null;
  if (found === schema) return;
  throw new Error(
    `DATABASE_URL: goes through PgBouncer (pgbouncer=true) and asks for schema "${schema}", but its connections see ` +
      `${found === null ? "no schema" : `"${found}"`}: set search_path on PgBouncer's side (connect_query in its [databases] ` +
      `entry, or ALTER ROLE ... SET search_path), since a startup parameter does not pass PgBouncer`,
  );
}

/**
 * pg's Client, telling `status` whether each new connection could be opened: the pool's own events
 * say nothing of a connect that failed. The whole pool counts as one connection of the process.
 */
function reportingClient(status: DependencyStatus, pool: () => pg.Pool, pooled: boolean): typeof pg.Client {
  type ConnectCallback = ((err: Error) => void) | ((err: null, client: pg.Client) => void);
  const report = (error: Error | null | undefined) => (error ? status.failed(pool(), error) : status.reached(pool()));
  class ReportingClient extends pg.Client {
    override connect(): Promise<pg.Client>;
    override connect(callback: ConnectCallback): void;
    override connect(callback?: ConnectCallback): Promise<pg.Client> | void {
      if (!callback) {
        return super.connect().then(
          (client) => {
            report(null);
            return client;
          },
          (error: Error) => {
            report(error);
            throw error;
          },
        );
      }
      super.connect(((error: Error | null, client: pg.Client) => {
        report(error);
        (callback as (error: Error | null, client: pg.Client) => void)(error, client);
      }) as ConnectCallback);
    }
  }
  if (pooled) unnameStatements(ReportingClient);
  return ReportingClient;
}

/**
 * Named statements (pg's `name:`, prepared once per connection and reused by name) are a session's:
 * behind PgBouncer 1.18 in transaction mode the next transaction may meet a server connection that
 * never saw the name ("prepared statement does not exist"). Through the pool they go unnamed,
 * planned afresh each time: a few hundred microseconds each, for the queries that carry a name.
 * (PgBouncer 1.21+ can keep them, with max_prepared_statements; 1.18 is what Debian 12 has.)
 */
function unnameStatements(client: typeof pg.Client): void {
  const prototype = client.prototype as unknown as { query: (...args: unknown[]) => unknown };
  const query = prototype.query;
  prototype.query = function (this: pg.Client, config: unknown, ...rest: unknown[]) {
    // A submittable (a cursor, a COPY stream) is passed on as it is: it names no statement.
    const named = config !== null && typeof config === "object" && typeof (config as { submit?: unknown }).submit !== "function";
    if (named && (config as { name?: unknown }).name !== undefined) {
      const { name: _name, ...unnamed } = config as { name?: unknown };
      return query.call(this, unnamed, ...rest);
    }
    return query.call(this, config, ...rest);
  };
}
