import { z } from "@hono/zod-openapi";
import { ScopeSchema } from "./auth.ts";
import { pgText, requestObject } from "./request.ts";

/** The longest overlap a key rotation may ask for, during which the old secret still works: 7 days. */
export const MAX_KEY_OVERLAP_SECONDS = 7 * 24 * 3600;
/** How long the old secret keeps working after a rotation when the request does not say: 24 h. */
export const DEFAULT_KEY_OVERLAP_SECONDS = 86_400;
/** The most requests per second a key may be given (a sanity bound, not a recommendation). */
export const MAX_KEY_RATE_LIMIT_RPS = 1_000_000;

const KeyIdSchema = z.string().openapi({ example: "key_01jdq3x8m7k2v9c4n5p6r7s8t9" });
const TimestampSchema = z.iso.datetime();

const ScopesSchema = z
  .array(ScopeSchema)
  .min(1, "give the key at least one scope")
  .max(16)
  .openapi({
    description:
      "What the key may do: `jobs:write` (submit, cancel, delete jobs; predict), `jobs:read`, `models:write` (register versions, " +
      "change aliases), `models:read`, `webhooks:write`, `admin` (everything, including keys, the tenant's limits and the audit log).",
    example: ["jobs:write", "jobs:read"],
  });

const RateLimitRpsSchema = z
  .number()
  .int()
  .min(0)
  .max(MAX_KEY_RATE_LIMIT_RPS)
  .nullable()
  .openapi({ description: "Requests per second for this key; null: the server's RATE_LIMIT_REQUESTS_PER_SECOND; 0: no limit.", example: 50 });

export const CreateApiKeyRequestSchema = requestObject({
  name: pgText(z.string().min(1, "name the key (who or what uses it)").max(200)).openapi({ example: "nightly-batch" }),
  scopes: ScopesSchema,
  expires_at: TimestampSchema.optional().openapi({
    description: "When the key stops working (RFC 3339, in the future). Default: never.",
    example: "2027-01-01T00:00:00Z",
  }),
  tenant: pgText(z.string().min(1).max(200))
    .optional()
    .openapi({
      description:
        "Platform admins only (an admin key of the PLATFORM_TENANT tenant): the name of the tenant to create the key for, " +
        "created if it does not exist. Any other key is refused (403).",
      example: "acme",
    }),
  rate_limit_rps: RateLimitRpsSchema.optional(),
}).openapi("CreateApiKeyRequest");
export type CreateApiKeyRequest = z.infer<typeof CreateApiKeyRequestSchema>;

/** A key as listed: never its secret nor its hash. */
export const ApiKeySchema = z
  .object({
    id: KeyIdSchema,
    name: z.string(),
    prefix: z.string().openapi({ description: "The secret's first characters, to tell keys apart.", example: "csk_9fQ2" }),
    scopes: z.array(ScopeSchema),
    created_at: TimestampSchema,
    last_used_at: TimestampSchema.nullable().openapi({ description: "Recorded at most once a minute." }),
    expires_at: TimestampSchema.nullable(),
    revoked_at: TimestampSchema.nullable(),
    previous_secret_expires_at: TimestampSchema.nullable().openapi({ description: "After a rotation: until when the previous secret still works." }),
    rate_limit_rps: RateLimitRpsSchema,
  })
  .openapi("ApiKey");
export type ApiKey = z.infer<typeof ApiKeySchema>;

const SecretSchema = z.string().openapi({
  description: "The key itself: send it as `Authorization: Bearer <secret>`. Shown only in this answer; only its hash is stored.",
  example: "csk_9fQ2mUj1yW0h3Qe8Jk3v1sLqfRZb6T0a",
});

export const CreatedApiKeySchema = ApiKeySchema.extend({ secret: SecretSchema }).openapi("CreatedApiKey");
export type CreatedApiKey = z.infer<typeof CreatedApiKeySchema>;

export const ApiKeyListSchema = z.object({ data: z.array(ApiKeySchema) }).openapi("ApiKeyList");
export type ApiKeyList = z.infer<typeof ApiKeyListSchema>;

