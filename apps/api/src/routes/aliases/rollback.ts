import { AliasSchema } from "@coalesce/contracts";
import { rollbackAlias } from "@coalesce/db";
import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import type { ApiDeps, AppEnv } from "../../context.ts";
import { ApiError, validationError } from "../../errors.ts";
import { forgetModel } from "../model-resolver.ts";
import { notFound, PARAM_ERRORS, problem } from "../responses.ts";
import { AliasParamsSchema } from "./params.ts";
import { presentAlias } from "./present.ts";
import { noSuchAlias } from "./require-alias.ts";
import { needs } from "../../auth/scopes.ts";
import { audit } from "../audit/record.ts";

export const rollbackAliasRoute = createRoute({
  method: "post",
  path: "/v1/models/{name}/aliases/{alias}/rollback",
  operationId: "rollbackAlias",
  security: needs("models:write"),
  tags: ["Aliases"],
  summary: "Roll an alias back",
  description:
    "Puts back the routing from before the alias's newest change not rolled back yet, atomically: each rollback steps one change " +
    "further back through the history (after a DELETE, it brings the alias back). Recorded in the history as `rollback`.",
  request: { params: AliasParamsSchema },
  responses: {
    ...PARAM_ERRORS,
    ...notFound("model or alias"),
    200: { description: "The alias as it is now", content: { "application/json": { schema: AliasSchema } } },
    409: problem("There is no earlier routing: the alias was created with its first one, or every change was rolled back (`code: conflict`)"),
  },
});

export function registerRollbackAlias(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  app.openapi(rollbackAliasRoute, async (c) => {
    const { name, alias } = c.req.valid("param");
    const tenantId = c.get("tenantId");
    const outcome = await rollbackAlias(deps.db, { tenantId, modelName: name, alias, keyId: c.get("keyId") });
    if (outcome.kind === "no_history") throw await noSuchAlias(deps, tenantId, name, alias);
    if (outcome.kind === "nothing_earlier") throw new ApiError("conflict", `cannot roll '${name}@${alias}' back: ${outcome.reason}`);
    if (outcome.kind === "invalid") throw validationError(outcome.issues.map((issue) => ({ field: `previous routing: ${issue.field}`, message: issue.message })));
    forgetModel(deps, tenantId, name);
    await audit(c, deps, "alias.rolled_back", `${name}@${alias}`, { revision: outcome.alias.revision, routing: outcome.to });
    c.get("logger").info({ model: name, alias, revision: outcome.alias.revision, routing: outcome.to }, "alias rolled back");
    return c.json(presentAlias(outcome.alias), 200);
  });
}
