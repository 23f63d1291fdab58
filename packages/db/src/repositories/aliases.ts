import type { AliasGuard, AliasGuardReason, AliasRoute, AliasRouting, AliasShadow } from "@coalesce/contracts";
import type pg from "pg";
import type { Database } from "../connection.ts";
import { newId } from "../ids.ts";
import { inTransaction, lockModel } from "../transaction.ts";

/** An alias as stored: its routing (the API's shape, kept as JSON) and where it belongs. */
export type AliasRecord = AliasRouting & {
  id: string;
  modelId: string;
  modelName: string;
  name: string;
  revision: number;
  createdAt: Date;
  updatedAt: Date;
};

export type AliasHistoryRecord = {
  id: string;
  action: "set" | "delete" | "rollback" | "guard_rollback";
  keyId: string | null;
  before: AliasRouting | null;
  after: AliasRouting | null;
  reason: AliasGuardReason | null;
  undone: boolean;
  createdAt: Date;
};

/** What a change was refused for, named by the request field it is about. */
export type AliasIssue = { field: string; message: string };

type AliasSqlRow = {
  id: string;
  model_id: string;
  model_name: string;
  name: string;
  routes: AliasRoute[];
  shadow: AliasShadow | null;
  guard: AliasGuard | null;
  revision: number;
  created_at: Date;
  updated_at: Date;
};

const ALIAS_COLUMNS = `a.id, a.model_id, m.name AS model_name, a.name, a.routes, a.shadow, a.guard, a.revision, a.created_at, a.updated_at`;

