import type pg from "pg";
import type { Database } from "./connection.ts";

/**
 * Runs `work` in one transaction on one pooled connection (pg directly: these transactions lock a
 * model's row and make several statements that Prisma's interactive transactions would pay a round
 * trip of their own each for). Commits what `work` returns; rolls back on anything it throws.
 */
export async function inTransaction<T>(db: Database, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await db.pool.connect();
  try {
    await client.query("BEGIN");
    const result = await work(client);
    await client.query("COMMIT");
    return result;
  } catch (error) {
    await client.query("ROLLBACK").catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}

/** Locks a tenant's model row (version uploads, version deletes and alias changes take turns on it); its id, or null. */
export async function lockModel(client: pg.PoolClient, tenantId: string, modelName: string): Promise<string | null> {
  const { rows } = await client.query<{ id: string }>(`SELECT id FROM models WHERE tenant_id = $1 AND name = $2 FOR UPDATE`, [tenantId, modelName]);
  return rows[0]?.id ?? null;
}
