import { ApiKeyListSchema } from "@coalesce/contracts";
import { listApiKeys } from "@coalesce/db";
import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import { needs } from "../../auth/scopes.ts";
import type { ApiDeps, AppEnv } from "../../context.ts";
import { PARAM_ERRORS } from "../responses.ts";
import { presentApiKey } from "./present.ts";

export const listApiKeysRoute = createRoute({
  method: "get",
  path: "/v1/api-keys",
  operationId: "listApiKeys",
  security: needs("admin"),
  tags: ["API keys"],
  summary: "List the tenant's API keys",
  description: "Newest first; never a secret: the prefix tells keys apart. Revoked keys only with `include_revoked=true`.",
  request: {
    query: z.object({
      include_revoked: z
        .enum(["true", "false"])
        .default("false")
        .transform((value) => value === "true")
        .openapi({ type: "boolean", description: "Also list revoked keys (default false).", example: "false" }),
    }),
  },
  responses: { ...PARAM_ERRORS, 200: { description: "The keys", content: { "application/json": { schema: ApiKeyListSchema } } } },
});

export function registerListApiKeys(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  app.openapi(listApiKeysRoute, async (c) => {
    const { include_revoked: includeRevoked } = c.req.valid("query");
    const keys = await listApiKeys(deps.db.prisma, c.get("tenantId"), { includeRevoked });
    const now = new Date();
    return c.json({ data: keys.map((key) => presentApiKey(key, now)) }, 200);
  });
}
