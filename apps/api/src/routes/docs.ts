import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";
import { AliasRolledBackEventBodySchema, TensorRowSchema, WEBHOOK_EVENT_TYPES, WebhookEventBodySchema } from "@coalesce/contracts";
import { z, type OpenAPIHono } from "@hono/zod-openapi";
import type { AppEnv } from "../context.ts";
import { ApiError } from "../errors.ts";

// Swagger UI is served from the installed swagger-ui-dist package: no CDN, so /docs works offline.
const SWAGGER_DIR = path.dirname(createRequire(import.meta.url).resolve("swagger-ui-dist/package.json"));
const ASSETS: Record<string, string> = {
  "swagger-ui.css": "text/css; charset=utf-8",
  "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
  "favicon-32x32.png": "image/png",
};

const PAGE = `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Coalesce API</title>
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
  <link rel="icon" href="/docs/assets/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script>window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui" });</script>
</body>
</html>`;

export function registerDocs(app: OpenAPIHono<AppEnv>): void {
  app.doc31("/openapi.json", {
    openapi: "3.1.0",
    info: {
      title: "Coalesce API",
      version: "1.0.0",
      description:
        "Batch and real-time prediction for ONNX models. Register a model, then submit rows as a job (poll it, read the " +
        "results) or predict them now. Authenticate with `Authorization: Bearer <key>`. Every /v1 error is " +
        "`application/problem+json` (RFC 9457) with a stable `code` and the `request_id` to quote; a 422 lists each bad " +
        "field in `errors`. A 503 means a dependency (Postgres, Redis, the workers) cannot serve and nothing was done: " +
        "retry after its `Retry-After`. The /v2 routes are the Open Inference Protocol (KServe V2) and answer errors " +
        "in its form, `{\"error\": \"...\"}`.",
    },
    // Relative: the document is served by the API it describes, wherever that is deployed (behind a proxy too).
    servers: [{ url: "/", description: "The server this document was fetched from" }],
    // Every /v1 route; the health routes clear it with `security: []`.
    security: [{ bearerAuth: [] }],
  });
  // Rows are checked by a loop, not a schema per row (see tensorRowList); the document still types them.
  app.openAPIRegistry.register("TensorRow", TensorRowSchema);
  app.openAPIRegistry.registerComponent("securitySchemes", "bearerAuth", {
    type: "http",
    scheme: "bearer",
    description: "An API key (`npm run keys:create -- --name NAME`) as `Authorization: Bearer <key>`.",
  });
  // What Coalesce sends to webhook endpoints (OpenAPI 3.1 `webhooks`), one entry per event type.
  for (const type of WEBHOOK_EVENT_TYPES) {
    app.openAPIRegistry.registerWebhook({
      method: "post",
      path: type,
      tags: ["Webhooks"],
      summary: `${type} (sent to your endpoint)`,
      description:
        "A Standard Webhooks v1 delivery. Verify `webhook-signature` (`v1,<base64 HMAC-SHA256 of id.timestamp.body>`) with " +
        "the endpoint's secret; de-duplicate on `webhook-id`, which every retry of the event repeats. Answer 2xx within 10 s; " +
        "410 disables the endpoint.",
      request: {
        headers: z.object({
          "webhook-id": z.string().openapi({ example: "msg_41f82f2716f04c00b45bc28f4b69fe99" }),
          "webhook-timestamp": z.string().openapi({ description: "Unix seconds of this attempt", example: "1764075000" }),
          "webhook-signature": z.string().openapi({ example: "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=" }),
        }),
        body: { content: { "application/json": { schema: type === "model.alias.rolled_back" ? AliasRolledBackEventBodySchema : WebhookEventBodySchema } } },
      },
      responses: { 200: { description: "Received (any 2xx)" }, 410: { description: "Gone: stop sending (disables the endpoint)" } },
    });
  }
  app.get("/docs", (c) => c.html(PAGE));
  app.get("/docs/assets/:file", async (c) => {
    const file = c.req.param("file");
    const type = ASSETS[file];
    if (!type) throw new ApiError("not_found", `no asset '${file}'`);
    const body = await readFile(path.join(SWAGGER_DIR, file));
    return c.body(body, 200, { "Content-Type": type, "Cache-Control": "public, max-age=86400" });
  });
}
