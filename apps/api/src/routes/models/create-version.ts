import { CreateModelVersionQuerySchema, ModelNameSchema, ModelVersionSchema, type ModelSignature } from "@coalesce/contracts";
import { createModelVersion, updateModelVersionBatching } from "@coalesce/db";
import {
  findExternalData,
  InvalidArchiveError,
  InvalidModelError,
  inspectModel,
  MalformedModelError,
  storeModelArchive,
  type ExternalDataRef,
  type StoredModel,
} from "@coalesce/models";
import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import type { ApiDeps, AppEnv } from "../../context.ts";
import { ApiError } from "../../errors.ts";
import { forgetModel } from "../model-resolver.ts";
import { limitBody } from "../../middleware/body-limit.ts";
import { PARAM_ERRORS, problem } from "../responses.ts";
import { presentModelVersion } from "./present.ts";
import { needs } from "../../auth/scopes.ts";
import { audit } from "../audit/record.ts";

const BINARY = { schema: z.string().openapi({ type: "string", format: "binary" }) };
/** Media types of a tar archive, gzip'd or not; which one is told by the body's first bytes. */
const ARCHIVE_TYPES: ReadonlySet<string> = new Set(["application/x-tar", "application/gzip", "application/x-gzip", "application/x-gtar"]);

export const createModelVersionRoute = createRoute({
  method: "post",
  path: "/v1/models/{name}/versions",
  operationId: "createModelVersion",
  security: needs("models:write"),
  tags: ["Models"],
  summary: "Register a model version",
  description:
    "Upload an ONNX file as the next version of the named model (1, 2, 3, ...). The file is loaded in " +
    "onnxruntime to check it and to read its input and output signature. Uploading the same bytes as the " +
    "latest version again returns that version with status 200 (with any limits given applied to it).\n\n" +
    "Send a single .onnx file as `application/octet-stream`. A model that keeps its weights in external data files " +
    "(models over protobuf's 2 GB limit, many PyTorch exports) is sent as one tar archive, `application/x-tar`, or " +
    "gzip'd (`.tar.gz`) as `application/gzip` (`application/x-gtar` and `application/x-gzip` are taken too): exactly " +
    "one .onnx file at the top level of the archive (or of a single folder holding everything) and the data files " +
    "its tensors name, at the paths they name relative to it, nothing else; regular files and folders only, no " +
    "links, no absolute paths or `..`, every path once, at most 10,000 entries, and MAX_MODEL_BYTES for the files " +
    "together unpacked as for the upload itself. For example `tar -czf model.tar.gz model.onnx model.onnx.data`. Its " +
    "`sha256` is over the sorted list of its files' paths and SHA-256s (the .onnx counted as `model.onnx`), so the same " +
    "files again are the same version; `size_bytes` is all the files together. An archive holding only the .onnx file " +
    "is the same version as the file uploaded alone.\n\n" +
    "`max_batch_rows`, `max_batch_delay_ms` and `max_batch_bytes` set this version's batching limits (the workers' " +
    "defaults otherwise); PATCH /v1/models/{name}/versions/{version} changes them later.",
  request: {
    params: z.object({ name: ModelNameSchema }),
    query: CreateModelVersionQuerySchema,
    body: {
      required: true,
      content: { "application/octet-stream": BINARY, "application/x-tar": BINARY, "application/gzip": BINARY },
    },
  },
  responses: {
    ...PARAM_ERRORS,
    201: { description: "The new version", content: { "application/json": { schema: ModelVersionSchema } } },
    200: { description: "The latest version had these exact bytes (or these exact files)", content: { "application/json": { schema: ModelVersionSchema } } },
    413: problem("The file (or archive) is larger than MAX_MODEL_BYTES (`code: payload_too_large`)"),
    415: problem("The body is not application/octet-stream, nor a tar archive's type (`code: unsupported_media_type`)"),
    422: problem(
      "The file is empty or not a loadable ONNX model, a batch dimension is missing, a single file's tensors keep their data in " +
        "other files, or an archive breaks a rule above: `errors[0].field` is `archive[\"<entry>\"]` for the entry at fault " +
        "(`code: invalid_model`); or the name or a query parameter is malformed (`code: validation_failed`)",
    ),
  },
});

