import http, { type IncomingHttpHeaders } from "node:http";
import https from "node:https";
import type { LookupFunction } from "node:net";
import {
  checkWebhookUrl,
  resolveWebhookTarget,
  WebhookTargetRefused,
  type WebhookLookup,
  type WebhookTarget,
  type WebhookUrlPolicy,
} from "./address-policy.ts";

/** What one POST to a receiver came to. */
export type DeliveryAttempt = {
  /** `gone`: the receiver answered 410, stop sending. `refused`: the address policy stopped it, no request was made. */
  outcome: "delivered" | "failed" | "gone" | "refused";
  statusCode: number | null;
  durationMs: number;
  /** From the Retry-After of a 429 or 503, capped at 24 hours. */
  retryAfterMs: number | null;
  /** A sentence for the delivery log when the outcome is not `delivered`. */
  error: string | null;
  /** The first kilobyte or so of the response body, for the delivery log. */
  responseSnippet: string | null;
};

export type DeliverWebhookOptions = {
  url: string;
  body: string;
  /** From {@link webhookHeaders}. */
  headers: Record<string, string>;
  policy: WebhookUrlPolicy;
  /**
   * The whole attempt, from the DNS lookup to the end of the response.
   * @defaultValue 10_000
   */
  timeoutMs?: number;
  /**
   * Resolves the receiver's hostname.
   * @defaultValue `dns.promises.lookup`
   */
  lookup?: WebhookLookup;
};

const SNIPPET_BYTES = 1024;
const MAX_RETRY_AFTER_MS = 24 * 60 * 60 * 1000;

/**
 * Milliseconds a Retry-After header asks for (delay-seconds or an HTTP date), capped at 24 hours;
 * null when it is absent or unreadable.
 */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | null {
  const text = value?.trim() ?? "";
  if (text === "") return null;
  const ms = /^\d+$/.test(text) ? Number(text) * 1000 : Date.parse(text) - now;
  if (Number.isNaN(ms)) return null;
  return Math.min(Math.max(ms, 0), MAX_RETRY_AFTER_MS);
}

/**
 * Makes the connection go to the address that was checked, whatever the name resolves to by now. Node's
 * net asks with `all: true` when it may try several address families and for one address otherwise.
 */
function pinnedLookup(target: WebhookTarget): LookupFunction {
  return (_hostname, options, callback) => {
    if (options.all) callback(null, [target]);
    else callback(null, target.address, target.family);
  };
}

type ReceiverResponse = { statusCode: number; headers: IncomingHttpHeaders; snippet: string | null };

function post(url: URL, target: WebhookTarget, body: string, headers: Record<string, string>, signal: AbortSignal) {
  const transport = url.protocol === "https:" ? https : http;
  return new Promise<ReceiverResponse>((resolve, reject) => {
    // Host and the TLS server name come from the URL's hostname; only the socket goes to target. No agent
    // is shared, so a pooled socket never outlives the check that let it connect.
    const request = transport.request(url, {
      method: "POST",
      headers: { ...headers, "content-length": String(Buffer.byteLength(body)) },
      agent: false,
      lookup: pinnedLookup(target),
      signal,
    });
    request.on("error", reject);
    request.on("response", (response) => {
      const chunks: Buffer[] = [];
      let size = 0;
      const finish = () => {
        const text = Buffer.concat(chunks).subarray(0, SNIPPET_BYTES).toString("utf8");
        resolve({ statusCode: response.statusCode ?? 0, headers: response.headers, snippet: text === "" ? null : text });
        request.destroy();
      };
      response.on("data", (chunk: Buffer) => {
        chunks.push(chunk);
        size += chunk.length;
        if (size >= SNIPPET_BYTES) finish();
      });
      response.on("end", finish);
      // Cut off mid-body (by the timeout or the receiver): the status has arrived and is what counts.
      response.on("close", finish);
    });
    request.end(body);
  });
}

function judgeResponse({ statusCode, headers }: ReceiverResponse): Pick<DeliveryAttempt, "outcome" | "retryAfterMs" | "error"> {
  const status = `${statusCode} ${http.STATUS_CODES[statusCode] ?? ""}`.trim();
  if (statusCode >= 200 && statusCode < 300) return { outcome: "delivered", retryAfterMs: null, error: null };
  if (statusCode === 410) return { outcome: "gone", retryAfterMs: null, error: `the receiver answered ${status}` };
  if (statusCode >= 300 && statusCode < 400) {
    const location = headers.location ? ` to ${headers.location}` : "";
    return {
      outcome: "failed",
      retryAfterMs: null,
      error: `the receiver answered ${status}${location}; redirects are not followed, so register the final URL`,
    };
  }
  const retryAfterMs = statusCode === 429 || statusCode === 503 ? parseRetryAfter(headers["retry-after"]) : null;
  return { outcome: "failed", retryAfterMs, error: `the receiver answered ${status}` };
}

function abortedBy(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason), { once: true }));
}

/**
 * POSTs one signed webhook. The URL is checked and its host resolved once, and the request connects to
 * that very address; redirects are not followed. Whatever the receiver or the network does, the answer
 * is a {@link DeliveryAttempt}; only a policy whose allowlist was not built by `parseWebhookAllowlist`
 * can make it throw.
 */
export async function deliverWebhook(options: DeliverWebhookOptions): Promise<DeliveryAttempt> {
  const { body, headers, policy, timeoutMs = 10_000, lookup } = options;
  const started = performance.now();
  const attempt = (fields: Omit<DeliveryAttempt, "durationMs">): DeliveryAttempt => ({
    ...fields,
    durationMs: Math.round(performance.now() - started),
  });
  const noResponse = { statusCode: null, retryAfterMs: null, responseSnippet: null };

  const checked = checkWebhookUrl(options.url, policy);
  if (!checked.ok) return attempt({ outcome: "refused", error: checked.reason, ...noResponse });
  const { url } = checked;
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    const target = await Promise.race([resolveWebhookTarget(url, policy, lookup), abortedBy(signal)]);
    const response = await post(url, target, body, headers, signal);
    return attempt({ ...judgeResponse(response), statusCode: response.statusCode, responseSnippet: response.snippet });
  } catch (error) {
    if (error instanceof WebhookTargetRefused) return attempt({ outcome: "refused", error: error.message, ...noResponse });
    const why = signal.aborted ? `no response within ${timeoutMs} ms (timed out)` : (error as Error).message;
    return attempt({ outcome: "failed", error: `the request to ${url.host} failed: ${why}`, ...noResponse });
  }
}
