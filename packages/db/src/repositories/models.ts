import type { TensorSpec } from "@coalesce/contracts";
import type { Database, DbClient } from "../connection.ts";
import type { PrismaClient } from "../generated/client.ts";
import { newId } from "../ids.ts";

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
    const model = await tx.model.upsert({
      where: { tenantId_name: { tenantId: input.tenantId, name: input.name } },
      update: {},
      create: { id: newId("model"), tenantId: input.tenantId, name: input.name },
    });
    // Serialises concurrent uploads of one model so version numbers never collide.
    await tx.$executeRaw`SELECT 1 FROM models WHERE id = ${model.id} FOR UPDATE`;
    const latest = await tx.modelVersion.findFirst({ where: { modelId: model.id }, orderBy: { version: "desc" } });
    if (latest && latest.sha256 === input.sha256) {
      return { version: toVersionRecord(model.name, latest), created: false };
    }
    const row = await tx.modelVersion.create({
      data: {
        id: newId("modelVersion"),
        modelId: model.id,
        version: (latest?.version ?? 0) + 1,
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
    include: { versions: { orderBy: { version: "asc" } } },
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
    include: { versions: { orderBy: { version: "asc" } } },
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
      WHERE m.tenant_id = $1 AND m.name = $2 AND ($3::int IS NULL OR v.version = $3)
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
};

const VERSION_COLUMNS = `v.id, v.version, v.sha256, v.size_bytes, v.inputs, v.outputs, v.created_at,
  v.max_batch_rows, v.max_batch_delay_ms, v.max_batch_bytes`;

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
  };
}

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
): Promise<ModelVersionRecord | null> {
  const { rows } = await db.pool.query<VersionSqlRow>(
    `UPDATE model_versions v SET
        max_batch_rows = CASE WHEN $4 THEN $5::int ELSE v.max_batch_rows END,
        max_batch_delay_ms = CASE WHEN $6 THEN $7::int ELSE v.max_batch_delay_ms END,
        max_batch_bytes = CASE WHEN $8 THEN $9::bigint ELSE v.max_batch_bytes END
       FROM models m
      WHERE m.id = v.model_id AND m.tenant_id = $1 AND m.name = $2 AND v.version = $3
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