export function registerCreateModelVersion(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  app.use(createModelVersionRoute.getRoutingPath(), limitBody(deps.limits.maxModelBytes, "the model file"));
  app.openapi(createModelVersionRoute, async (c) => {
    const { name } = c.req.valid("param");
    const limits = c.req.valid("query");
    const contentType = c.req.header("content-type")?.split(";")[0]?.trim().toLowerCase() ?? "";
    let stored: StoredModel;
    let signature: ModelSignature;
    let bytes: Uint8Array | undefined;
    if (contentType === "application/octet-stream") {
      bytes = new Uint8Array(await c.req.arrayBuffer());
      ({ stored, signature } = await storeModelFile(deps, bytes));
    } else if (ARCHIVE_TYPES.has(contentType)) {
      ({ stored, signature } = await storeArchive(deps, c.req.raw.body));
    } else {
      throw new ApiError(
        "unsupported_media_type",
        "send the .onnx file as the raw body with Content-Type: application/octet-stream, or a tar archive of it and its " +
          "external data files with Content-Type: application/x-tar (application/gzip when gzip'd)",
      );
    }
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
    // A delete of the last version with these bytes may have removed the file between the store
    // and the version's commit (see removeUnusedModelFile); now that the version is committed no
    // removal can start, so the file is put back (an archive's staged copy is gone: upload again).
    if (!(await deps.modelStore.has(stored.sha256))) {
      if (!bytes) throw new ApiError("service_unavailable", "the model's files were removed by a version delete at the same moment; upload the archive again");
      await deps.modelStore.put(bytes);
    }
    // The same bytes again: the existing version, with any limits given now applied to it.
    const relimited =
      !created && Object.values(given).some((value) => value !== undefined)
        ? await updateModelVersionBatching(deps.db, c.get("tenantId"), name, version.version, given)
        : null;
    c.get("logger").info({ model: name, version: version.version, sha256: stored.sha256, created }, "model version registered");
    if (created) forgetModel(deps, c.get("tenantId"), name);
    if (created) await audit(c, deps, "model_version.created", `${name}@${version.version}`, { sha256: stored.sha256 });
    return c.json(presentModelVersion(relimited ?? version), created ? 201 : 200);
  });
}

/** A single .onnx file: checked in onnxruntime from its bytes, then stored. */
async function storeModelFile(deps: ApiDeps, bytes: Uint8Array): Promise<{ stored: StoredModel; signature: ModelSignature }> {
  if (bytes.byteLength === 0) {
    throw new ApiError("invalid_model", "the body is empty; send the .onnx file's bytes");
  }
  // A lone file cannot bring its data files, and onnxruntime looks for them beside the process's
  // working directory when it loads bytes, so such a model is turned away before it is loaded.
  let external: ExternalDataRef[] = [];
  try {
    external = findExternalData(bytes);
  } catch (error) {
    // onnxruntime's verdict below says what is wrong with the file.
    if (!(error instanceof MalformedModelError)) throw error;
  }
  if (external.length > 0) {
    const files = [...new Set(external.map((ref) => `'${ref.location}'`))];
    throw new ApiError(
      "invalid_model",
      `the model keeps tensor data in files beside it (${files.slice(0, 3).join(", ")}${files.length > 3 ? ", ..." : ""}); upload a tar ` +
        "archive of the .onnx file and those files with Content-Type: application/x-tar (application/gzip when gzip'd)",
    );
  }
  let signature;
  try {
    signature = await inspectModel(bytes);
  } catch (error) {
    if (error instanceof InvalidModelError) throw new ApiError("invalid_model", error.message);
    throw error;
  }
  return { stored: await deps.modelStore.put(bytes), signature };
}

/** A tar archive of a model and its data files, streamed to disk as it arrives: unpacked, checked, loaded from its path, stored. */
async function storeArchive(deps: ApiDeps, body: ReadableStream<Uint8Array> | null): Promise<{ stored: StoredModel; signature: ModelSignature }> {
  if (!body) throw new ApiError("invalid_model", "the body is empty; send the tar archive's bytes");
  try {
    return await storeModelArchive(deps.modelStore, body, { maxTotalBytes: deps.limits.maxModelBytes });
  } catch (error) {
    if (error instanceof InvalidArchiveError) {
      const errors = error.entry === undefined ? undefined : [{ field: `archive[${JSON.stringify(error.entry)}]`, message: error.message }];
      throw new ApiError("invalid_model", error.message, errors);
    }
    if (error instanceof InvalidModelError) throw new ApiError("invalid_model", error.message);
    throw error;
  }
}
