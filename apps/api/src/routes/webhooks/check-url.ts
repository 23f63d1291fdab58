import { checkWebhookUrl, resolveWebhookTarget, WebhookTargetRefused, type WebhookUrlPolicy } from "@coalesce/webhooks";
import { validationError } from "../../errors.ts";

/**
 * Refuses (422, naming `field`) a webhook URL that could never be delivered to: not https (unless
 * WEBHOOK_ALLOW_HTTP), credentials in it, or a host that is, or resolves to, a private, loopback,
 * link-local or metadata address not in WEBHOOK_ALLOWLIST. A name that does not resolve yet is
 * accepted: delivery resolves it again, and checks again, at every attempt.
 */
export async function assertDeliverableUrl(url: string, policy: WebhookUrlPolicy, field: string): Promise<string> {
  const checked = checkWebhookUrl(url, policy);
  if (!checked.ok) throw validationError([{ field, message: checked.reason }]);
  try {
    await resolveWebhookTarget(checked.url, policy);
  } catch (error) {
    if (error instanceof WebhookTargetRefused) throw validationError([{ field, message: error.message }]);
  }
  return checked.url.toString();
}
