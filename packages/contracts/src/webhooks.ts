import { z } from "@hono/zod-openapi";
import { AliasGuardReasonSchema, AliasRoutingSchema } from "./aliases.ts";
import { JobSchema } from "./jobs.ts";
import { pgText, requestObject } from "./request.ts";

/** The events a webhook endpoint can subscribe to; job.progress is opt-in. */
export const WEBHOOK_EVENT_TYPES = ["job.succeeded", "job.failed", "job.cancelled", "job.expired", "job.progress", "model.alias.rolled_back"] as const;
export const WebhookEventTypeSchema = z.enum(WEBHOOK_EVENT_TYPES);
export type WebhookEventType = z.infer<typeof WebhookEventTypeSchema>;
/** What an endpoint receives when `events` is left out: every final state, no progress. */
export const DEFAULT_WEBHOOK_EVENTS: readonly WebhookEventType[] = ["job.succeeded", "job.failed", "job.cancelled", "job.expired", "model.alias.rolled_back"];

/** The longest overlap a rotation may ask for, during which the old secret still signs: 7 days. */
export const MAX_SECRET_OVERLAP_SECONDS = 7 * 24 * 3600;

const EventsSchema = z
  .array(WebhookEventTypeSchema)
  .min(1, "subscribe to at least one event type")
  .openapi({
    description:
      "Event types to receive. `job.progress` (at most one every 5 seconds per running job) is opt-in. `model.alias.rolled_back`: an " +
      "alias's guard (or a person) rolled it back; its data is {model, alias, revision, reason, before, after}.",
    example: ["job.succeeded", "job.failed"],
  });

export const CreateWebhookRequestSchema = requestObject({
  url: pgText(z.string().max(2048)).openapi({ example: "https://example.com/hooks/coalesce" }),
  events: EventsSchema.optional().openapi({ description: "Default: job.succeeded, job.failed, job.cancelled, job.expired, model.alias.rolled_back." }),
  description: pgText(z.string().max(500)).optional(),
}).openapi("CreateWebhookRequest");
export type CreateWebhookRequest = z.infer<typeof CreateWebhookRequestSchema>;

export const UpdateWebhookRequestSchema = requestObject({
  url: pgText(z.string().max(2048)).optional(),
  events: EventsSchema.optional(),
  description: pgText(z.string().max(500)).nullable().optional(),
  enabled: z.boolean().optional().openapi({ description: "false pauses deliveries; true re-enables an endpoint (also one disabled by a 410)." }),
}).openapi("UpdateWebhookRequest");
export type UpdateWebhookRequest = z.infer<typeof UpdateWebhookRequestSchema>;

export const WebhookEndpointSchema = z
  .object({
    id: z.string().openapi({ example: "wh_01jdq3x8m7k2v9c4n5p6r7s8t9" }),
    url: z.string(),
    events: z.array(WebhookEventTypeSchema),
    description: z.string().nullable(),
    enabled: z.boolean(),
    disabled_reason: z.string().nullable().openapi({ description: "Why deliveries stopped, e.g. the receiver answered 410 Gone." }),
    previous_secret_expires_at: z.iso
      .datetime()
      .nullable()
      .openapi({ description: "During a secret rotation: until when deliveries also carry a signature by the previous secret." }),
    created_at: z.iso.datetime(),
    updated_at: z.iso.datetime(),
  })
  .openapi("WebhookEndpoint");
export type WebhookEndpoint = z.infer<typeof WebhookEndpointSchema>;

const SecretSchema = z.string().openapi({
  description: "Standard Webhooks signing secret: verify each delivery's webhook-signature with it. Shown only here.",
  example: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
});

export const CreatedWebhookSchema = WebhookEndpointSchema.extend({ secret: SecretSchema }).openapi("CreatedWebhook");
export type CreatedWebhook = z.infer<typeof CreatedWebhookSchema>;

