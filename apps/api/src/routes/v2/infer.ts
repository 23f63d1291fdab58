import { PREDICT_CACHE_HEADER, ROUTING_KEY_HEADER } from "@coalesce/contracts";
import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import type { Context, MiddlewareHandler, TypedResponse } from "hono";
import type { ApiDeps, AppEnv } from "../../context.ts";
import { ApiError } from "../../errors.ts";
import { limitBody } from "../../middleware/body-limit.ts";
import { rowsFromV2Inputs, selectOutputs, stackOutputs, V2RequestError, writeInferResponse } from "../../predict/v2-tensors.ts";
import { createModelRouter, parseModelRef, type ModelRef } from "../model-resolver.ts";
import { cacheMode } from "../predict/predict.ts";
import { v2Error, V2_MODEL_ERRORS, v2Unavailable } from "./errors.ts";
import { ModelParamsSchema, ModelVersionParamsSchema } from "./params.ts";
import { V2InferRequestSchema, V2InferResponseSchema, type V2InferRequest } from "./schemas.ts";
import { needs } from "../../auth/scopes.ts";

const DESCRIPTION =
  "The Open Inference Protocol's inference request, run by the same engine as POST /v1/models/{name}/predict: each index of the " +
  "inputs' first (batch) dimension is one row, merged with every other caller's rows into the workers' onnxruntime runs, and the " +
  "rows' outputs are stacked back into tensors. `data` may be flat (row-major) or nested exactly as `shape`; INT64 takes JSON " +
  "integers within ±2^53 and decimal strings beyond, and INT64/UINT64 outputs are exact JSON integers. At most PREDICT_MAX_ROWS rows.\n\n" +
  "Each input's `datatype` must be the model's (GET /v2/models/{name}), its shape must fit the model's (-1: any size), and its " +
  "element count must be its shape's product; `outputs` picks outputs by name. Anything else is a 400 naming the input.\n\n" +
  "A row whose inference fails cannot be left out of a tensor, so it fails the whole request: 400 `row i: <message>`, as Triton " +
  "answers a model execution error.\n\n" +
  "Cached as /v1 predict is (`Cache-Control: no-cache` runs the model anyway, `no-store` skips the cache; `Coalesce-Cache: hit` " +
  "when every row came from the cache). No answer within PREDICT_TIMEOUT_MS is a 504; no worker, or a full backlog, a 503 with " +
  "Retry-After. The binary tensor extension (`Inference-Header-Content-Length`, `binary_data` parameters) is not supported: 400.";

const EXAMPLE_REQUEST = {
  id: "42",
  inputs: [{ name: "features", shape: [2, 4], datatype: "FP32", data: [5.1, 3.5, 1.4, 0.2, 6.7, 3.1, 4.7, 1.5] }],
  outputs: [{ name: "probabilities" }],
};

const EXAMPLE_RESPONSE = {
  model_name: "iris",
  model_version: "1",
  id: "42",
  outputs: [{ name: "probabilities", shape: [2, 3], datatype: "FP32", data: [0.98, 0.015, 0.005, 0.01, 0.95, 0.04] }],
};

const responses = {
  ...V2_MODEL_ERRORS,
  200: {
    description: "The requested outputs, one tensor each, the batch as the first dimension",
    headers: z.object({
      [PREDICT_CACHE_HEADER]: z.enum(["hit", "miss"]).openapi({ description: "`hit` when every row was answered from the result cache" }),
    }),
    content: { "application/json": { schema: V2InferResponseSchema, example: EXAMPLE_RESPONSE } },
  },
  400: v2Error(
    "The request does not fit the model (datatype, shape, element count, an unknown or missing input, an unknown output, too many rows), is not valid JSON, uses the binary tensor extension, or a row's inference failed (`row i: ...`)",
  ),
  413: v2Error("The body is larger than MAX_BODY_BYTES"),
  415: v2Error("The body is not application/json"),
  503: v2Unavailable("No worker is running, more than PREDICT_MAX_BACKLOG_ROWS rows are waiting, or Postgres or Redis cannot be reached; retry after Retry-After seconds"),
  504: v2Error("No answer within PREDICT_TIMEOUT_MS: the workers are busy or stalled"),
};

const request = <P extends z.ZodObject>(params: P) => ({
  params,
  headers: z.object({
    "cache-control": z.string().optional().openapi({ description: "`no-cache`: run the model even if the answer is cached; `no-store`: do not use the cache at all", example: "no-cache" }),
  }),
  body: { required: true, content: { "application/json": { schema: V2InferRequestSchema, example: EXAMPLE_REQUEST } } },
});

