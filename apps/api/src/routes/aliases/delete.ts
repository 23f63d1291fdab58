import { deleteAlias } from "@coalesce/db";
import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import type { ApiDeps, AppEnv } from "../../context.ts";
import { forgetModel } from "../model-resolver.ts";
import { notFound, PARAM_ERRORS } from "../responses.ts";
import { AliasParamsSchema } from "./params.ts";
import { noSuchAlias } from "./require-alias.ts";
import { needs } from "../../auth/scopes.ts";
import { audit } from "../audit/record.ts";

export const deleteAliasRoute = createRoute({
  method: "delete",
  path: "/v1/models/{name}/aliases/{alias}",
  operationId: "deleteAlias",
  security: needs("models:write"),
  tags: ["Aliases"],
  summary: "Delete an alias",
  description:
    "Removes the alias: requests naming it are a 404 from now on (a plain model name falls back to the latest version when " +
    "`production` is deleted). Jobs that came through it keep its name. Its history stays, and POST .../rollback brings it back.",
  request: { params: AliasParamsSchema },
  responses: {
    ...PARAM_ERRORS,
    ...notFound("model or alias"),
    204: { description: "Deleted" },
  },
});

export function registerDeleteAlias(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  app.openapi(deleteAliasRoute, async (c) => {
    const { name, alias } = c.req.valid("param");
    const tenantId = c.get("tenantId");
    const removal = await deleteAlias(deps.db, { tenantId, modelName: name, alias, keyId: c.get("keyId") });
    if (removal.kind === "no_alias") throw await noSuchAlias(deps, tenantId, name, alias);
    forgetModel(deps, tenantId, name);
    await audit(c, deps, "alias.deleted", `${name}@${alias}`);
    c.get("logger").info({ model: name, alias }, "alias deleted");
    return c.body(null, 204);
  });
}
