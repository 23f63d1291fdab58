import { CreateModelVersionQuerySchema, ModelNameSchema, ModelVersionSchema } from "@coalesce/contracts";
import { createModelVersion, updateModelVersionBatching } from "@coalesce/db";
import { InvalidModelError, inspectModel } from "@coalesce/models";
import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import type { ApiDeps, AppEnv } from "../../context.ts";
import { ApiError } from "../../errors.ts";
import { forgetModel } from "../model-resolver.ts";
import { limitBody } from "../../middleware/body-limit.ts";
import { PARAM_ERRORS, problem } from "../responses.ts";
import { presentModelVersion } from "./present.ts";

export const createModelVersionRoute = createRoute({
  method: "post",
  path: "/v1/models/{name}/versions",
  operationId: "createModelVersion",
  tags: ["Models"],
  summary: "Register a model version",
  description:
    "Upload an ONNX file as the next version of the named model (1, 2, 3, ...). The file is loaded in " +
    "onnxruntime to check it and to read its input and output signature. Uploading the same bytes as the " +
    "latest version again returns that version with status 200 (with any limits given applied to it).\n\n" +
    "`max_batch_rows`, `max_batch_delay_ms` and `max_batch_bytes` set this version's batching limits (the workers' " +
    "defaults otherwise); PATCH /v1/models/{name}/versions/{version} changes them later.",
  request: {
    params: z.object({ name: ModelNameSchema }),
    query: CreateModelVersionQuerySchema,
    body: {
      required: true,
      content: { "application/octet-stream": { schema: z.string().openapi({ type: "string", format: "binary" }) } },
    },
  },
  responses: {
    ...PARAM_ERRORS,
    201: { description: "The new version", content: { "application/json": { schema: ModelVersionSchema } } },
    200: { description: "The latest version had these exact bytes", content: { "application/json": { schema: ModelVersionSchema } } },
    413: problem("The file is larger than MAX_MODEL_BYTES (`code: payload_too_large`)"),
    415: problem("The body is not application/octet-stream (`code: unsupported_media_type`)"),
    422: problem(
      "The file is empty or not a loadable ONNX model, a batch dimension is missing (`code: invalid_model`), or the name or a " +
        "query parameter is malformed (`code: validation_failed`)",
    ),
  },
});

export function registerCreateModelVersion(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  app.use(createModelVersionRoute.getRoutingPath(), limitBody(deps.limits.maxModelBytes, "the model file"));
  app.openapi(createModelVersionRoute, async (c) => {
    const { name } = c.req.valid("param");
    const limits = c.req.valid("query");
    const contentType = c.req.header("content-type")?.split(";")[0]?.trim().toLowerCase();
    if (contentType !== "application/octet-stream") {
      throw new ApiError(
        "unsupported_media_type",
        "send the .onnx file as the raw body with Content-Type: application/octet-stream",
      );
    }
    const bytes = new Uint8Array(await c.req.arrayBuffer());
    if (bytes.byteLength === 0) {
      throw new ApiError("invalid_model", "the body is empty; send the .onnx file's bytes");
    }
    let signature;
    try {
      signature = await inspectModel(bytes);
    } catch (error) {
      if (error instanceof InvalidModelError) throw new ApiError("invalid_model", error.message);
      throw error;
    }
    const stored = await deps.modelStore.put(bytes);
    const given = { maxBatchRows: limits.max_batch_rows, maxBatchDelayMs: limits.max_batch_delay_ms, maxBatchBytes: limits.max_batch_bytes };
    const { version, created } = await createModelVersion(deps.db.prisma, {
      tenantId: c.get("tenantId"),
      name,
      sha256: stored.sha256,
      sizeBytes: stored.sizeBytes,
      inputs: signature.inputs,
      outputs: signature.outputs,
      batching: given,
    });
    // The same bytes again: the existing version, with any limits given now applied to it.
    const relimited =
      !created && Object.values(given).some((value) => value !== undefined)
        ? await updateModelVersionBatching(deps.db, c.get("tenantId"), name, version.version, given)
        : null;
    c.get("logger").info({ model: name, version: version.version, sha256: stored.sha256, created }, "model version registered");
    if (created) forgetModel(deps, c.get("tenantId"), name);
    return c.json(presentModelVersion(relimited ?? version), created ? 201 : 200);
  });
}
