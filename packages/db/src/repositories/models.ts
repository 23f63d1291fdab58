import type { TensorSpec } from "@coalesce/contracts";
import type { Database, DbClient } from "../connection.ts";
import type { PrismaClient } from "../generated/client.ts";
import { newId } from "../ids.ts";
import { inTransaction, lockModel } from "../transaction.ts";

/** A version's own batching limits; null where the worker's default applies. */
export type BatchingSettings = { maxBatchRows: number | null; maxBatchDelayMs: number | null; maxBatchBytes: number | null };

export type ModelVersionRecord = {
  id: string;
  modelName: string;
  version: number;
  sha256: string;
  sizeBytes: number;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  createdAt: Date;
  batching: BatchingSettings;
  description: string | null;
  labels: Record<string, string>;
};

export type ModelRecord = { name: string; createdAt: Date; versions: ModelVersionRecord[] };

type VersionRow = {
  id: string;
  version: number;
  sha256: string;
  sizeBytes: bigint;
  inputs: unknown;
  outputs: unknown;
  createdAt: Date;
  maxBatchRows: number | null;
  maxBatchDelayMs: number | null;
  maxBatchBytes: bigint | null;
  description: string | null;
  labels: unknown;
};

function toVersionRecord(modelName: string, row: VersionRow): ModelVersionRecord {
  return {
    id: row.id,
    modelName,
    version: row.version,
    sha256: row.sha256,
    sizeBytes: Number(row.sizeBytes),
    // Written only by createModelVersion from onnxruntime's own metadata.
    inputs: row.inputs as TensorSpec[],
    outputs: row.outputs as TensorSpec[],
    createdAt: row.createdAt,
    batching: toBatching(row.maxBatchRows, row.maxBatchDelayMs, row.maxBatchBytes),
    description: row.description,
    labels: (row.labels ?? {}) as Record<string, string>,
  };
}

/** The limits as stored (Prisma gives bigint, pg a decimal string for max_batch_bytes). */
function toBatching(rows: number | null, delayMs: number | null, bytes: bigint | string | null): BatchingSettings {
  return { maxBatchRows: rows, maxBatchDelayMs: delayMs, maxBatchBytes: bytes === null ? null : Number(bytes) };
}

export type CreateModelVersionInput = {
  tenantId: string;
  name: string;
  sha256: string;
  sizeBytes: number;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  /** Omitted limits stay null (the worker's defaults). */
  batching?: Partial<BatchingSettings>;
};

/**
 * Adds the next version (1, 2, 3, ...) of a tenant's model. Uploading the same bytes as the latest
 * version again returns that version instead of a copy, so a retried upload is harmless.
 */
export async function createModelVersion(
  prisma: PrismaClient,
  input: CreateModelVersionInput,
): Promise<{ version: ModelVersionRecord; created: boolean }> {
  return prisma.$transaction(async (tx) => {
    // One statement that inserts or locks the model's row, so concurrent uploads of one model take
    // turns on it and version numbers never collide. (Prisma's upsert reads, then inserts: of two
    // first uploads of a model at once, the second failed on models_tenant_id_name_key.)
    const [model] = await tx.$queryRaw<{ id: string; name: string }[]>`
      INSERT INTO models (id, tenant_id, name) VALUES (${newId("model")}, ${input.tenantId}, ${input.name})
      ON CONFLICT (tenant_id, name) DO UPDATE SET name = EXCLUDED.name
      RETURNING id, name`;
    if (!model) throw new Error(`model ${input.name}: INSERT ... ON CONFLICT returned no row`);
    // And this version with a removal of the same file (see removeUnusedModelFile).
    await tx.$executeRaw`SELECT pg_advisory_xact_lock(${MODEL_FILE_LOCK_SPACE}::int, hashtext(${input.sha256}))`;
    const latest = await tx.modelVersion.findFirst({ where: { modelId: model.id, deletedAt: null }, orderBy: { version: "desc" } });
    if (latest && latest.sha256 === input.sha256) {
      return { version: toVersionRecord(model.name, latest), created: false };
    }
    // Deleted versions keep their numbers: a number always means the same model.
    const highest = await tx.modelVersion.findFirst({ where: { modelId: model.id }, orderBy: { version: "desc" }, select: { version: true } });
    const row = await tx.modelVersion.create({
      data: {
        id: newId("modelVersion"),
        modelId: model.id,
        version: (highest?.version ?? 0) + 1,
        sha256: input.sha256,
        sizeBytes: BigInt(input.sizeBytes),
        inputs: input.inputs,
        outputs: input.outputs,
        maxBatchRows: input.batching?.maxBatchRows ?? null,
        maxBatchDelayMs: input.batching?.maxBatchDelayMs ?? null,
        maxBatchBytes: input.batching?.maxBatchBytes == null ? null : BigInt(input.batching.maxBatchBytes),
      },
    });
    return { version: toVersionRecord(model.name, row), created: true };
  });
}

