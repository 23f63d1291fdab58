import { AliasSchema, PutAliasRequestSchema, type AliasRouting } from "@coalesce/contracts";
import { putAlias } from "@coalesce/db";
import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import type { ApiDeps, AppEnv } from "../../context.ts";
import { validationError } from "../../errors.ts";
import { limitBody } from "../../middleware/body-limit.ts";
import { forgetModel, noSuchModel } from "../model-resolver.ts";
import { JSON_BODY_ERRORS, notFound } from "../responses.ts";
import { AliasParamsSchema } from "./params.ts";
import { presentAlias } from "./present.ts";
import { needs } from "../../auth/scopes.ts";
import { audit } from "../audit/record.ts";

export const putAliasRoute = createRoute({
  method: "put",
  path: "/v1/models/{name}/aliases/{alias}",
  operationId: "putAlias",
  security: needs("models:write"),
  tags: ["Aliases"],
  summary: "Point an alias at versions",
  description:
    "Creates or changes an alias: `{\"version\": 3}` sends all its traffic to version 3; `{\"routes\": [{\"version\": 2, \"weight\": 90}, " +
    "{\"version\": 3, \"weight\": 10}]}` splits it (whole percentages summing to 100; the first route is the stable version, the others " +
    "candidates). A job is routed whole to one version, a predict request per request; a `routing_key` (jobs) or `Coalesce-Routing-Key` " +
    "header (predict) makes the choice the same for the same key.\n\n" +
    "`shadow: {version, sample}` also scores that share of the alias's rows on another version, off the caller's path (never returned, " +
    "never delaying or failing a row), and compares the answers (GET .../comparison). `guard: {max_error_rate, min_agreement, min_rows}` " +
    "rolls a candidate back by itself when it crosses a limit over at least `min_rows` rows (the history says why, and a " +
    "`model.alias.rolled_back` webhook event is sent). A promote is a PUT with the new routing; every change is kept in the history.\n\n" +
    "Every version named must exist and have the same input/output signature (a 422 names the one that does not). A plain model name " +
    "(jobs' `model: \"iris\"`, `/v1/models/iris/predict`) means the `production` alias when it exists.",
  request: {
    params: AliasParamsSchema,
    body: {
      required: true,
      content: {
        "application/json": {
          schema: PutAliasRequestSchema,
          example: { routes: [{ version: 2, weight: 90 }, { version: 3, weight: 10 }], guard: { max_error_rate: 0.01, min_agreement: 0.98, min_rows: 1000 } },
        },
      },
    },
  },
  responses: {
    ...JSON_BODY_ERRORS,
    ...notFound("model"),
    200: { description: "The alias, changed", content: { "application/json": { schema: AliasSchema } } },
    201: { description: "The alias, created", content: { "application/json": { schema: AliasSchema } } },
  },
});

export function registerPutAlias(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  app.use(putAliasRoute.getRoutingPath(), limitBody(deps.limits.maxBodyBytes, "the request body"));
  app.openapi(putAliasRoute, async (c) => {
    const { name, alias } = c.req.valid("param");
    const body = c.req.valid("json");
    const routing: AliasRouting = {
      routes: body.routes ?? [{ version: body.version!, weight: 100 }],
      shadow: body.shadow ?? null,
      guard: body.guard ?? null,
    };
    const tenantId = c.get("tenantId");
    const change = await putAlias(deps.db, { tenantId, modelName: name, alias, routing, keyId: c.get("keyId") });
    if (change.kind === "no_model") throw noSuchModel(name);
    if (change.kind === "invalid") {
      // `{"version": 9}` is stored as one route: name the field the caller sent, not the route it became.
      const issues = body.version === undefined ? change.issues : change.issues.map((issue) => (issue.field === "routes[0].version" ? { ...issue, field: "version" } : issue));
      throw validationError(issues);
    }
    forgetModel(deps, tenantId, name);
    await audit(c, deps, "alias.set", `${name}@${alias}`, { revision: change.alias.revision, routing });
    c.get("logger").info({ model: name, alias, revision: change.alias.revision, routing }, "alias set");
    return c.json(presentAlias(change.alias), change.created ? 201 : 200);
  });
}
