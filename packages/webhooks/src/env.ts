import { boolVar, intVar } from "@coalesce/contracts";
import { z } from "zod";
import { parseWebhookAllowlist, type WebhookUrlPolicy } from "./address-policy.ts";
import { DEFAULT_RETRY_SCHEDULE, parseRetrySchedule } from "./retry-schedule.ts";

/** Turns a parser that throws into a zod transform that reports the variable's problem. */
function parsedVar<T>(defaultValue: string, parse: (text: string) => T) {
  return z
    .string()
    .default(defaultValue)
    .transform((text, ctx) => {
      try {
        return parse(text);
      } catch (error) {
        ctx.addIssue({ code: "custom", message: error instanceof Error ? error.message : String(error) });
        return z.NEVER;
      }
    });
}

/** Which webhook URLs may be registered and delivered to: the API and the workers read the same variables. */
export const WebhookPolicyEnvShape = {
  /** Accept http:// URLs (local development); https only otherwise. */
  WEBHOOK_ALLOW_HTTP: boolVar(false),
  /** Comma-separated CIDRs or host names that may be delivered to despite being private or loopback. */
  WEBHOOK_ALLOWLIST: parsedVar("", (text) => (text.trim() === "" ? [] : parseWebhookAllowlist(text))),
};

/** How the workers deliver. */
export const WebhookDeliveryEnvShape = {
  ...WebhookPolicyEnvShape,
  /** Delays between attempts after a failure, e.g. 5s,5m,30m,2h,5h,10h,10h. */
  WEBHOOK_RETRY_SCHEDULE: parsedVar(DEFAULT_RETRY_SCHEDULE, parseRetrySchedule),
  WEBHOOK_TIMEOUT_MS: intVar(10_000, 100, 120_000),
  /** How often each worker looks for due deliveries (a job it finishes wakes it at once). */
  WEBHOOK_POLL_MS: intVar(500, 10, 60_000),
  /** Attempts in flight per worker; 0 makes this worker send none. */
  WEBHOOK_CONCURRENCY: intVar(16, 0, 1000),
};

export function webhookPolicyFromEnv(env: { WEBHOOK_ALLOW_HTTP: boolean; WEBHOOK_ALLOWLIST: string[] }): WebhookUrlPolicy {
  return { allowHttp: env.WEBHOOK_ALLOW_HTTP, allowlist: env.WEBHOOK_ALLOWLIST };
}
