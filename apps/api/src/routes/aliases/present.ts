import {
  AliasComparisonSchema,
  AliasHistoryEntrySchema,
  AliasSchema,
  type Alias,
  type AliasComparison,
  type AliasHistoryEntry,
} from "@coalesce/contracts";
import { summarizeFigures, type AliasFigures, type AliasHistoryRecord, type AliasRecord } from "@coalesce/db";

export function presentAlias(record: AliasRecord): Alias {
  return AliasSchema.parse({
    model: record.modelName,
    name: record.name,
    routes: record.routes,
    shadow: record.shadow,
    guard: record.guard,
    revision: record.revision,
    created_at: record.createdAt.toISOString(),
    updated_at: record.updatedAt.toISOString(),
  });
}

export function presentHistoryEntry(record: AliasHistoryRecord): AliasHistoryEntry {
  return AliasHistoryEntrySchema.parse({
    id: record.id,
    at: record.createdAt.toISOString(),
    action: record.action,
    key_id: record.keyId,
    before: record.before,
    after: record.after,
    reason: record.reason,
    undone: record.undone,
  });
}

export function presentComparison(alias: AliasRecord, figures: AliasFigures): AliasComparison {
  const { versions, pairs } = summarizeFigures(figures);
  return AliasComparisonSchema.parse({
    model: alias.modelName,
    alias: alias.name,
    revision: alias.revision,
    versions: versions.map((v) => ({ version: v.version, role: v.role, rows: v.rows, errors: v.errors, error_rate: v.errorRate, mean_run_ms: v.meanRunMs })),
    pairs: pairs.map((pair) => ({
      primary_version: pair.primaryVersion,
      shadow_version: pair.shadowVersion,
      compared: pair.compared,
      agreement: pair.agreement,
      outputs: pair.outputs.map((o) => ({ output: o.output, compared: o.compared, agreement: o.agreement, mean_abs_diff: o.meanAbsDiff, max_abs_diff: o.maxAbsDiff })),
    })),
  });
}
