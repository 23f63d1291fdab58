import { WebhookEndpointSchema, WebhookDeliverySchema, type WebhookDelivery, type WebhookEndpoint } from "@coalesce/contracts";
import { previousSecretSignsUntil, type DeliveryRecord, type WebhookEndpointRecord } from "@coalesce/db";

export function presentWebhook(record: WebhookEndpointRecord, now = new Date()): WebhookEndpoint {
  return WebhookEndpointSchema.parse({
    id: record.id,
    url: record.url,
    events: record.events,
    description: record.description,
    enabled: record.disabledAt === null,
    disabled_reason: record.disabledReason,
    previous_secret_expires_at: previousSecretSignsUntil(record, now)?.toISOString() ?? null,
    created_at: record.createdAt.toISOString(),
    updated_at: record.updatedAt.toISOString(),
  });
}

export function presentDelivery(record: DeliveryRecord): WebhookDelivery {
  return WebhookDeliverySchema.parse({
    id: record.id,
    event_id: record.eventId,
    event_type: record.eventType,
    endpoint_id: record.endpointId,
    url: record.url,
    state: record.state,
    next_attempt_at: record.state === "pending" ? record.nextAttemptAt.toISOString() : null,
    attempts: record.attempts.map((a) => ({
      attempt: a.attempt,
      started_at: a.startedAt.toISOString(),
      duration_ms: a.durationMs,
      outcome: a.outcome,
      status_code: a.statusCode,
      error: a.error,
    })),
    created_at: record.createdAt.toISOString(),
  });
}
