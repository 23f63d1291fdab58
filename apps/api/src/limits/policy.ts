import type { Context } from "hono";
import type { AppEnv } from "../context.ts";
import { ApiError } from "../errors.ts";

/**
 * One limit as draft-ietf-httpapi-ratelimit-headers (-11, -12) advertises it: a quota policy
 * (`RateLimit-Policy: "requests";q=1000;w=1`) and the caller's service limit under it
 * (`RateLimit: "requests";r=0;t=1`). Both fields are Structured Field lists whose items are
 * strings naming the policy.
 */
export type Policy = {
  /** The policy's name in both fields: `requests`, `reads`, `rows`, `queued-rows`. */
  name: string;
  /** The quota (`q`), in the policy's unit. */
  quota: number;
  /**
   * The unit (`qu`), when it is not requests. `rows` is this service's own unit (the draft's
   * registry holds requests, content-bytes and concurrent-requests): left out, a client would
   * read a row quota as one of requests.
   */
  unit?: "rows";
  /** The window (`w`) in seconds; none for a quota that is not a rate (queued rows). */
  windowSeconds?: number;
};

export function policyField(policy: Policy): string {
  return `"${policy.name}";q=${policy.quota}${policy.unit ? `;qu="${policy.unit}"` : ""}${policy.windowSeconds ? `;w=${policy.windowSeconds}` : ""}`;
}

export function limitField(policy: Policy, remaining: number, resetSeconds: number | null): string {
  return `"${policy.name}";r=${Math.max(0, Math.floor(remaining))}${resetSeconds === null ? "" : `;t=${resetSeconds}`}`;
}

/**
 * Adds the policy and the caller's standing under it to the response, beside any other policy
 * already there (a submission refused for its rows still says how its key stands for requests).
 */
export function advertise(c: Context<AppEnv>, policy: Policy, remaining: number, resetSeconds: number | null): void {
  c.header("RateLimit-Policy", policyField(policy), { append: true });
  c.header("RateLimit", limitField(policy, remaining, resetSeconds), { append: true });
}

/** Whole seconds until `ms` has passed, at least 1: Retry-After and `t` take delay-seconds. */
export function secondsUntil(ms: number): number {
  return Math.max(1, Math.ceil(ms / 1000));
}

/**
 * The 429 for a limit passed, to throw: Retry-After and the RateLimit fields are set on the
 * context here, and the problem+json answer that the app's error handler writes carries them
 * (headers set with `c.header` before a throw stay on the response Hono builds next). The draft:
 * Retry-After no earlier than the end of the effective window, so both say the same seconds.
 */
export function rateLimited(c: Context<AppEnv>, policy: Policy, retryAfterSeconds: number, message: string): ApiError {
  advertise(c, policy, 0, policy.windowSeconds ? retryAfterSeconds : null);
  c.header("Retry-After", String(retryAfterSeconds));
  return new ApiError("rate_limited", message);
}
