import { AuditActionSchema, AuditListSchema, type AuditEntry } from "@coalesce/contracts";
import { listAudit, type AuditRecord } from "@coalesce/db";
import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import { needs } from "../../auth/scopes.ts";
import type { ApiDeps, AppEnv } from "../../context.ts";
import { pageLimitSchema } from "../jobs/params.ts";
import { PARAM_ERRORS } from "../responses.ts";

export const listAuditRoute = createRoute({
  method: "get",
  path: "/v1/audit",
  operationId: "listAudit",
  security: needs("admin"),
  tags: ["Audit"],
  summary: "The tenant's audit log",
  description:
    "Who (`actor`: an API key id, or `token:<sub>` for a JWT) created, cancelled or deleted jobs, changed models, aliases, " +
    "webhooks, keys and the tenant's limits, newest first. Pass `next_cursor` back as `cursor` for the next page; `action` " +
    "and `actor` narrow the list. A guard's own rollbacks are in the alias's history (actor `guard`).",
  request: {
    query: z.object({
      cursor: z
        .string()
        .regex(/^[1-9][0-9]{0,17}$/, "expected the next_cursor of a previous page")
        .optional()
        .openapi({ description: "`next_cursor` of the previous page" }),
      limit: pageLimitSchema(50, 500),
      action: AuditActionSchema.optional(),
      actor: z.string().max(300).regex(/^[\x21-\x7e]+$/, "expected a key id or token:<sub>").optional().openapi({ example: "key_01jdq3x8m7k2v9c4n5p6r7s8t9" }),
    }),
  },
  responses: { ...PARAM_ERRORS, 200: { description: "A page of entries", content: { "application/json": { schema: AuditListSchema } } } },
});

function presentAuditEntry(record: AuditRecord): AuditEntry {
  return { id: record.id, at: record.at.toISOString(), actor: record.actor, action: record.action as AuditEntry["action"], resource: record.resource, details: record.details };
}

export function registerListAudit(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  app.openapi(listAuditRoute, async (c) => {
    const { cursor, limit, action, actor } = c.req.valid("query");
    const page = await listAudit(deps.db, c.get("tenantId"), { limit, cursor, action, actor });
    return c.json(AuditListSchema.parse({ data: page.entries.map(presentAuditEntry), next_cursor: page.nextCursor }), 200);
  });
}
