import { findModel } from "@coalesce/db";
import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import type { Context } from "hono";
import type { ApiDeps, AppEnv } from "../../context.ts";
import { ApiError } from "../../errors.ts";
import { createModelRouter, noSuchModel, parseModelRef, type ModelRef } from "../model-resolver.ts";
import { toV2TensorMetadata } from "../../predict/v2-tensors.ts";
import { V2_MODEL_ERRORS } from "./errors.ts";
import { ModelParamsSchema, ModelVersionParamsSchema } from "./params.ts";
import { V2ModelMetadataSchema } from "./schemas.ts";
import { needs } from "../../auth/scopes.ts";

const DESCRIPTION =
  "The model's inputs and outputs as the protocol describes tensors: datatype (FP32, INT64, BOOL, BYTES for strings, ...) and shape, " +
  "-1 for the batch dimension and for every dimension of any size. `versions` lists every version; the inputs and outputs are the " +
  "latest version's, or the named one's.";

const responses = {
  ...V2_MODEL_ERRORS,
  200: {
    description: "The model's metadata",
    content: {
      "application/json": {
        schema: V2ModelMetadataSchema,
        example: {
          name: "iris",
          versions: ["1", "2"],
          platform: "onnxruntime_onnx",
          inputs: [{ name: "features", datatype: "FP32", shape: [-1, 4] }],
          outputs: [
            { name: "label", datatype: "INT64", shape: [-1] },
            { name: "probabilities", datatype: "FP32", shape: [-1, 3] },
          ],
        },
      },
    },
  },
};

export const v2ModelMetadataRoute = createRoute({
  method: "get",
  path: "/v2/models/{name}",
  operationId: "modelMetadata",
  security: needs("models:read"),
  tags: ["Open Inference Protocol"],
  summary: "Model metadata (the latest version)",
  description: DESCRIPTION,
  request: { params: ModelParamsSchema },
  responses,
});

export const v2ModelVersionMetadataRoute = createRoute({
  method: "get",
  path: "/v2/models/{name}/versions/{version}",
  operationId: "modelVersionMetadata",
  security: needs("models:read"),
  tags: ["Open Inference Protocol"],
  summary: "Model metadata (a given version)",
  description: DESCRIPTION,
  request: { params: ModelVersionParamsSchema },
  responses,
});

export function registerV2ModelMetadata(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  const route = createModelRouter(deps);
  const handle = async (c: Context<AppEnv>, ref: ModelRef) => {
    const model = await findModel(deps.db.prisma, c.get("tenantId"), ref.name);
    if (!model || model.versions.length === 0) throw noSuchModel(ref.name);
    const versions = model.versions.map((v) => String(v.version));
    if (ref.version !== undefined && !model.versions.some((v) => v.version === ref.version)) {
      throw new ApiError("not_found", `model '${ref.name}' has no version ${ref.version}; its versions are ${versions.join(", ")}`);
    }
    // Every version an alias routes to has the same signature (checked when it is set).
    const { model: chosen } = await route(c.get("tenantId"), ref);
    return c.json(
      {
        name: model.name,
        versions,
        platform: "onnxruntime_onnx" as const,
        inputs: chosen.inputs.map(toV2TensorMetadata),
        outputs: chosen.outputs.map(toV2TensorMetadata),
      },
      200,
    );
  };
  app.openapi(v2ModelMetadataRoute, (c) => handle(c, parseModelRef(c.req.valid("param").name)));
  app.openapi(v2ModelVersionMetadataRoute, (c) => {
    const { name, version } = c.req.valid("param");
    return handle(c, { name, version });
  });
}
