import { resolveModelVersion, SingleFlight, type ModelVersionRecord } from "@coalesce/db";
import type { ApiDeps } from "../context.ts";
import { ApiError } from "../errors.ts";

/** Finds the model version a request names (its latest version when `version` is left out), or says how to fix the reference. */
export type ModelResolver = (tenantId: string, name: string, version?: number) => Promise<ModelVersionRecord>;

export function createModelResolver(deps: Pick<ApiDeps, "db">): ModelResolver {
  // Requests arriving together for the same model share one lookup (no cache: a new version counts at once).
  const lookups = new SingleFlight<ModelVersionRecord | null>();
  return async (tenantId, name, version) => {
    const modelVersion = await lookups.run(`${tenantId}|${name}|${version ?? ""}`, () => resolveModelVersion(deps.db, tenantId, name, version));
    if (!modelVersion) {
      throw new ApiError(
        "not_found",
        version !== undefined ? `model '${name}' has no version ${version}` : `no model named '${name}'; register it first`,
      );
    }
    return modelVersion;
  };
}

/** `name` or `name@3`, as a job names its model. */
export function parseModelRef(ref: string): { name: string; version: number | undefined } {
  const [name = "", versionText] = ref.split("@");
  return { name, version: versionText ? Number(versionText) : undefined };
}
