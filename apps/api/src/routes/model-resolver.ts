import { resolveModelVersion, SingleFlight, type Database, type ModelVersionRecord } from "@coalesce/db";
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

type Remembered = { record: ModelVersionRecord; at: number };

/**
 * One memory per database, shared by every route of the process (so forgetModel reaches them all),
 * with a count of forgets per model: a lookup that started before a forget does not write its
 * (older) answer back after it.
 */
type Memory = { versions: Map<string, Remembered>; forgets: Map<string, number> };
const memories = new WeakMap<Database, Memory>();

function memoryOf(db: Database): Memory {
  let memory = memories.get(db);
  if (!memory) memories.set(db, (memory = { versions: new Map(), forgets: new Map() }));
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

/** Forgets what this process remembers of a model's versions: a new one was just registered. */
export function forgetModel(deps: Pick<ApiDeps, "db">, tenantId: string, name: string): void {
  const { versions, forgets } = memoryOf(deps.db);
  const model = `${tenantId}|${name}`;
  forgets.set(model, (forgets.get(model) ?? 0) + 1);
  for (const key of versions.keys()) if (key.startsWith(`${model}|`)) versions.delete(key);
}

/** `name` or `name@3`, as a job names its model. */
export function parseModelRef(ref: string): { name: string; version: number | undefined } {
  const [name = "", versionText] = ref.split("@");
  return { name, version: versionText ? Number(versionText) : undefined };
}
