import { AliasComparisonSchema } from "@coalesce/contracts";
import { readAliasFigures } from "@coalesce/db";
import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import type { ApiDeps, AppEnv } from "../../context.ts";
import { notFound, PARAM_ERRORS } from "../responses.ts";
import { AliasParamsSchema } from "./params.ts";
import { presentComparison } from "./present.ts";
import { requireAlias } from "./require-alias.ts";
import { needs } from "../../auth/scopes.ts";

export const aliasComparisonRoute = createRoute({
  method: "get",
  path: "/v1/models/{name}/aliases/{alias}/comparison",
  operationId: "getAliasComparison",
  security: needs("models:read"),
  tags: ["Aliases"],
  summary: "How an alias's versions compare",
  description:
    "Since the alias last changed (its `revision`): per version, the rows it scored for the alias (as a route or as the shadow), their " +
    "error rate and mean run time; per pair of versions that scored the same rows (the shadow beside the version that answered, or " +
    "with a guarded canary the stable version beside the candidate), the rows compared, the share that agree on the label or argmax, " +
    "and the mean and largest absolute difference of each numeric output. Workers add their counts every second or so. The same " +
    "figures are Prometheus metrics on the workers (coalesce_shadow_*).",
  request: { params: AliasParamsSchema },
  responses: {
    ...PARAM_ERRORS,
    ...notFound("model or alias"),
    200: { description: "The figures", content: { "application/json": { schema: AliasComparisonSchema } } },
  },
});

export function registerAliasComparison(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  app.openapi(aliasComparisonRoute, async (c) => {
    const { name, alias } = c.req.valid("param");
    const record = await requireAlias(deps, c.get("tenantId"), name, alias);
    return c.json(presentComparison(record, await readAliasFigures(deps.db, record.id, record.revision)), 200);
  });
}