export const v2InferRoute = createRoute({
  method: "post",
  path: "/v2/models/{name}/infer",
  operationId: "modelInfer",
  security: needs("jobs:write"),
  tags: ["Open Inference Protocol"],
  summary: "Inference (the latest version)",
  description: DESCRIPTION,
  request: request(ModelParamsSchema),
  responses,
});

export const v2InferVersionRoute = createRoute({
  method: "post",
  path: "/v2/models/{name}/versions/{version}/infer",
  operationId: "modelVersionInfer",
  security: needs("jobs:write"),
  tags: ["Open Inference Protocol"],
  summary: "Inference (a given version)",
  description: DESCRIPTION,
  request: request(ModelVersionParamsSchema),
  responses,
});

const BINARY_UNSUPPORTED =
  "the binary tensor extension is not supported; send the tensors as JSON (Content-Type: application/json, data as arrays) without binary_data parameters";

/**
 * Refuses a binary-extension request before its body is read: its JSON header is followed by raw
 * tensor bytes (so the body is not JSON), and without this it would fail as malformed JSON or an
 * unsupported media type, which would not tell the client what to change.
 */
function refuseBinaryExtension(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const type = c.req.header("content-type")?.split(";")[0]?.trim().toLowerCase();
    if (c.req.header("inference-header-content-length") !== undefined || type === "application/octet-stream") {
      throw new ApiError("validation_failed", BINARY_UNSUPPORTED);
    }
    await next();
  };
}

/** The extension's parameters (`binary_data`, `binary_data_size`, `binary_data_output`) anywhere in a JSON request. */
function usesBinaryData(body: V2InferRequest): boolean {
  const parameterSets = [body.parameters, ...body.inputs.map((input) => input.parameters), ...(body.outputs ?? []).map((output) => output.parameters)];
  return parameterSets.some((parameters) => parameters !== undefined && Object.keys(parameters).some((key) => key.startsWith("binary_data")));
}

/** Runs a conversion, its V2RequestError becoming the API's validation error (which /v2 answers as 400). */
function asBadRequest<T>(convert: () => T): T {
  try {
    return convert();
  } catch (error) {
    if (error instanceof V2RequestError) throw new ApiError("validation_failed", error.message);
    throw error;
  }
}

export function registerV2Infer(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  const route = createModelRouter(deps);
  const handle = async (c: Context<AppEnv>, ref: ModelRef, body: V2InferRequest) => {
    if (usesBinaryData(body)) throw new ApiError("validation_failed", BINARY_UNSUPPORTED);
    const tenantId = c.get("tenantId");
    const { model, alias } = await route(tenantId, ref, c.req.header(ROUTING_KEY_HEADER));
    const outputs = asBadRequest(() => selectOutputs(model.outputs, body.outputs));
    const rows = asBadRequest(() => rowsFromV2Inputs(body.inputs, model.inputs, deps.predict.settings.maxRows));
    await deps.rateLimits?.admitRows(c, rows.length);
    const { results, cache } = await deps.predict.predict({ tenantId, model, alias, rows, cache: cacheMode(c.req.header("cache-control")), protocol: "v2" });
    const tensors = asBadRequest(() => stackOutputs(results, outputs));
    const text = writeInferResponse({ model_name: model.modelName, model_version: String(model.version), id: body.id, outputs: tensors });
    // A Response of our own, as the route's typed 200: the JSON text is written by hand (see
    // writeInferResponse) in V2InferResponseSchema's form, and c.json would serialise an object again.
    const response = new Response(text, {
      status: 200,
      headers: { "Content-Type": "application/json", [PREDICT_CACHE_HEADER]: cache, "X-Request-Id": c.get("requestId") },
    });
    return response as unknown as TypedResponse<z.infer<typeof V2InferResponseSchema>, 200, "json">;
  };
  for (const route of [v2InferRoute, v2InferVersionRoute]) {
    app.use(route.getRoutingPath(), refuseBinaryExtension(), limitBody(deps.limits.maxBodyBytes, "the request body"));
  }
  app.openapi(v2InferRoute, (c) => handle(c, parseModelRef(c.req.valid("param").name), c.req.valid("json")));
  app.openapi(v2InferVersionRoute, (c) => {
    const { name, version } = c.req.valid("param");
    return handle(c, { name, version }, c.req.valid("json"));
  });
}
