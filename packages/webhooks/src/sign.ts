import { createHmac, randomBytes } from "node:crypto";
import packageJson from "../package.json" with { type: "json" };

const SECRET_PREFIX = "whsec_";
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

export const WEBHOOK_USER_AGENT = `Coalesce-Webhooks/${packageJson.version}`;

/** A new signing secret: `whsec_` and the base64 of 32 random bytes, as Standard Webhooks libraries expect. */
export function generateSecret(): string {
  return SECRET_PREFIX + randomBytes(32).toString("base64");
}

function secretKey(secret: string): Buffer {
  const encoded = secret.startsWith(SECRET_PREFIX) ? secret.slice(SECRET_PREFIX.length) : "";
  if (!BASE64.test(encoded)) throw new Error(`a webhook secret is "${SECRET_PREFIX}" followed by base64`);
  return Buffer.from(encoded, "base64");
}

/**
 * The `webhook-signature` value: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">` for each secret,
 * space-separated. While a secret is rotated both are given, so a receiver holding either verifies.
 */
export function signatureHeader(secrets: readonly string[], messageId: string, timestampSeconds: number, body: string): string {
  if (secrets.length === 0) throw new Error("signing a webhook needs at least one secret");
  if (!Number.isSafeInteger(timestampSeconds)) throw new Error(`the webhook timestamp is whole seconds, not ${timestampSeconds}`);
  const content = `${messageId}.${timestampSeconds}.${body}`;
  return secrets
    .map((secret) => `v1,${createHmac("sha256", secretKey(secret)).update(content, "utf8").digest("base64")}`)
    .join(" ");
}

export type WebhookHeadersInput = {
  /** Stays the same across retries of one message, so receivers can drop duplicates. */
  messageId: string;
  /** Unix seconds of this attempt; receivers reject one more than about five minutes off. */
  timestampSeconds: number;
  body: string;
  secrets: readonly string[];
};

/** The headers of one delivery attempt as Standard Webhooks v1 defines them. */
export function webhookHeaders({ messageId, timestampSeconds, body, secrets }: WebhookHeadersInput): Record<string, string> {
  return {
    "webhook-id": messageId,
    "webhook-timestamp": String(timestampSeconds),
    "webhook-signature": signatureHeader(secrets, messageId, timestampSeconds, body),
    "content-type": "application/json",
    "user-agent": WEBHOOK_USER_AGENT,
  };
}