export async function listModels(db: DbClient, tenantId: string): Promise<ModelRecord[]> {
  const models = await db.model.findMany({
    where: { tenantId },
    orderBy: { name: "asc" },
    include: { versions: { where: { deletedAt: null }, orderBy: { version: "asc" } } },
  });
  return models.map((model) => ({
    name: model.name,
    createdAt: model.createdAt,
    versions: model.versions.map((row) => toVersionRecord(model.name, row)),
  }));
}

export async function findModel(db: DbClient, tenantId: string, name: string): Promise<ModelRecord | null> {
  const model = await db.model.findUnique({
    where: { tenantId_name: { tenantId, name } },
    include: { versions: { where: { deletedAt: null }, orderBy: { version: "asc" } } },
  });
  if (!model) return null;
  return {
    name: model.name,
    createdAt: model.createdAt,
    versions: model.versions.map((row) => toVersionRecord(model.name, row)),
  };
}

/**
 * A tenant's model version by name and number, or its latest version when `version` is omitted.
 * On every job submission, so through pg directly: one statement.
 */
export async function resolveModelVersion(
  db: Database,
  tenantId: string,
  name: string,
  version?: number,
): Promise<ModelVersionRecord | null> {
  const { rows } = await db.pool.query<VersionSqlRow>({
    name: "resolve-model-version",
    text: `SELECT ${VERSION_COLUMNS}
       FROM model_versions v JOIN models m ON m.id = v.model_id
      WHERE m.tenant_id = $1 AND m.name = $2 AND ($3::int IS NULL OR v.version = $3) AND v.deleted_at IS NULL
      ORDER BY v.version DESC LIMIT 1`,
    values: [tenantId, name, version ?? null],
  });
  const row = rows[0];
  return row ? fromVersionSqlRow(name, row) : null;
}

type VersionSqlRow = {
  id: string;
  version: number;
  sha256: string;
  size_bytes: string;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  created_at: Date;
  max_batch_rows: number | null;
  max_batch_delay_ms: number | null;
  max_batch_bytes: string | null;
  description: string | null;
  labels: Record<string, string> | null;
};

const VERSION_COLUMNS = `v.id, v.version, v.sha256, v.size_bytes, v.inputs, v.outputs, v.created_at,
  v.max_batch_rows, v.max_batch_delay_ms, v.max_batch_bytes, v.description, v.labels`;

function fromVersionSqlRow(modelName: string, row: VersionSqlRow): ModelVersionRecord {
  return {
    id: row.id,
    modelName,
    version: row.version,
    sha256: row.sha256,
    sizeBytes: Number(row.size_bytes),
    inputs: row.inputs,
    outputs: row.outputs,
    createdAt: row.created_at,
    batching: toBatching(row.max_batch_rows, row.max_batch_delay_ms, row.max_batch_bytes),
    description: row.description,
    labels: row.labels ?? {},
  };
}

/** A version's description and labels: a key left out stays as it is (null clears the description). */
export type VersionInfoPatch = { description?: string | null; labels?: Record<string, string> };

/**
 * Changes a version's batching limits: a key given as null goes back to the worker's default, a
 * key left out stays as it is. Null when the tenant has no such version. Workers pick the change
 * up within their refresh interval, without a restart.
 */
export async function updateModelVersionBatching(
  db: Database,
  tenantId: string,
  name: string,
  version: number,
  patch: Partial<BatchingSettings>,
  info: VersionInfoPatch = {},
): Promise<ModelVersionRecord | null> {
  const { rows } = await db.pool.query<VersionSqlRow>(
    `UPDATE model_versions v SET
        max_batch_rows = CASE WHEN $4 THEN $5::int ELSE v.max_batch_rows END,
        max_batch_delay_ms = CASE WHEN $6 THEN $7::int ELSE v.max_batch_delay_ms END,
        max_batch_bytes = CASE WHEN $8 THEN $9::bigint ELSE v.max_batch_bytes END,
        description = CASE WHEN $10 THEN $11::text ELSE v.description END,
        labels = COALESCE($12::jsonb, v.labels)
       FROM models m
      WHERE m.id = v.model_id AND m.tenant_id = $1 AND m.name = $2 AND v.version = $3 AND v.deleted_at IS NULL
      RETURNING ${VERSION_COLUMNS}`,
    [
      tenantId,
      name,
      version,
      patch.maxBatchRows !== undefined,
      patch.maxBatchRows ?? null,
      patch.maxBatchDelayMs !== undefined,
      patch.maxBatchDelayMs ?? null,
      patch.maxBatchBytes !== undefined,
      patch.maxBatchBytes ?? null,
      info.description !== undefined,
      info.description ?? null,
      info.labels === undefined ? null : JSON.stringify(info.labels),
    ],
  );
  const row = rows[0];
  return row ? fromVersionSqlRow(name, row) : null;
}

