import { DEFAULT_ALIAS } from "@coalesce/contracts";
import { findAlias, resolveModelVersion, SingleFlight, type AliasRecord, type Database, type JobAlias, type ModelVersionRecord } from "@coalesce/db";
import { chooseRoute } from "../aliases/split.ts";
import type { ApiDeps } from "../context.ts";
import { ApiError } from "../errors.ts";

/** Finds the model version a request names (its latest version when `version` is left out), or says how to fix the reference. */
export type ModelResolver = (tenantId: string, name: string, version?: number) => Promise<ModelVersionRecord>;

/**
 * How long a looked-up version is trusted. A predict request is answered in about a millisecond,
 * and a Postgres round trip per request for the same few models was a third of that. A version
 * registered through this process is seen at once (see forgetModel); through another replica,
 * within this long. Versions never change what they are (only their batching, which the workers
 * read for themselves).
 */
const TRUST_MS = 1_000;

/** Most versions remembered per process; past it the memory starts afresh. */
const MAX_REMEMBERED = 10_000;

type Remembered<T> = { record: T; at: number };

/**
 * One memory per database, shared by every route of the process (so forgetModel reaches them all),
 * with a count of forgets per model: a lookup that started before a forget does not write its
 * (older) answer back after it.
 */
type Memory = { versions: Map<string, Remembered<ModelVersionRecord>>; aliases: Map<string, Remembered<AliasRecord | null>>; forgets: Map<string, number> };
const memories = new WeakMap<Database, Memory>();

function memoryOf(db: Database): Memory {
  let memory = memories.get(db);
  if (!memory) memories.set(db, (memory = { versions: new Map(), aliases: new Map(), forgets: new Map() }));
  return memory;
}

export function createModelResolver(deps: Pick<ApiDeps, "db">): ModelResolver {
  // Requests arriving together for the same model share one lookup.
  const lookups = new SingleFlight<ModelVersionRecord | null>();
  const { versions, forgets } = memoryOf(deps.db);
  return async (tenantId, name, version) => {
    const model = `${tenantId}|${name}`;
    const key = `${model}|${version ?? ""}`;
    const remembered = versions.get(key);
    if (remembered && performance.now() - remembered.at < TRUST_MS) return remembered.record;
    const forgot = forgets.get(model) ?? 0;
    // Keyed by the forgets too: a request after a forget never joins a lookup from before it.
    const modelVersion = await lookups.run(`${key}|${forgot}`, () => resolveModelVersion(deps.db, tenantId, name, version));
    if (!modelVersion) throw version === undefined ? noSuchModel(name) : new ApiError("not_found", `model '${name}' has no version ${version}`);
    if ((forgets.get(model) ?? 0) !== forgot) return modelVersion;
    if (versions.size >= MAX_REMEMBERED) versions.clear();
    versions.set(key, { record: modelVersion, at: performance.now() });
    return modelVersion;
  };
}

/** The 404 for a model name the tenant has not registered, saying how to register it. */
export function noSuchModel(name: string): ApiError {
  return new ApiError("not_found", `no model named '${name}'; register one (coalesce models push ${name} FILE.onnx, or POST /v1/models/${name}/versions)`);
}

/**
 * Forgets what this process remembers of a model's versions and aliases: a version was just
 * registered or deleted, or an alias changed.
 */
export function forgetModel(deps: Pick<ApiDeps, "db">, tenantId: string, name: string): void {
  const { versions, aliases, forgets } = memoryOf(deps.db);
  const model = `${tenantId}|${name}`;
  forgets.set(model, (forgets.get(model) ?? 0) + 1);
  for (const memory of [versions, aliases]) for (const key of memory.keys()) if (key.startsWith(`${model}|`)) memory.delete(key);
}

/** A model as a request names it: `name`, `name@3` (a version) or `name@canary` (an alias). */
export type ModelRef = { name: string; version?: number | undefined; alias?: string | undefined };

/** `name`, `name@3` or `name@canary`, as a job (or a path) names its model; checked by ModelRefSchema first. */
export function parseModelRef(ref: string): ModelRef {
  const at = ref.indexOf("@");
  if (at < 0) return { name: ref };
  const name = ref.slice(0, at);
  const selector = ref.slice(at + 1);
  return /^[0-9]/.test(selector) ? { name, version: Number(selector) } : { name, alias: selector };
}

/** The version a request is routed to, and the alias (with its revision) that chose it, if any. */
export type RoutedModel = { model: ModelVersionRecord; alias: JobAlias | null };

/**
 * Finds the version a request names: a pinned `@3`; an `@alias`, whose split chooses one of its
 * versions (the same one for the same routing key); or a plain name, which means the `production`
 * alias when the model has one, else its latest version. Aliases are remembered like versions
 * (TRUST_MS; a change through this process is seen at once).
 */
export type ModelRouter = (tenantId: string, ref: ModelRef, routingKey?: string) => Promise<RoutedModel>;

export function createModelRouter(deps: Pick<ApiDeps, "db">): ModelRouter {
  const resolveVersion = createModelResolver(deps);
  const lookups = new SingleFlight<AliasRecord | null>();
  const { aliases, forgets } = memoryOf(deps.db);
  const aliasOf = async (tenantId: string, name: string, alias: string): Promise<AliasRecord | null> => {
    const model = `${tenantId}|${name}`;
    const key = `${model}|${alias}`;
    const remembered = aliases.get(key);
    if (remembered && performance.now() - remembered.at < TRUST_MS) return remembered.record;
    const forgot = forgets.get(model) ?? 0;
    const record = await lookups.run(`${key}|${forgot}`, () => findAlias(deps.db, tenantId, name, alias));
    if ((forgets.get(model) ?? 0) !== forgot) return record;
    if (aliases.size >= MAX_REMEMBERED) aliases.clear();
    aliases.set(key, { record, at: performance.now() });
    return record;
  };
  return async (tenantId, ref, routingKey) => {
    if (ref.version !== undefined) return { model: await resolveVersion(tenantId, ref.name, ref.version), alias: null };
    const alias = await aliasOf(tenantId, ref.name, ref.alias ?? DEFAULT_ALIAS);
    if (!alias) {
      if (ref.alias === undefined) return { model: await resolveVersion(tenantId, ref.name), alias: null };
      // Which of the two is missing: the model, or only the alias.
      await resolveVersion(tenantId, ref.name);
      throw new ApiError("not_found", `model '${ref.name}' has no alias '${ref.alias}'; create it with PUT /v1/models/${ref.name}/aliases/${ref.alias}`);
    }
    // Keyed by the model and the alias name (not its id), so a key stays put when the alias is deleted and brought back.
    const route = chooseRoute(alias.routes, `${alias.modelId}|${alias.name}|${routingKey ?? ""}`, routingKey !== undefined);
    return { model: await resolveVersion(tenantId, ref.name, route.version), alias: { id: alias.id, name: alias.name, revision: alias.revision } };
  };
}
