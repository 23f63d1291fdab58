export { generateSecret, signatureHeader, webhookHeaders, WEBHOOK_USER_AGENT, type WebhookHeadersInput } from "./sign.ts";
export {
  checkWebhookUrl,
  isBlockedAddress,
  parseWebhookAllowlist,
  resolveWebhookTarget,
  WebhookTargetRefused,
  type WebhookLookup,
  type WebhookTarget,
  type WebhookUrlPolicy,
} from "./address-policy.ts";
export { deliverWebhook, parseRetryAfter, type DeliverWebhookOptions, type DeliveryAttempt } from "./deliver.ts";
export { DEFAULT_RETRY_SCHEDULE, nextAttemptDelayMs, parseRetrySchedule, RETRY_AFTER_FLOOR_MS } from "./retry-schedule.ts";
export { WebhookDeliveryEnvShape, WebhookPolicyEnvShape, webhookPolicyFromEnv } from "./env.ts";
