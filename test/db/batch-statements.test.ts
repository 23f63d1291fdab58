// The statements a worker runs per batch must find their rows by key however many jobs the tables
// hold: a plan that scans the whole table gets slower with every job ever submitted (it did, once
// jobs held ~10,000 rows). Checked with Postgres' own counters of sequential scans per table.
import { completeChunks, connectDatabase, deleteExpiredJobs, expireJobs, findUnfinishedChunks, startChunks, type Database } from "@coalesce/db";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestServices, type TestServices } from "../support/services.ts";

const JOBS = 20_000;
const BATCH = 200;

let services: TestServices;
let db: Database;

const id = (n: number) => String(n).padStart(8, "0");

beforeAll(async () => {
  services = await createTestServices();
  // One connection: the statements and the counter reads share a session, so its statistics can be flushed.
  db = connectDatabase(services.databaseUrl, { max: 1 });
  await db.pool.query(`INSERT INTO tenants (id, name) VALUES ('ten_plan', 'plan')`);
  await db.pool.query(`INSERT INTO models (id, tenant_id, name) VALUES ('mdl_plan', 'ten_plan', 'm')`);
  await db.pool.query(
    `INSERT INTO model_versions (id, model_id, version, sha256, size_bytes, inputs, outputs) VALUES ('mv_plan', 'mdl_plan', 1, 'x', 1, '[]', '[]')`,
  );
  // Mostly finished history, and a batch's worth of jobs still queued at the end.
  await db.pool.query(
    `INSERT INTO jobs (id, tenant_id, model_version_id, total_rows, status, priority)
     SELECT 'job_' || lpad(g::text, 8, '0'), 'ten_plan', 'mv_plan', 1,
            (CASE WHEN g <= $1 - $2 THEN 'succeeded' ELSE 'queued' END)::job_status, 'interactive'
       FROM generate_series(1, $1) g`,
    [JOBS, BATCH],
  );
  await db.pool.query(
    `INSERT INTO job_chunks (id, job_id, seq, first_row, row_count, inputs, status)
     SELECT 'chk_' || lpad(g::text, 8, '0'), 'job_' || lpad(g::text, 8, '0'), 0, 0, 1, '[{"x":[1]}]',
            (CASE WHEN g <= $1 - $2 THEN 'done' ELSE 'queued' END)::chunk_status
       FROM generate_series(1, $1) g`,
    [JOBS, BATCH],
  );
  await db.pool.query(`ANALYZE jobs, job_chunks`);
});

afterAll(async () => {
  await db?.close();
  await services?.cleanup();
});

async function sequentialScans(): Promise<Record<string, number>> {
  await db.pool.query(`SELECT pg_stat_force_next_flush()`);
  const { rows } = await db.pool.query<{ relname: string; seq_scan: string }>(
    `SELECT relname, seq_scan FROM pg_stat_user_tables WHERE schemaname = current_schema() AND relname IN ('jobs', 'job_chunks')`,
  );
  return Object.fromEntries(rows.map((row) => [row.relname, Number(row.seq_scan)]));
}

/** Row updates of a table so far, and how many of them Postgres made in place (HOT: no index entries). */
async function jobUpdates(table: "jobs" | "job_chunks" = "jobs"): Promise<{ all: number; hot: number }> {
  await db.pool.query(`SELECT pg_stat_force_next_flush()`);
  const { rows } = await db.pool.query<{ n_tup_upd: string; n_tup_hot_upd: string }>(
    `SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE schemaname = current_schema() AND relname = $1`,
    [table],
  );
  return { all: Number(rows[0]?.n_tup_upd), hot: Number(rows[0]?.n_tup_hot_upd) };
}

describe(`with ${JOBS.toLocaleString("en")} jobs in the tables`, () => {
  it("starting and completing a batch of chunks reads them by key, never the whole table, and starting updates jobs in place", async () => {
    const batch = Array.from({ length: BATCH }, (_, i) => JOBS - BATCH + 1 + i);
    const before = await sequentialScans();
    const updatesBefore = await jobUpdates();
    const started = await startChunks(db, batch.map((n) => `chk_${id(n)}`));
    expect(started.every((chunk) => chunk !== null && !chunk.done)).toBe(true);
    // Marking a job running changes no indexed column, and its page has room (fillfactor 50): updated
    // in place, but for about one row a page, which finds its page filled by its neighbours' updates.
    const updatesAfter = await jobUpdates();
    expect(updatesAfter.all - updatesBefore.all).toBe(BATCH);
    expect(updatesAfter.hot - updatesBefore.hot).toBeGreaterThanOrEqual(0.9 * BATCH);
    const done = await completeChunks(
      db,
      batch.map((n) => ({ chunkId: `chk_${id(n)}`, jobId: `job_${id(n)}`, results: [{ outputs: { y: [n] } }] })),
    );
    expect(done.every((outcome) => outcome?.status === "succeeded")).toBe(true);
    expect(await sequentialScans()).toEqual(before);
  });

  it("a start writes no chunk row; a restart (after a stall) counts the chunk's restarts by key, in place", async () => {
    // A fresh batch of queued jobs, each with one chunk.
    await db.pool.query(
      `INSERT INTO jobs (id, tenant_id, model_version_id, total_rows, status, priority)
       SELECT 'job_r' || lpad(g::text, 7, '0'), 'ten_plan', 'mv_plan', 1, 'queued', 'interactive' FROM generate_series(1, $1) g`,
      [BATCH],
    );
    await db.pool.query(
      `INSERT INTO job_chunks (id, job_id, seq, first_row, row_count, inputs)
       SELECT 'chk_r' || lpad(g::text, 7, '0'), 'job_r' || lpad(g::text, 7, '0'), 0, 0, 1, '[{"x":[1]}]' FROM generate_series(1, $1) g`,
      [BATCH],
    );
    const ids = Array.from({ length: BATCH }, (_, i) => `chk_r${String(i + 1).padStart(7, "0")}`);
    const before = await sequentialScans();
    const chunkUpdates = await jobUpdates("job_chunks");
    const first = await startChunks(db, ids);
    expect(first.every((chunk) => chunk?.restarts === 0)).toBe(true);
    expect((await jobUpdates("job_chunks")).all).toBe(chunkUpdates.all);
    // Started again after their queue jobs stalled: half of them.
    const again = await startChunks(db, ids, { restarted: ids.slice(0, BATCH / 2) });
    expect(again.map((chunk) => chunk?.restarts)).toEqual(ids.map((_, i) => (i < BATCH / 2 ? 1 : 0)));
    const after = await jobUpdates("job_chunks");
    expect(after.all - chunkUpdates.all).toBe(BATCH / 2);
    expect(after.hot - chunkUpdates.hot).toBeGreaterThanOrEqual(0.9 * (BATCH / 2));
    expect(await sequentialScans()).toEqual(before);
  });

  it("the reconciler, expiry and retention sweeps find their jobs by index, not by reading every job", async () => {
    const before = await sequentialScans();
    await findUnfinishedChunks(db.prisma, new Date(Date.now() + 60_000), 100);
    await expireJobs(db);
    await deleteExpiredJobs(db, 30);
    expect((await sequentialScans()).jobs).toBe(before.jobs);
  });
});
