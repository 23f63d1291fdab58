import {
  claimDueDeliveries,
  ensureTenantWebhookSecret,
  findJob,
  fixEventPayload,
  presentJob,
  recordDeliveryAttempt,
  signingSecrets,
  type AttemptRecord,
  type ClaimedDelivery,
  type Database,
} from "@coalesce/db";
import { deliverWebhook, generateSecret, nextAttemptDelayMs, webhookHeaders, type WebhookUrlPolicy } from "@coalesce/webhooks";
import { isTransientError } from "@coalesce/contracts";
import type { Logger } from "pino";
import type { WorkerMetrics } from "../metrics.ts";
import type { Outages } from "../outages.ts";

export type DispatcherOptions = {
  policy: WebhookUrlPolicy;
  /** Delays between attempts, in ms (WEBHOOK_RETRY_SCHEDULE); past its end a delivery fails. */
  schedule: readonly number[];
  /** Per attempt: connect, send and answer. */
  timeoutMs: number;
  /** How often to look for due deliveries when nothing wakes the dispatcher sooner. */
  pollMs: number;
  /** Attempts in flight at once. */
  concurrency: number;
};

export type WebhookDispatcher = {
  /** Look for due deliveries now (a job just finished here). */
  wake(): void;
  /** Stops claiming; waits for the attempts in flight. */
  stop(): Promise<void>;
};

/**
 * Sends the outbox: claims due deliveries (any number of workers side by side, each claim a lease),
 * signs each body with the endpoint's secrets (both during a rotation) and POSTs it through the
 * address policy, then records the attempt and what follows: done, retried on the schedule (or
 * after Retry-After), or given up. The events themselves are written by Postgres triggers in the
 * transaction that changed the job, so a crash anywhere here delays a delivery but never loses one.
 */
export function startWebhookDispatcher(
  db: Database,
  options: DispatcherOptions,
  metrics: WorkerMetrics,
  logger: Logger,
  outages?: Outages,
): WebhookDispatcher {
  // A claim must outlast its attempt, or another worker would send it again meanwhile.
  const leaseSeconds = Math.ceil(options.timeoutMs / 1000) + 30;
  const inFlight = new Set<Promise<void>>();
  let claiming = false;
  let stopped = false;

  const fill = async () => {
    if (claiming || stopped) return;
    claiming = true;
    try {
      while (!stopped && inFlight.size < options.concurrency) {
        const due = await claimDueDeliveries(db, options.concurrency - inFlight.size, leaseSeconds);
        outages?.ok("postgres");
        if (due.length === 0) break;
        for (const delivery of due) {
          const attempt = attemptDelivery(delivery).catch((error: unknown) => {
            // Either way it is sent again when its lease ends.
            if (outages && isTransientError(error)) outages.failed("postgres", error);
            else logger.error({ err: error, deliveryId: delivery.id }, "webhook attempt could not be recorded; it is retried when its lease ends");
          });
          inFlight.add(attempt);
          void attempt.finally(() => {
            inFlight.delete(attempt);
            void fill();
          });
        }
      }
    } catch (error) {
      // Polled every few hundred ms: an outage is reported once, not at every poll.
      if (outages && isTransientError(error)) outages.failed("postgres", error);
      else logger.warn({ err: error }, "could not claim webhook deliveries; will try again");
    } finally {
      claiming = false;
    }
  };

  const attemptDelivery = async (delivery: ClaimedDelivery) => {
    const startedAt = new Date();
    const result = delivery.endpointGone
      ? { outcome: "refused" as const, statusCode: null, durationMs: 0, retryAfterMs: null, error: "the endpoint was deleted", responseSnippet: null }
      : await send(delivery);

    const record: AttemptRecord = {
      deliveryId: delivery.id,
      attempt: delivery.attempt,
      startedAt,
      durationMs: Math.round(result.durationMs),
      outcome: result.outcome,
      statusCode: result.statusCode,
      error: result.error,
      responseSnippet: result.responseSnippet,
      state: result.outcome === "delivered" ? "succeeded" : "failed",
      nextAttemptAt: null,
    };
    if (result.outcome === "failed") {
      const delayMs = nextAttemptDelayMs(options.schedule, delivery.scheduledAttempt, result.retryAfterMs);
      if (delayMs !== null) Object.assign(record, { state: "pending", nextAttemptAt: new Date(Date.now() + delayMs) });
    }
    if (result.outcome === "gone" && delivery.endpointId) {
      record.disableEndpoint = { endpointId: delivery.endpointId, reason: `the receiver answered 410 Gone on ${startedAt.toISOString()}` };
    }
    await recordDeliveryAttempt(db, record);

    metrics.webhookAttempts.inc({ event: delivery.eventType, outcome: result.outcome });
    metrics.webhookLatency.observe(result.durationMs / 1000);
    const fields = {
      deliveryId: delivery.id,
      webhookId: delivery.eventId,
      event: delivery.eventType,
      jobId: delivery.jobId,
      attempt: delivery.attempt,
      outcome: result.outcome,
      statusCode: result.statusCode,
      durationMs: Math.round(result.durationMs),
      ...(result.error ? { error: result.error } : {}),
      ...(record.nextAttemptAt ? { nextAttemptAt: record.nextAttemptAt.toISOString() } : {}),
    };
    if (result.outcome === "delivered") logger.info(fields, "webhook delivered");
    else if (record.state === "pending") logger.info(fields, "webhook attempt failed; will retry");
    else logger.warn(fields, result.outcome === "gone" ? "webhook endpoint gone (410); disabled it" : "webhook delivery gave up");
  };

  /** Signs the event's body and POSTs it through the address policy. */
  const send = async (delivery: ClaimedDelivery) => {
    const body = await eventBody(db, delivery);
    // Claimed with its secrets; only a tenant's very first job_url delivery has to make the default one.
    const secrets = signingSecrets(delivery.secrets ?? (await ensureTenantWebhookSecret(db, delivery.tenantId, generateSecret())));
    const headers = webhookHeaders({ messageId: delivery.eventId, timestampSeconds: Math.floor(Date.now() / 1000), body, secrets });
    return deliverWebhook({ url: delivery.url, body, headers, policy: options.policy, timeoutMs: options.timeoutMs });
  };

  const timer = setInterval(() => void fill(), options.pollMs);
  timer.unref();
  void fill();
  return {
    wake: () => void fill(),
    async stop() {
      stopped = true;
      clearInterval(timer);
      await Promise.all(inFlight);
    },
  };
}

/**
 * The event's body: fixed at its first attempt (and shared by all its deliveries), so every
 * retry sends the same bytes under the same webhook-id. `data` is the job as GET /v1/jobs/{id}
 * shows it.
 */
async function eventBody(db: Database, delivery: ClaimedDelivery): Promise<string> {
  if (delivery.payload !== null) return JSON.stringify(delivery.payload);
  // Events not about a job are written with their payload (see coalesce_emit_tenant_event).
  const job = delivery.jobId === null ? null : await findJob(db, delivery.tenantId, delivery.jobId);
  const payload = { type: delivery.eventType, timestamp: delivery.eventCreatedAt.toISOString(), data: job ? presentJob(job) : { id: delivery.jobId } };
  return JSON.stringify(await fixEventPayload(db, delivery.eventId, payload));
}
