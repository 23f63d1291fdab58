import { createServer } from "node:net";
import { isTransientError, transientDependency } from "@coalesce/contracts";
import { connectDatabase } from "@coalesce/db";
import { Redis } from "ioredis";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestServices, REDIS_URL, type TestServices } from "../support/services.ts";
import { startTcpProxy } from "../support/tcp-proxy.ts";

/** A port on loopback with nothing listening on it. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return typeof address === "object" && address ? address.port : 1;
}

async function failure(run: () => Promise<unknown>): Promise<unknown> {
  try {
    await run();
  } catch (error) {
    return error;
  }
  throw new Error("expected a failure");
}

// The errors are real: each comes from pg, Prisma or ioredis meeting a fault, not a hand-made object.
describe("transient infrastructure errors", () => {
  let services: TestServices;
  beforeAll(async () => {
    services = await createTestServices();
  });
  afterAll(async () => {
    await services.cleanup();
  });

  it("Postgres unreachable, through pg and through Prisma, is transient", async () => {
    const db = connectDatabase(`postgresql://postgres@127.0.0.1:${await closedPort()}/test`);
    expect(transientDependency(await failure(() => db.pool.query("SELECT 1")))).not.toBeNull();
    expect(transientDependency(await failure(() => db.prisma.tenant.findFirst({})))).toBe("postgres");
    expect(transientDependency(await failure(() => db.prisma.$queryRawUnsafe("SELECT 1")))).toBe("postgres");
    await db.close();
  });

  it("a backend terminated by the server (57P01) is transient", async () => {
    const client = new pg.Client({ connectionString: services.databaseUrl.replace(/\?.*$/, "") });
    client.on("error", () => {});
    await client.connect();
    const { rows } = await client.query<{ pid: number }>("SELECT pg_backend_pid() AS pid");
    const admin = new pg.Client({ connectionString: services.databaseUrl.replace(/\?.*$/, "") });
    await admin.connect();
    const pending = failure(() => client.query("SELECT pg_sleep(5)"));
    await new Promise((resolve) => setTimeout(resolve, 100));
    await admin.query("SELECT pg_terminate_backend($1)", [rows[0]?.pid]);
    await admin.end();
    expect(isTransientError(await pending)).toBe(true);
    await client.end().catch(() => {});
  });

  it("a connection that stops answering (half-open) is transient; a statement that is merely too slow is not", async () => {
    const target = new URL(services.databaseUrl);
    const proxy = await startTcpProxy(Number(target.port || 5432), target.hostname);
    target.hostname = "127.0.0.1";
    target.port = String(proxy.port);
    const db = connectDatabase(target.toString(), { max: 1, queryTimeoutMs: 300, connectTimeoutMs: 500 });
    // A live server cancels the statement itself (57014): the statement's fault, retrying won't help.
    expect(isTransientError(await failure(() => db.pool.query("SELECT pg_sleep(2)")))).toBe(false);
    await db.pool.query("SELECT 1");
    proxy.stall();
    // The pooled connection: the client's own timeout, no answer at all.
    expect(transientDependency(await failure(() => db.prisma.$queryRawUnsafe("SELECT 1")))).toBe("postgres");
    // A new connection: the handshake never completes.
    expect(transientDependency(await failure(() => db.pool.query("SELECT 1")))).toBe("postgres");
    await proxy.up();
    await db.close();
    await proxy.close();
  });

  it("Redis unreachable is transient", async () => {
    const redis = new Redis({ port: await closedPort(), maxRetriesPerRequest: 1, retryStrategy: () => 50, lazyConnect: true });
    redis.on("error", () => {});
    const error = await failure(() => redis.get("x"));
    expect(isTransientError(error)).toBe(true);
    redis.disconnect();
  });

  it("the work's own errors are not transient", async () => {
    const db = connectDatabase(services.databaseUrl);
    expect(isTransientError(await failure(() => db.pool.query("SELEC 1")))).toBe(false);
    expect(isTransientError(await failure(() => db.pool.query("SELECT 1/0")))).toBe(false);
    expect(isTransientError(await failure(() => db.prisma.$queryRawUnsafe("SELECT * FROM no_such_table")))).toBe(false);
    await db.close();
    const redis = new Redis(REDIS_URL);
    await redis.set(`${services.queuePrefix}:s`, "x");
    expect(isTransientError(await failure(() => redis.lpush(`${services.queuePrefix}:s`, "y")))).toBe(false);
    await redis.del(`${services.queuePrefix}:s`);
    redis.disconnect();
    expect(isTransientError(new Error("input 'x' has shape [1, 4]"))).toBe(false);
  });
});