export const RotateApiKeyRequestSchema = requestObject({
  overlap_seconds: z.number().int().min(0).max(MAX_KEY_OVERLAP_SECONDS).default(DEFAULT_KEY_OVERLAP_SECONDS).openapi({
    description: "How long the previous secret keeps working beside the new one (0: it stops at once). Default 24 h, at most 7 days.",
  }),
}).openapi("RotateApiKeyRequest");
export type RotateApiKeyRequest = z.input<typeof RotateApiKeyRequestSchema>;

/** The columns: rows per minute is an INTEGER, the quota a BIGINT (held to what a double counts exactly). */
const RowsPerMinuteSchema = z.number().int().min(0).max(2_147_483_647).nullable();
const QueuedRowsSchema = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).nullable();

/** A tenant's own limits; null means the server's default (the env setting named). */
export const TenantLimitsSchema = z
  .object({
    rate_limit_rows_per_minute: RowsPerMinuteSchema.openapi({
      description: "Rows per minute over the tenant's submissions; null: RATE_LIMIT_ROWS_PER_MINUTE; 0: no limit.",
      example: 600_000,
    }),
    quota_queued_rows: QueuedRowsSchema.openapi({
      description: "Most unfinished rows the tenant may have queued; null: QUOTA_QUEUED_ROWS; 0: no quota.",
      example: 5_000_000,
    }),
  })
  .openapi("TenantLimits");
export type TenantLimits = z.infer<typeof TenantLimitsSchema>;

export const TenantSchema = z
  .object({
    id: z.string().openapi({ example: "ten_01jdq3x8m7k2v9c4n5p6r7s8t9" }),
    name: z.string().openapi({ example: "acme" }),
    limits: TenantLimitsSchema,
  })
  .openapi("Tenant");
export type Tenant = z.infer<typeof TenantSchema>;

/** PATCH /v1/tenant: the limits to change; a field left out stays as it is, null returns it to the default. */
export const UpdateTenantRequestSchema = requestObject({
  rate_limit_rows_per_minute: RowsPerMinuteSchema.optional(),
  quota_queued_rows: QueuedRowsSchema.optional(),
}).openapi("UpdateTenantRequest");
export type UpdateTenantRequest = z.infer<typeof UpdateTenantRequestSchema>;

/** What the audit log records. */
export const AUDIT_ACTIONS = [
  "job.created",
  "job.cancelled",
  "job.deleted",
  "model_version.created",
  "model_version.updated",
  "model_version.deleted",
  "alias.set",
  "alias.deleted",
  "alias.rolled_back",
  "webhook.created",
  "webhook.deleted",
  "api_key.created",
  "api_key.revoked",
  "api_key.rotated",
  "tenant.limits_updated",
  "queue_admin.changed",
] as const;
export const AuditActionSchema = z.enum(AUDIT_ACTIONS).openapi({ example: "job.created" });
export type AuditAction = z.infer<typeof AuditActionSchema>;

export const AuditEntrySchema = z
  .object({
    id: z.string().openapi({ example: "1042" }),
    at: TimestampSchema,
    actor: z.string().openapi({ description: "Who: an API key id, or `token:<sub>` for a JWT.", example: "key_01jdq3x8m7k2v9c4n5p6r7s8t9" }),
    action: AuditActionSchema,
    resource: z.string().openapi({ description: "What: the id or name acted on.", example: "job_01jdq3x8m7k2v9c4n5p6r7s8t9" }),
    details: z.record(z.string(), z.unknown()).nullable(),
  })
  .openapi("AuditEntry");
export type AuditEntry = z.infer<typeof AuditEntrySchema>;

export const AuditListSchema = z
  .object({
    data: z.array(AuditEntrySchema),
    next_cursor: z.string().nullable().openapi({ description: "Pass as `cursor` for the next (older) page; null on the last page." }),
  })
  .openapi("AuditList");
export type AuditList = z.infer<typeof AuditListSchema>;

const DURATION_UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 };

/**
 * `30d`, `12h`, `90m`, `45s`, `2w` or plain seconds, as the CLIs take `--expires-in` and `--overlap`;
 * undefined when it is none of these.
 */
export function parseDurationSeconds(text: string): number | undefined {
  const match = /^(\d{1,9})([smhdw]?)$/.exec(text.trim());
  if (!match?.[1]) return undefined;
  return Number(match[1]) * (DURATION_UNITS[match[2] || "s"] ?? 1);
}