export const WebhookListSchema = z.object({ data: z.array(WebhookEndpointSchema) }).openapi("WebhookList");
export type WebhookList = z.infer<typeof WebhookListSchema>;

export const RotateSecretRequestSchema = requestObject({
  overlap_seconds: z.number().int().min(0).max(MAX_SECRET_OVERLAP_SECONDS).default(86_400).openapi({
    description: "How long the previous secret keeps signing beside the new one (both signatures are sent). Default 24 h.",
  }),
}).openapi("RotateSecretRequest");

export const WebhookSecretSchema = z
  .object({
    secret: SecretSchema,
    previous_secret_expires_at: z.iso.datetime().nullable(),
  })
  .openapi("WebhookSecret");
export type WebhookSecret = z.infer<typeof WebhookSecretSchema>;

export const WEBHOOK_DELIVERY_STATES = ["pending", "succeeded", "failed"] as const;

export const WebhookAttemptSchema = z
  .object({
    attempt: z.number().int(),
    started_at: z.iso.datetime(),
    duration_ms: z.number().int(),
    outcome: z.enum(["delivered", "failed", "gone", "refused"]),
    status_code: z.number().int().nullable(),
    error: z.string().nullable(),
  })
  .openapi("WebhookAttempt");

export const WebhookDeliverySchema = z
  .object({
    id: z.string().openapi({ example: "dlv_3f2a9c0e5b7d4e1f8a6b2c9d0e7f1a3b" }),
    event_id: z.string().openapi({ description: "The webhook-id header: the same on every attempt of this event." }),
    event_type: WebhookEventTypeSchema,
    endpoint_id: z.string().nullable().openapi({ description: "Null for the job's own webhook_url (or a deleted endpoint)." }),
    url: z.string(),
    state: z.enum(WEBHOOK_DELIVERY_STATES),
    next_attempt_at: z.iso.datetime().nullable(),
    attempts: z.array(WebhookAttemptSchema),
    created_at: z.iso.datetime(),
  })
  .openapi("WebhookDelivery");
export type WebhookDelivery = z.infer<typeof WebhookDeliverySchema>;

export const WebhookDeliveryListSchema = z.object({ data: z.array(WebhookDeliverySchema) }).openapi("WebhookDeliveryList");
export type WebhookDeliveryList = z.infer<typeof WebhookDeliveryListSchema>;

/** The body of every delivery (documentation: the API never receives it). */
export const WebhookEventBodySchema = z
  .object({
    type: WebhookEventTypeSchema,
    timestamp: z.iso.datetime().openapi({ description: "When the event happened." }),
    data: JobSchema,
  })
  .openapi("WebhookEventBody");
export type WebhookEventBody = z.infer<typeof WebhookEventBodySchema>;

/** The data of `model.alias.rolled_back`: which alias, what it was and became, and why. */
export const AliasRolledBackDataSchema = z
  .object({
    model: z.string().openapi({ example: "iris" }),
    alias: z.string().openapi({ example: "production" }),
    revision: z.number().int().openapi({ description: "The alias's revision after the rollback." }),
    trigger: z.enum(["guard", "manual"]).openapi({ description: "`guard`: the alias's guard saw a candidate cross a limit; `manual`: POST .../rollback." }),
    reason: AliasGuardReasonSchema.nullable().openapi({ description: "For the guard: which figure of which version crossed which limit, over how many rows." }),
    before: AliasRoutingSchema.nullable(),
    after: AliasRoutingSchema,
  })
  .openapi("AliasRolledBackData");
export type AliasRolledBackData = z.infer<typeof AliasRolledBackDataSchema>;

export const AliasRolledBackEventBodySchema = z
  .object({
    type: z.literal("model.alias.rolled_back"),
    timestamp: z.iso.datetime().openapi({ description: "When the rollback happened." }),
    data: AliasRolledBackDataSchema,
  })
  .openapi("AliasRolledBackEventBody");
