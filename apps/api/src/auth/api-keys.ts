import { hash, randomBytes } from "node:crypto";

export const API_KEY_PREFIX = "csk_";

/** A new secret: shown to its owner once, stored only as its hash. */
export function generateApiKey(): string {
  return API_KEY_PREFIX + randomBytes(24).toString("base64url");
}

export function hashApiKey(secret: string): string {
  // One-shot hash: no Hash object per request.
  return hash("sha256", secret, "hex");
}
