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
};

/** Splits a Prisma-style DATABASE_URL into what pg understands and the schema name. */
export function parseDatabaseUrl(databaseUrl: string): DatabaseTarget {
  const url = new URL(databaseUrl);
  const schema = url.searchParams.get("schema") ?? "public";
  url.searchParams.delete("schema");
  const database = decodeURIComponent(url.pathname.replace(/^\//, "")) || "postgres";
  return { connectionString: url.toString(), schema, database };
}

export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/**
 * Opens one pool and one Prisma client on it. Raw SQL through `pool` sees the same schema as
 * Prisma because the pool sets search_path on every connection.
 */
export function connectDatabase(databaseUrl: string, options: { max?: number } = {}): Database {
  const target = parseDatabaseUrl(databaseUrl);
  const pool = new pg.Pool({
    connectionString: target.connectionString,
    max: options.max ?? 10,
    // Index probes priced as what they are for this working set (cached, on SSD), not as spinning-disk
    // seeks: with Postgres' default of 4, looking up a batch's ~100-250 chunks or jobs by id was
    // planned as a scan of the whole table once it held some 10,000 jobs.
    options: `-c search_path=${quoteIdent(target.schema)} -c random_page_cost=1.1`,
  });
  // An idle client that loses its connection emits on the pool; without a listener node exits.
  pool.on("error", () => {});
  const adapter = new PrismaPg(pool, { schema: target.schema });
  const prisma = new PrismaClient({ adapter });
  return {
    prisma,
    pool,
    schema: target.schema,
    async warmUp() {
      await prisma.tenant.findFirst({ where: { id: "" }, select: { id: true } });
    },
    async close() {
      await prisma.$disconnect();
      await pool.end();
    },
  };
}
