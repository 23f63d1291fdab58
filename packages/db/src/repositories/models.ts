import type { TensorSpec } from "@coalesce/contracts";
import type { Database, DbClient } from "../connection.ts";
import type { PrismaClient } from "../generated/client.ts";
import { newId } from "../ids.ts";

export type ModelVersionRecord = {
  id: string;
  modelName: string;
  version: number;
  sha256: string;
  sizeBytes: number;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  createdAt: Date;
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
  };
}

export type CreateModelVersionInput = {
  tenantId: string;
  name: string;
  sha256: string;
  sizeBytes: number;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
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
  const { rows } = await db.pool.query<{
    id: string;
    version: number;
    sha256: string;
    size_bytes: string;
    inputs: TensorSpec[];
    outputs: TensorSpec[];
    created_at: Date;
  }>({
    name: "resolve-model-version",
    text: `SELECT v.id, v.version, v.sha256, v.size_bytes, v.inputs, v.outputs, v.created_at
       FROM model_versions v JOIN models m ON m.id = v.model_id
      WHERE m.tenant_id = $1 AND m.name = $2 AND ($3::int IS NULL OR v.version = $3)
      ORDER BY v.version DESC LIMIT 1`,
    values: [tenantId, name, version ?? null],
  });
  const row = rows[0];
  if (!row) return null;
  return {
    id: row.id,
    modelName: name,
    version: row.version,
    sha256: row.sha256,
    sizeBytes: Number(row.size_bytes),
    inputs: row.inputs,
    outputs: row.outputs,
    createdAt: row.created_at,
  };
}

export async function getModelVersion(db: DbClient, id: string): Promise<ModelVersionRecord | null> {
  const row = await db.modelVersion.findUnique({ where: { id }, include: { model: { select: { name: true } } } });
  return row ? toVersionRecord(row.model.name, row) : null;
}
