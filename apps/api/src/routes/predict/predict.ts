import {
  ModelNameSchema,
  ModelRefSchema,
  PREDICT_CACHE_HEADER,
  PredictRequestSchema,
  PredictResponseSchema,
  ROUTING_KEY_HEADER,
  RoutingKeySchema,
  type ResultRow,
} from "@coalesce/contracts";
import { createRoute, z, type OpenAPIHono, type RouteConfig } from "@hono/zod-openapi";
import type { Context } from "hono";
import type { ApiDeps, AppEnv } from "../../context.ts";
import { validationError } from "../../errors.ts";
import { limitBody } from "../../middleware/body-limit.ts";
import type { CacheMode } from "../../predict/service.ts";
import { createModelRouter, parseModelRef, type ModelRef } from "../model-resolver.ts";
import { JSON_BODY_ERRORS, notFound, problem } from "../responses.ts";
import { assertValidRows } from "../validate-rows.ts";
import { needs } from "../../auth/scopes.ts";

const VersionParamSchema = z.coerce.number().int().min(1).max(2_147_483_647).openapi({ example: 1 });

const DESCRIPTION =
  "Scores rows now and answers with their outputs, for an app that needs the answer inside its own request. " +
  "Rows are in exactly the form a JSON job takes (`inputs`, checked the same way: a row that does not fit the " +
  "model is a 422 naming `inputs[i].field`), at most PREDICT_MAX_ROWS. They are merged with every other caller's rows " +
  "(and with small jobs' rows) into the same onnxruntime runs on the workers; nothing is written to Postgres.\n\n" +
  "The answer has one entry per row, in order, in the shape of a job's results: `outputs`, or that row's own " +
  "`error` (an inference failure), which does not fail the request.\n\n" +
  "Answers are cached in Redis per row for PREDICT_CACHE_TTL_S (keyed by your tenant, the model file's sha256 and " +
  "the exact input values): `Coalesce-Cache: hit` says every row came from the cache. `Cache-Control: no-cache` " +
  "runs the model anyway (and stores the fresh answer), `no-store` neither reads nor writes the cache.\n\n" +
  "Bounded: no answer within PREDICT_TIMEOUT_MS is a 504; no worker running, or more than PREDICT_MAX_BACKLOG_ROWS " +
  "rows waiting, is a 503 at once with Retry-After. For thousands of rows, submit a job instead.";

const responses = {
  ...JSON_BODY_ERRORS,
  ...notFound("model or version"),
  200: {
    description: "Each row's outputs (or its own error)",
    headers: z.object({
      [PREDICT_CACHE_HEADER]: z.enum(["hit", "miss"]).openapi({ description: "`hit` when every row was answered from the result cache" }),
    }),
    content: {
      "application/json": {
        schema: PredictResponseSchema,
        example: { model: { name: "iris", version: 1, alias: null }, outputs: [{ index: 0, outputs: { label: 0, probabilities: [0.98, 0.015, 0.005] } }] },
      },
    },
  },
  503: {
    description:
      "No worker is running, more than PREDICT_MAX_BACKLOG_ROWS rows are waiting, or Postgres or Redis cannot be reached (`code: service_unavailable`). Retry after Retry-After seconds.",
    headers: z.object({ "Retry-After": z.string().openapi({ description: "Seconds to wait before retrying", example: "5" }) }),
    content: JSON_BODY_ERRORS[503].content,
  },
  504: problem("No answer within PREDICT_TIMEOUT_MS: the workers are busy or stalled (`code: timeout`)"),
} satisfies RouteConfig["responses"];

const request = <P extends z.ZodObject>(params: P) => ({
  params,
  headers: z.object({
    "cache-control": z.string().optional().openapi({ description: "`no-cache`: run the model even if the answer is cached; `no-store`: do not use the cache at all", example: "no-cache" }),
    [ROUTING_KEY_HEADER.toLowerCase()]: RoutingKeySchema.optional(),
  }),
  body: {
    required: true,
    content: { "application/json": { schema: PredictRequestSchema, example: { inputs: [{ features: [5.1, 3.5, 1.4, 0.2] }] } } },
  },
});

export const predictRoute = createRoute({
  method: "post",
  path: "/v1/models/{name}/predict",
  operationId: "predict",
  security: needs("jobs:write"),
  tags: ["Predict"],
  summary: "Predict now (an alias, or the latest version)",
  description:
    DESCRIPTION +
    "\n\n`{name}` may name an alias (`iris@canary`) or a version (`iris@3`); a plain name means the model's `production` alias " +
    "when it has one, else its latest version. An alias that splits traffic routes each request by its weights; `Coalesce-Routing-Key` " +
    "sends the same key to the same version every time.",
  request: request(z.object({ name: ModelRefSchema.openapi({ example: "iris@production" }) })),
  responses,
});

export const predictVersionRoute = createRoute({
  method: "post",
  path: "/v1/models/{name}/versions/{version}/predict",
  operationId: "predictVersion",
  security: needs("jobs:write"),
  tags: ["Predict"],
  summary: "Predict now (a given version)",
  description: DESCRIPTION,
  request: request(z.object({ name: ModelNameSchema, version: VersionParamSchema })),
  responses,
});

/** `Cache-Control: no-store` skips the cache, `no-cache` refreshes it, anything else uses it. */
export function cacheMode(header: string | undefined): CacheMode {
  const directives = (header ?? "").toLowerCase().split(",").map((d) => d.trim());
  if (directives.includes("no-store")) return "skip";
  if (directives.includes("no-cache")) return "refresh";
  return "use";
}

export function registerPredict(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  const route = createModelRouter(deps);
  const handle = async (c: Context<AppEnv>, ref: ModelRef, body: { inputs: unknown[] }) => {
    const tenantId = c.get("tenantId");
    const { model, alias } = await route(tenantId, ref, c.req.header(ROUTING_KEY_HEADER));
    const maxRows = deps.predict.settings.maxRows;
    if (body.inputs.length > maxRows) {
      throw validationError([{ field: "inputs", message: `a predict request takes at most ${maxRows} rows (PREDICT_MAX_ROWS), got ${body.inputs.length}; submit a job for more` }]);
    }
    assertValidRows(body.inputs, model.inputs);
    await deps.rateLimits?.admitRows(c, body.inputs.length);
    const { results, cache } = await deps.predict.predict({ tenantId, model, alias, rows: body.inputs, cache: cacheMode(c.req.header("cache-control")), protocol: "v1" });
    const outputs: ResultRow[] = results.map((result, index) => ({ index, ...result }));
    c.header(PREDICT_CACHE_HEADER, cache);
    return c.json({ model: { name: model.modelName, version: model.version, alias: alias?.name ?? null }, outputs }, 200);
  };
  for (const route of [predictRoute, predictVersionRoute]) {
    app.use(route.getRoutingPath(), limitBody(deps.limits.maxBodyBytes, "the request body"));
  }
  app.openapi(predictRoute, (c) => handle(c, parseModelRef(c.req.valid("param").name), c.req.valid("json")));
  app.openapi(predictVersionRoute, (c) => {
    const { name, version } = c.req.valid("param");
    return handle(c, { name, version }, c.req.valid("json"));
  });
}
