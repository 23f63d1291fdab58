import { ModelSchema, ModelVersionSchema, type Model, type ModelVersion } from "@coalesce/contracts";
import type { AliasRecord, ModelRecord, ModelVersionRecord } from "@coalesce/db";

// Responses go through their schema, so a database field never leaks out by accident.
/** `aliases`: the model's aliases, of which those that route to (or shadow with) this version are shown. */
export function presentModelVersion(record: ModelVersionRecord, aliases: readonly AliasRecord[] = []): ModelVersion {
  return ModelVersionSchema.parse({
    name: record.modelName,
    version: record.version,
    sha256: record.sha256,
    size_bytes: record.sizeBytes,
    inputs: record.inputs,
    outputs: record.outputs,
    batching: {
      max_batch_rows: record.batching.maxBatchRows,
      max_batch_delay_ms: record.batching.maxBatchDelayMs,
      max_batch_bytes: record.batching.maxBatchBytes,
    },
    description: record.description,
    labels: record.labels,
    aliases: aliases.filter((alias) => alias.routes.some((route) => route.version === record.version)).map((alias) => alias.name),
    shadow_of: aliases.filter((alias) => alias.shadow?.version === record.version).map((alias) => alias.name),
    created_at: record.createdAt.toISOString(),
  });
}

export function presentModel(record: ModelRecord, aliases: readonly AliasRecord[] = []): Model {
  return ModelSchema.parse({
    name: record.name,
    latest_version: record.versions.at(-1)?.version ?? 0,
    created_at: record.createdAt.toISOString(),
    versions: record.versions.map((version) => presentModelVersion(version, aliases)),
  });
}