/** The current batching limits of the given versions (a worker refreshing the models it holds). */
export async function readBatchingSettings(db: Database, ids: readonly string[]): Promise<Map<string, BatchingSettings>> {
  const { rows } = await db.pool.query<{ id: string; max_batch_rows: number | null; max_batch_delay_ms: number | null; max_batch_bytes: string | null }>(
    `SELECT id, max_batch_rows, max_batch_delay_ms, max_batch_bytes FROM model_versions WHERE id = ANY($1::text[])`,
    [ids],
  );
  return new Map(rows.map((row) => [row.id, toBatching(row.max_batch_rows, row.max_batch_delay_ms, row.max_batch_bytes)]));
}

export async function getModelVersion(db: DbClient, id: string): Promise<ModelVersionRecord | null> {
  const row = await db.modelVersion.findUnique({ where: { id }, include: { model: { select: { name: true } } } });
  return row ? toVersionRecord(row.model.name, row) : null;
}

export type VersionDeletion =
  | { kind: "not_found" }
  | { kind: "in_use_by_alias"; alias: string }
  | { kind: "in_use_by_job"; jobId: string; status: string }
  | { kind: "deleted"; version: ModelVersionRecord; sha256: string; fileInUse: boolean };

/**
 * Deletes a version: refused while an alias routes to it (or shadows with it) or an unfinished job
 * runs on it, under the model's lock (alias changes take it too). The row stays, marked deleted,
 * so finished jobs still show it and its number is never given again. `fileInUse`: another live
 * version (of any tenant: the store is content-addressed) has the same file, so it must stay.
 */
export async function deleteModelVersion(db: Database, tenantId: string, name: string, version: number): Promise<VersionDeletion> {
  return inTransaction(db, async (client) => {
    const modelId = await lockModel(client, tenantId, name);
    if (!modelId) return { kind: "not_found" };
    const found = await client.query<VersionSqlRow>(
      `SELECT ${VERSION_COLUMNS} FROM model_versions v WHERE v.model_id = $1 AND v.version = $2 AND v.deleted_at IS NULL`,
      [modelId, version],
    );
    const row = found.rows[0];
    if (!row) return { kind: "not_found" };
    const alias = await client.query<{ name: string }>(
      `SELECT name FROM model_aliases WHERE model_id = $1
          AND (routes @> jsonb_build_array(jsonb_build_object('version', $2::int)) OR (shadow->>'version')::int = $2)
        ORDER BY name LIMIT 1`,
      [modelId, version],
    );
    if (alias.rows[0]) return { kind: "in_use_by_alias", alias: alias.rows[0].name };
    const job = await client.query<{ id: string; status: string }>(
      `SELECT id, status::text FROM jobs WHERE completed_at IS NULL AND model_version_id = $1 ORDER BY id LIMIT 1`,
      [row.id],
    );
    if (job.rows[0]) return { kind: "in_use_by_job", jobId: job.rows[0].id, status: job.rows[0].status };
    await client.query(`UPDATE model_versions SET deleted_at = now() WHERE id = $1`, [row.id]);
    const shared = await client.query(`SELECT 1 FROM model_versions WHERE sha256 = $1 AND deleted_at IS NULL LIMIT 1`, [row.sha256]);
    return { kind: "deleted", version: fromVersionSqlRow(name, row), sha256: row.sha256, fileInUse: (shared.rowCount ?? 0) > 0 };
  });
}

/** The first key of the advisory locks that serialise a model file's removal with new versions of it. */
const MODEL_FILE_LOCK_SPACE = 0x636f616c;

/**
 * Removes a model file from the store (`remove`) when no live version of any tenant uses it,
 * under a lock that a new version of the same file takes too: an upload of the same bytes either
 * commits its version first (the file stays) or waits until the removal is done (and then finds
 * the file gone: see the upload route). True when it was removed.
 */
export async function removeUnusedModelFile(db: Database, sha256: string, remove: () => Promise<unknown>): Promise<boolean> {
  return inTransaction(db, async (client) => {
    await client.query(`SELECT pg_advisory_xact_lock($1::int, hashtext($2))`, [MODEL_FILE_LOCK_SPACE, sha256]);
    const live = await client.query(`SELECT 1 FROM model_versions WHERE sha256 = $1 AND deleted_at IS NULL LIMIT 1`, [sha256]);
    if ((live.rowCount ?? 0) > 0) return false;
    await remove();
    return true;
  });
}