function toAliasRecord(row: AliasSqlRow): AliasRecord {
  return {
    id: row.id,
    modelId: row.model_id,
    modelName: row.model_name,
    name: row.name,
    routes: row.routes,
    shadow: row.shadow,
    guard: row.guard,
    revision: row.revision,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

export function routingOf(alias: AliasRouting): AliasRouting {
  return { routes: alias.routes, shadow: alias.shadow, guard: alias.guard };
}

/** A tenant's alias of a model by name, or null. On every request naming an alias (cached by the API). */
export async function findAlias(db: Database, tenantId: string, modelName: string, alias: string): Promise<AliasRecord | null> {
  const { rows } = await db.pool.query<AliasSqlRow>({
    name: "find-alias",
    text: `SELECT ${ALIAS_COLUMNS} FROM model_aliases a JOIN models m ON m.id = a.model_id
            WHERE m.tenant_id = $1 AND m.name = $2 AND a.name = $3`,
    values: [tenantId, modelName, alias],
  });
  return rows[0] ? toAliasRecord(rows[0]) : null;
}

export async function listAliases(db: Database, tenantId: string, modelName: string): Promise<AliasRecord[]> {
  const { rows } = await db.pool.query<AliasSqlRow>(
    `SELECT ${ALIAS_COLUMNS} FROM model_aliases a JOIN models m ON m.id = a.model_id
      WHERE m.tenant_id = $1 AND m.name = $2 ORDER BY a.name`,
    [tenantId, modelName],
  );
  return rows.map(toAliasRecord);
}

/** Every alias of a tenant's models, by model name (GET /v1/models shows which aliases point where). */
export async function listTenantAliases(db: Database, tenantId: string): Promise<AliasRecord[]> {
  const { rows } = await db.pool.query<AliasSqlRow>(
    `SELECT ${ALIAS_COLUMNS} FROM model_aliases a JOIN models m ON m.id = a.model_id WHERE m.tenant_id = $1 ORDER BY m.name, a.name`,
    [tenantId],
  );
  return rows.map(toAliasRecord);
}

export type AliasChange =
  | { kind: "no_model" }
  | { kind: "invalid"; issues: AliasIssue[] }
  | { kind: "changed"; alias: AliasRecord; created: boolean };

/**
 * Sets an alias's routing (creating the alias), recorded in its history. Every version it names
 * must exist (and not be deleted) and share one signature, checked under the model's lock so a
 * version cannot be deleted meanwhile.
 */
export async function putAlias(
  db: Database,
  input: { tenantId: string; modelName: string; alias: string; routing: AliasRouting; keyId: string | null },
): Promise<AliasChange> {
  return inTransaction(db, async (client) => {
    const modelId = await lockModel(client, input.tenantId, input.modelName);
    if (!modelId) return { kind: "no_model" };
    const issues = await checkRouting(client, modelId, input.modelName, input.routing);
    if (issues.length > 0) return { kind: "invalid", issues };
    const current = await readAliasForUpdate(client, modelId, input.alias);
    const routing = routingOf(input.routing);
    const alias = await writeRouting(client, { modelId, modelName: input.modelName, alias: input.alias, routing });
    await recordHistory(client, { modelId, alias: input.alias, action: "set", keyId: input.keyId, before: current ? routingOf(current) : null, after: routing });
    return { kind: "changed", alias, created: !current };
  });
}

export type AliasRemoval = { kind: "no_alias" } | { kind: "deleted"; alias: AliasRecord };

/** Deletes an alias (its history stays; a rollback brings it back). Jobs that came through it keep its name. */
export async function deleteAlias(db: Database, input: { tenantId: string; modelName: string; alias: string; keyId: string | null }): Promise<AliasRemoval> {
  return inTransaction(db, async (client) => {
    const modelId = await lockModel(client, input.tenantId, input.modelName);
    const current = modelId ? await readAliasForUpdate(client, modelId, input.alias) : null;
    if (!modelId || !current) return { kind: "no_alias" };
    await client.query(`DELETE FROM model_aliases WHERE id = $1`, [current.id]);
    await recordHistory(client, { modelId, alias: input.alias, action: "delete", keyId: input.keyId, before: routingOf(current), after: null });
    return { kind: "deleted", alias: current };
  });
}

export type AliasRollback =
  | { kind: "no_history" }
  | { kind: "nothing_earlier"; reason: string }
  | { kind: "invalid"; issues: AliasIssue[] }
  | { kind: "rolled_back"; alias: AliasRecord; to: AliasRouting };

/**
 * Puts back the routing from before the newest change not undone yet (so rollbacks step back
 * through the history; after a delete, it brings the alias back). One transaction under the
 * model's lock: a request never sees the alias missing or half changed.
 */
export async function rollbackAlias(db: Database, input: { tenantId: string; modelName: string; alias: string; keyId: string | null }): Promise<AliasRollback> {
  return inTransaction(db, async (client) => {
    const modelId = await lockModel(client, input.tenantId, input.modelName);
    if (!modelId) return { kind: "no_history" };
    // The alias's row first: the guard changes it under that lock alone (not the model's), so its
    // history entry is read below only once any rollback of its own has committed.
    const current = await readAliasForUpdate(client, modelId, input.alias);
    const { rows } = await client.query<{ id: string; before: AliasRouting | null; action: string }>(
      `SELECT id, before, action FROM model_alias_history
        WHERE model_id = $1 AND alias = $2 AND action <> 'rollback' AND NOT undone ORDER BY id DESC LIMIT 1`,
      [modelId, input.alias],
    );
    const change = rows[0];
    if (!change) return current ? { kind: "nothing_earlier", reason: "every change of this alias has been rolled back already" } : { kind: "no_history" };
    if (!change.before) return { kind: "nothing_earlier", reason: "the alias was created with its first routing; there is nothing earlier (DELETE the alias instead)" };
    const to = change.before;
    // A version the earlier routing named may have been deleted since.
    const issues = await checkRouting(client, modelId, input.modelName, to);
    if (issues.length > 0) return { kind: "invalid", issues };
    const alias = await writeRouting(client, { modelId, modelName: input.modelName, alias: input.alias, routing: to });
    await client.query(`UPDATE model_alias_history SET undone = true WHERE id = $1`, [change.id]);
    const before = current ? routingOf(current) : null;
    await recordHistory(client, { modelId, alias: input.alias, action: "rollback", keyId: input.keyId, before, after: to });
    await emitRolledBack(client, input.tenantId, { model: input.modelName, alias: input.alias, revision: alias.revision, trigger: "manual", reason: null, before, after: to });
    return { kind: "rolled_back", alias, to };
  });
}

/**
 * The guard's rollback: the alias takes `routing` (the candidate gone) if it is still at `revision`
 * (another worker's guard, or a person, may have changed it meanwhile), with its history entry,
 * the `model.alias.rolled_back` event, all in one transaction. False when the alias had moved on.
 */
export async function guardRollbackAlias(
  db: Database,
  input: { aliasId: string; revision: number; routing: AliasRouting; reason: AliasGuardReason },
): Promise<AliasRecord | null> {
  return inTransaction(db, async (client) => {
    const { rows } = await client.query<AliasSqlRow & { tenant_id: string }>(
      `SELECT ${ALIAS_COLUMNS}, m.tenant_id FROM model_aliases a JOIN models m ON m.id = a.model_id
        WHERE a.id = $1 AND a.revision = $2 FOR UPDATE OF a`,
      [input.aliasId, input.revision],
    );
    const row = rows[0];
    if (!row) return null;
    const before = routingOf(toAliasRecord(row));
    const alias = await writeRouting(client, { modelId: row.model_id, modelName: row.model_name, alias: row.name, routing: input.routing });
    await recordHistory(client, { modelId: row.model_id, alias: row.name, action: "guard_rollback", keyId: null, before, after: input.routing, reason: input.reason });
    await emitRolledBack(client, row.tenant_id, { model: row.model_name, alias: row.name, revision: alias.revision, trigger: "guard", reason: input.reason, before, after: input.routing });
    return alias;
  });
}

/** An alias's history, newest first (`before`: entries older than that id, for paging). */
export async function listAliasHistory(
  db: Database,
  input: { tenantId: string; modelName: string; alias: string; limit: number; before?: string },
): Promise<AliasHistoryRecord[]> {
  const { rows } = await db.pool.query<{
    id: string;
    action: AliasHistoryRecord["action"];
    key_id: string | null;
    before: AliasRouting | null;
    after: AliasRouting | null;
    reason: AliasGuardReason | null;
    undone: boolean;
    created_at: Date;
  }>(
    `SELECT h.id::text, h.action, h.key_id, h.before, h.after, h.reason, h.undone, h.created_at
       FROM model_alias_history h JOIN models m ON m.id = h.model_id
      WHERE m.tenant_id = $1 AND m.name = $2 AND h.alias = $3 AND ($4::bigint IS NULL OR h.id < $4::bigint)
      ORDER BY h.id DESC LIMIT $5`,
    [input.tenantId, input.modelName, input.alias, input.before ?? null, input.limit],
  );
  return rows.map((row) => ({
    id: row.id,
    action: row.action,
    keyId: row.key_id,
    before: row.before,
    after: row.after,
    reason: row.reason,
    undone: row.undone,
    createdAt: row.created_at,
  }));
}

/** An alias's plan as a worker needs it: its versions' ids beside their numbers. */
export type AliasPlan = {
  id: string;
  modelName: string;
  name: string;
  revision: number;
  routes: (AliasRoute & { versionId: string })[];
  shadow: (AliasShadow & { versionId: string }) | null;
  guard: AliasGuard | null;
};

/** The plans of the given aliases (a worker refreshing those it scores rows for); missing ones are deleted. */
export async function readAliasPlans(db: Database, ids: readonly string[]): Promise<Map<string, AliasPlan>> {
  if (ids.length === 0) return new Map();
  return plansWhere(db, `a.id = ANY($1::text[])`, [ids]);
}

/** Every alias with a guard (the guard's pass). */
export async function readGuardedAliasPlans(db: Database): Promise<AliasPlan[]> {
  return [...(await plansWhere(db, `a.guard IS NOT NULL`, [])).values()];
}

async function plansWhere(db: Database, where: string, values: unknown[]): Promise<Map<string, AliasPlan>> {
  const { rows } = await db.pool.query<AliasSqlRow & { versions: Record<string, string> }>(
    `SELECT ${ALIAS_COLUMNS},
            (SELECT json_object_agg(v.version::text, v.id) FROM model_versions v WHERE v.model_id = a.model_id AND v.deleted_at IS NULL) AS versions
       FROM model_aliases a JOIN models m ON m.id = a.model_id WHERE ${where}`,
    values,
  );
  const plans = new Map<string, AliasPlan>();
  for (const row of rows) {
    const versions = row.versions ?? {};
    const idOf = (version: number) => versions[String(version)] ?? "";
    plans.set(row.id, {
      id: row.id,
      modelName: row.model_name,
      name: row.name,
      revision: row.revision,
      routes: row.routes.map((route) => ({ ...route, versionId: idOf(route.version) })),
      shadow: row.shadow ? { ...row.shadow, versionId: idOf(row.shadow.version) } : null,
      guard: row.guard,
    });
  }
  return plans;
}

/** Rows a version scored for an alias revision, as a route or as its shadow (a worker's increments). */
export type AliasStatDelta = { aliasId: string; revision: number; version: number; role: "route" | "shadow"; rows: number; errors: number; runMs: number };

/** What one version's outputs were beside another's on the same rows, per output (a worker's increments). */
export type AliasComparisonDelta = {
  aliasId: string;
  revision: number;
  primaryVersion: number;
  shadowVersion: number;
  output: string;
  compared: number;
  labelled: number;
  agreed: number;
  values: number;
  absDiffSum: number;
  absDiffMax: number;
};

/** Adds a worker's increments, one statement each table. An alias deleted meanwhile is skipped. */
export async function addAliasFigures(db: Database, unsortedStats: readonly AliasStatDelta[], unsortedComparisons: readonly AliasComparisonDelta[]): Promise<void> {
  // In key order, so two workers adding to the same rows lock them in the same order (no deadlock).
  const stats = [...unsortedStats].sort((a, b) => compareKeys([a.aliasId, a.revision, a.version, a.role], [b.aliasId, b.revision, b.version, b.role]));
  const comparisons = [...unsortedComparisons].sort((a, b) =>
    compareKeys([a.aliasId, a.revision, a.primaryVersion, a.shadowVersion, a.output], [b.aliasId, b.revision, b.primaryVersion, b.shadowVersion, b.output]),
  );
  if (stats.length > 0) {
    await db.pool.query(
      `INSERT INTO model_alias_stats AS s (alias_id, revision, version, role, rows, errors, run_ms)
       SELECT x.alias_id, x.revision, x.version, x.role, x.rows, x.errors, x.run_ms
         FROM json_to_recordset($1::json) AS x(alias_id text, revision int, version int, role text, rows bigint, errors bigint, run_ms float8)
         JOIN model_aliases a ON a.id = x.alias_id
       ON CONFLICT (alias_id, revision, version, role) DO UPDATE SET
         rows = s.rows + EXCLUDED.rows, errors = s.errors + EXCLUDED.errors, run_ms = s.run_ms + EXCLUDED.run_ms, updated_at = now()`,
      [JSON.stringify(stats.map((s) => ({ alias_id: s.aliasId, revision: s.revision, version: s.version, role: s.role, rows: s.rows, errors: s.errors, run_ms: s.runMs })))],
    );
  }
  if (comparisons.length > 0) {
    await db.pool.query(
      `INSERT INTO model_alias_comparisons AS c (alias_id, revision, primary_version, shadow_version, output, compared, labelled, agreed, "values", abs_diff_sum, abs_diff_max)
       SELECT x.alias_id, x.revision, x.primary_version, x.shadow_version, x.output, x.compared, x.labelled, x.agreed, x.values, x.abs_diff_sum, x.abs_diff_max
         FROM json_to_recordset($1::json) AS x(alias_id text, revision int, primary_version int, shadow_version int, output text,
                                                compared bigint, labelled bigint, agreed bigint, "values" bigint, abs_diff_sum float8, abs_diff_max float8)
         JOIN model_aliases a ON a.id = x.alias_id
       ON CONFLICT (alias_id, revision, primary_version, shadow_version, output) DO UPDATE SET
         compared = c.compared + EXCLUDED.compared, labelled = c.labelled + EXCLUDED.labelled, agreed = c.agreed + EXCLUDED.agreed,
         "values" = c."values" + EXCLUDED."values", abs_diff_sum = c.abs_diff_sum + EXCLUDED.abs_diff_sum,
         abs_diff_max = GREATEST(c.abs_diff_max, EXCLUDED.abs_diff_max), updated_at = now()`,
      [
        JSON.stringify(
          comparisons.map((c) => ({
            alias_id: c.aliasId,
            revision: c.revision,
            primary_version: c.primaryVersion,
            shadow_version: c.shadowVersion,
            output: c.output,
            compared: c.compared,
            labelled: c.labelled,
            agreed: c.agreed,
            values: c.values,
            abs_diff_sum: c.absDiffSum,
            abs_diff_max: c.absDiffMax,
          })),
        ),
      ],
    );
  }
}

export type AliasFigures = {
  stats: Omit<AliasStatDelta, "aliasId" | "revision">[];
  comparisons: Omit<AliasComparisonDelta, "aliasId" | "revision">[];
};

/** The figures counted for an alias at one revision. */
export async function readAliasFigures(db: Database, aliasId: string, revision: number): Promise<AliasFigures> {
  const [stats, comparisons] = await Promise.all([
    db.pool.query<{ version: number; role: "route" | "shadow"; rows: string; errors: string; run_ms: number }>(
      `SELECT version, role, rows, errors, run_ms FROM model_alias_stats WHERE alias_id = $1 AND revision = $2 ORDER BY role, version`,
      [aliasId, revision],
    ),
    db.pool.query<{ primary_version: number; shadow_version: number; output: string; compared: string; labelled: string; agreed: string; values: string; abs_diff_sum: number; abs_diff_max: number }>(
      `SELECT primary_version, shadow_version, output, compared, labelled, agreed, "values", abs_diff_sum, abs_diff_max
         FROM model_alias_comparisons WHERE alias_id = $1 AND revision = $2 ORDER BY primary_version, shadow_version, output`,
      [aliasId, revision],
    ),
  ]);
  return {
    stats: stats.rows.map((row) => ({ version: row.version, role: row.role, rows: Number(row.rows), errors: Number(row.errors), runMs: row.run_ms })),
    comparisons: comparisons.rows.map((row) => ({
      primaryVersion: row.primary_version,
      shadowVersion: row.shadow_version,
      output: row.output,
      compared: Number(row.compared),
      labelled: Number(row.labelled),
      agreed: Number(row.agreed),
      values: Number(row.values),
      absDiffSum: row.abs_diff_sum,
      absDiffMax: row.abs_diff_max,
    })),
  };
}

async function readAliasForUpdate(client: pg.PoolClient, modelId: string, alias: string): Promise<AliasRecord | null> {
  const { rows } = await client.query<AliasSqlRow>(
    `SELECT ${ALIAS_COLUMNS} FROM model_aliases a JOIN models m ON m.id = a.model_id WHERE a.model_id = $1 AND a.name = $2 FOR UPDATE OF a`,
    [modelId, alias],
  );
  return rows[0] ? toAliasRecord(rows[0]) : null;
}

async function writeRouting(client: pg.PoolClient, input: { modelId: string; modelName: string; alias: string; routing: AliasRouting }): Promise<AliasRecord> {
  const { rows } = await client.query<AliasSqlRow>(
    `INSERT INTO model_aliases AS a (id, model_id, name, routes, shadow, guard)
     VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, $6::jsonb)
     ON CONFLICT (model_id, name) DO UPDATE SET routes = EXCLUDED.routes, shadow = EXCLUDED.shadow, guard = EXCLUDED.guard,
       revision = a.revision + 1, updated_at = now()
     RETURNING a.id, a.model_id, $7::text AS model_name, a.name, a.routes, a.shadow, a.guard, a.revision, a.created_at, a.updated_at`,
    [newId("alias"), input.modelId, input.alias, JSON.stringify(input.routing.routes), json(input.routing.shadow), json(input.routing.guard), input.modelName],
  );
  return toAliasRecord(rows[0]!);
}

async function recordHistory(
  client: pg.PoolClient,
  entry: { modelId: string; alias: string; action: AliasHistoryRecord["action"]; keyId: string | null; before: AliasRouting | null; after: AliasRouting | null; reason?: AliasGuardReason },
): Promise<void> {
  await client.query(
    `INSERT INTO model_alias_history (model_id, alias, action, key_id, before, after, reason) VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7::jsonb)`,
    [entry.modelId, entry.alias, entry.action, entry.keyId, json(entry.before), json(entry.after), json(entry.reason ?? null)],
  );
}

/**
 * The `model.alias.rolled_back` webhook event, in the transaction of the rollback (so it exists
 * exactly when the rollback does), to the tenant's endpoints subscribed to it.
 */
async function emitRolledBack(
  client: pg.PoolClient,
  tenantId: string,
  data: { model: string; alias: string; revision: number; trigger: "guard" | "manual"; reason: AliasGuardReason | null; before: AliasRouting | null; after: AliasRouting },
): Promise<void> {
  await client.query(`SELECT coalesce_emit_tenant_event($1, 'model.alias.rolled_back', $2::json)`, [tenantId, JSON.stringify(data)]);
}

function json(value: unknown): string | null {
  return value === null || value === undefined ? null : JSON.stringify(value);
}

/**
 * What is wrong with a routing for this model: a version that does not exist (or was deleted), the
 * same version twice, weights that do not sum to 100, versions whose signatures differ, a guard
 * with nothing to watch.
 */
async function checkRouting(client: pg.PoolClient, modelId: string, modelName: string, routing: AliasRouting): Promise<AliasIssue[]> {
  const issues: AliasIssue[] = [];
  const named = [
    ...routing.routes.map((route, i) => ({ field: `routes[${i}].version`, version: route.version })),
    ...(routing.shadow ? [{ field: "shadow.version", version: routing.shadow.version }] : []),
  ];
  const { rows } = await client.query<{ version: number; inputs: unknown; outputs: unknown }>(
    `SELECT version, inputs, outputs FROM model_versions WHERE model_id = $1 AND deleted_at IS NULL AND version = ANY($2::int[])`,
    [modelId, named.map((entry) => entry.version)],
  );
  const versions = new Map(rows.map((row) => [row.version, JSON.stringify({ inputs: row.inputs, outputs: row.outputs })]));
  const total = routing.routes.reduce((sum, route) => sum + route.weight, 0);
  if (total !== 100) issues.push({ field: "routes", message: `the weights sum to ${total}; they must sum to 100` });
  const seen = new Set<number>();
  for (const [i, route] of routing.routes.entries()) {
    if (seen.has(route.version)) issues.push({ field: `routes[${i}].version`, message: `version ${route.version} is routed to twice; give it one route` });
    seen.add(route.version);
  }
  if (routing.shadow && seen.has(routing.shadow.version)) {
    issues.push({ field: "shadow.version", message: `version ${routing.shadow.version} already answers through the routes; a shadow must be another version` });
  }
  let reference: { field: string; version: number; signature: string } | undefined;
  for (const entry of named) {
    const signature = versions.get(entry.version);
    if (signature === undefined) {
      issues.push({ field: entry.field, message: `model '${modelName}' has no version ${entry.version}` });
      continue;
    }
    if (!reference) reference = { ...entry, signature };
    else if (signature !== reference.signature) {
      issues.push({
        field: entry.field,
        message: `version ${entry.version} has another input/output signature than version ${reference.version}; every version of an alias must take and give the same tensors`,
      });
    }
  }
  if (routing.guard && routing.routes.length < 2 && !routing.shadow) {
    issues.push({ field: "guard", message: "a guard watches a candidate: give a canary (two or more routes) or a shadow" });
  }
  if (routing.guard?.min_agreement !== undefined && routing.routes.length < 2 && !routing.shadow) {
    issues.push({ field: "guard.min_agreement", message: "agreement is measured against a canary or a shadow" });
  }
  return issues;
}

function compareKeys(a: readonly (string | number)[], b: readonly (string | number)[]): number {
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x < y) return -1;
    if (x > y) return 1;
  }
  return 0;
}
