import { ModelNameSchema } from "@coalesce/contracts";
import { deleteModelVersion, removeUnusedModelFile } from "@coalesce/db";
import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import type { ApiDeps, AppEnv } from "../../context.ts";
import { ApiError } from "../../errors.ts";
import { forgetModel } from "../model-resolver.ts";
import { notFound, PARAM_ERRORS, problem } from "../responses.ts";
import { needs } from "../../auth/scopes.ts";
import { audit } from "../audit/record.ts";

export const deleteModelVersionRoute = createRoute({
  method: "delete",
  path: "/v1/models/{name}/versions/{version}",
  operationId: "deleteModelVersion",
  security: needs("models:write"),
  tags: ["Models"],
  summary: "Delete a model version",
  description:
    "Removes a version: it no longer resolves (`name@N` is a 404, a plain name means the latest remaining version) and its number " +
    "is never given again. Refused (409, naming it) while an alias routes to it or shadows with it, or an unfinished job runs on " +
    "it. Finished jobs keep their results and still show the version. The model file leaves the store once no version uses it.",
  request: {
    params: z.object({ name: ModelNameSchema, version: z.coerce.number().int().min(1).max(2_147_483_647).openapi({ example: 1 }) }),
  },
  responses: {
    ...PARAM_ERRORS,
    ...notFound("model or version"),
    204: { description: "Deleted" },
    409: problem("An alias or an unfinished job still uses the version (`code: conflict`); the message names it"),
  },
});

export function registerDeleteModelVersion(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  app.openapi(deleteModelVersionRoute, async (c) => {
    const { name, version } = c.req.valid("param");
    const tenantId = c.get("tenantId");
    const outcome = await deleteModelVersion(deps.db, tenantId, name, version);
    switch (outcome.kind) {
      case "not_found":
        throw new ApiError("not_found", `model '${name}' has no version ${version}`);
      case "in_use_by_alias":
        throw new ApiError(
          "conflict",
          `version ${version} is in use by the alias '${outcome.alias}'; point it elsewhere (PUT /v1/models/${name}/aliases/${outcome.alias}) or delete it first`,
        );
      case "in_use_by_job":
        throw new ApiError("conflict", `version ${version} is in use by job ${outcome.jobId} (${outcome.status}); wait for it to finish or cancel it first`);
      case "deleted":
        break;
    }
    forgetModel(deps, tenantId, name);
    let fileRemoved = false;
    if (!outcome.fileInUse) {
      // The version is gone either way; a file left behind is only disk, and said so.
      fileRemoved = await removeUnusedModelFile(deps.db, outcome.sha256, () => deps.modelStore.remove(outcome.sha256)).catch((error: unknown) => {
        c.get("logger").warn({ model: name, version, sha256: outcome.sha256, err: error }, "model file could not be removed from the store");
        return false;
      });
    }
    await audit(c, deps, "model_version.deleted", `${name}@${version}`);
    c.get("logger").info({ model: name, version, fileRemoved }, "model version deleted");
    return c.body(null, 204);
  });
}
