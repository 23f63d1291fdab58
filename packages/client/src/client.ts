import {
  AliasComparisonSchema,
  AliasHistorySchema,
  AliasListSchema,
  AliasSchema,
  JOB_STATUS_HEADER,
  JobListSchema,
  JobResultsSchema,
  JobSchema,
  JobStatusSchema,
  ModelListSchema,
  ModelSchema,
  ModelVersionSchema,
  PREDICT_CACHE_HEADER,
  PredictResponseSchema,
  PutAliasRequestSchema,
  RESULTS_COMPLETE_HEADER,
  RESULTS_MEDIA_TYPES,
  ROUTING_KEY_HEADER,
  TERMINAL_JOB_STATUSES,
  type Alias,
  type AliasComparison,
  type CreateJobRequest,
  type Job,
  type JobList,
  type JobResults,
  type JobStatus,
  type Model,
  type ModelList,
  type ModelVersion,
  type PredictResponse,
  type ResultRow,
  type TensorRow,
  type UpdateModelVersionRequest,
  CreatedWebhookSchema,
  WebhookDeliveryListSchema,
  WebhookEndpointSchema,
  WebhookListSchema,
  WebhookSecretSchema,
  type CreatedWebhook,
  type CreateWebhookRequest,
  type UpdateWebhookRequest,
  type WebhookDeliveryList,
  type WebhookEndpoint,
  type WebhookList,
  type WebhookSecret,
  ApiKeyListSchema,
  AuditListSchema,
  CreatedApiKeySchema,
  TenantSchema,
  type ApiKeyList,
  type AuditAction,
  type AuditList,
  type CreatedApiKey,
  type CreateApiKeyRequest,
  type Tenant,
  type UpdateTenantRequest,
} from "@coalesce/contracts";
import type { z } from "zod";
import { buildCsvUploadQuery, openCsvBody, type CsvUploadOptions } from "./csv-upload.ts";
import { CoalesceApiError, CoalesceConnectionError, CoalesceResponseError, CoalesceTimeoutError, readApiError } from "./errors.ts";

export type ClientOptions = {
  /** Where the API listens, e.g. `http://127.0.0.1:3000`; a path prefix is kept (`https://host/coalesce`). */
  baseUrl: string;
  /** An API key (`csk_...`), sent as `Authorization: Bearer <key>`. Empty: no header, and the API answers 401. */
  apiKey: string;
  /**
   * The fetch to use, e.g. one with a proxy agent or a test double.
   * @defaultValue globalThis.fetch
   */
  fetch?: typeof fetch;
  /**
   * How a 429 (`rate_limited`: a key's requests per second, a tenant's rows per minute or its queue
   * quota) is waited out: the request is sent again after the answer's Retry-After, at most
   * `maxRetries` times and `maxWaitMs` of waiting in all. Past either, or when one Retry-After alone
   * would pass what is left of `maxWaitMs`, the 429 is thrown as `CoalesceApiError` with its
   * `retryAfterSeconds`. A 429 means nothing was done, so a POST is as safe to send again as a GET.
   * A CSV upload from a stream cannot be sent again (from a path it can); `predict` waits only when
   * asked (see PredictOptions). `false`: never wait.
   * @defaultValue { maxRetries: 5, maxWaitMs: 30_000 }
   */
  rateLimitRetry?: RateLimitRetry | false;
};

export type RateLimitRetry = {
  /** @defaultValue 5 */
  maxRetries?: number;
  /** @defaultValue 30_000 */
  maxWaitMs?: number;
};

const DEFAULT_RATE_LIMIT_RETRY = { maxRetries: 5, maxWaitMs: 30_000 };

export type PageOptions = {
  /** `next_cursor` of the previous page. */
  cursor?: string;
  /** Items per page. @defaultValue the server's (20 jobs, 100 results) */
  limit?: number;
};

export type WaitOptions = {
  /**
   * How often `onProgress` hears of a running job. Each request is a long-poll held by the server
   * for up to this long, so the end of the job is seen at once, whatever the interval.
   * @defaultValue 1000
   */
  intervalMs?: number;
  /**
   * Give up with a `CoalesceTimeoutError` after this long.
   * @defaultValue no limit
   */
  timeoutMs?: number;
  /** Called with every state polled, the last one included. */
  onProgress?: (job: Job) => void;
  /** Stops waiting (rejects with the signal's reason). */
  signal?: AbortSignal;
};

export type ResultsFormat = "csv" | "ndjson";

export type ResultsDownload = {
  /** The file's bytes as the server streams them. Read it or cancel it. */
  body: ReadableStream<Uint8Array>;
  /** The job's status when the download started. */
  jobStatus: JobStatus;
  /** False while the job runs: the body then holds only the rows scored so far. */
  complete: boolean;
};

/**
 * How a model is sent: `onnx`, a single .onnx file; `tar` or `tar.gz`, an archive of one .onnx file
 * and the external data files its weights are kept in.
 */
export type ModelFormat = "onnx" | "tar" | "tar.gz";

const MODEL_CONTENT_TYPES: Record<ModelFormat, string> = {
  onnx: "application/octet-stream",
  tar: "application/x-tar",
  "tar.gz": "application/gzip",
};

/** An archive is told by gzip's magic bytes or tar's "ustar" at offset 257; anything else is sent as an .onnx file. */
function detectModelFormat(bytes: Uint8Array): ModelFormat {
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) return "tar.gz";
  if (new TextDecoder().decode(bytes.subarray(257, 262)) === "ustar") return "tar";
  return "onnx";
}

/**
 * A model by name (its `production` alias when it has one, else its latest version), one version of
 * it, or one of its aliases. A string may say the same: `iris`, `iris@2`, `iris@canary`.
 */
export type ModelRef = string | { name: string; version: number } | { name: string; alias: string };

export type AliasList = z.infer<typeof AliasListSchema>;
/** The body of `putAlias`, as the caller writes it: the guard's `min_rows` and `compare_sample` have defaults. */
export type PutAliasRequest = z.input<typeof PutAliasRequestSchema>;
export type AliasHistory = z.infer<typeof AliasHistorySchema>;

export type AliasHistoryOptions = {
  /** Entries per page, newest first. @defaultValue the server's (50) */
  limit?: number;
  /** The `id` of the oldest entry of the previous page: the page after it. */
  before?: string;
};

/**
 * `use`: answer from the server's result cache where it can; `refresh`: run the model anyway and
 * store the fresh answer (`Cache-Control: no-cache`); `skip`: neither read nor write the cache
 * (`Cache-Control: no-store`).
 */
export type PredictCacheMode = "use" | "refresh" | "skip";

export type PredictOptions = {
  /** @defaultValue "use" */
  cache?: PredictCacheMode;
  /**
   * With an alias that splits traffic, the same key is answered by the same version (while the weights
   * stay), sent as the `Coalesce-Routing-Key` header. @defaultValue none: each request is routed by the weights
   */
  routingKey?: string;
  /** Stops waiting for the answer (rejects with the signal's reason); the server may still run the rows. */
  signal?: AbortSignal;
  /**
   * Wait out a 429 as the other calls do (ClientOptions.rateLimitRetry). Off by default, as for a
   * 503: a caller that needs the answer inside its own request knows best whether a second or more
   * of waiting is worth it. @defaultValue false
   */
  waitOnRateLimit?: boolean;
};

export type Prediction = {
  /** The version that answered, and the alias that chose it (null when the call pinned a version or no alias applied). */
  model: PredictResponse["model"];
  /** One per row sent, in order: its `outputs`, or that row's own `error`. */
  outputs: ResultRow[];
  /** `hit` when every row was answered from the result cache. */
  cache: "hit" | "miss";
};

const CACHE_CONTROL: Record<PredictCacheMode, string | undefined> = { use: undefined, refresh: "no-cache", skip: "no-store" };

const DEFAULT_POLL_INTERVAL_MS = 1000;
/** The longest the server holds a long-poll. */
const MAX_WAIT_SECONDS = 60;

export type CoalesceClient = ReturnType<typeof createClient>;

type Call = {
  method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
  path: string;
  query?: URLSearchParams;
  headers?: Record<string, string>;
  body?: RequestInit["body"];
  signal?: AbortSignal;
  /** False: a 429 is thrown at once rather than waited out. @defaultValue true */
  waitOnRateLimit?: boolean;
};

/** A typed client of the Coalesce HTTP API. Every response is parsed through its contracts schema. */
export function createClient(options: ClientOptions) {
  const base = parseBaseUrl(options.baseUrl);
  // Shown in messages the way the caller wrote it, minus a trailing slash.
  const baseUrl = options.baseUrl.replace(/\/+$/, "");
  const prefix = base.pathname.replace(/\/+$/, "");
  const fetchImpl = options.fetch ?? globalThis.fetch;
  const authorization: Record<string, string> = options.apiKey ? { Authorization: `Bearer ${options.apiKey}` } : {};
  const rateLimitRetry = options.rateLimitRetry === false ? { maxRetries: 0, maxWaitMs: 0 } : { ...DEFAULT_RATE_LIMIT_RETRY, ...options.rateLimitRetry };

  /**
   * Sends `attempt` again while it answers 429 and the bounds allow (see ClientOptions.rateLimitRetry);
   * any other answer, or the last 429, is the caller's.
   */
  async function waitingOutRateLimits<T>(attempt: () => Promise<T>, signal: AbortSignal | undefined): Promise<T> {
    let waitedMs = 0;
    for (let retries = 0; ; retries++) {
      try {
        return await attempt();
      } catch (error) {
        if (!(error instanceof CoalesceApiError) || error.status !== 429 || retries >= rateLimitRetry.maxRetries) throw error;
        // No Retry-After (a proxy's 429): a second, as Coalesce's shortest window.
        const waitMs = (error.retryAfterSeconds ?? 1) * 1000;
        if (waitedMs + waitMs > rateLimitRetry.maxWaitMs) throw error;
        waitedMs += waitMs;
        await sleep(waitMs, signal);
      }
    }
  }

  function urlFor(path: string, query?: URLSearchParams): string {
    const url = new URL(base);
    url.pathname = prefix + path;
    url.search = query?.toString() ?? "";
    return url.toString();
  }

  /**
   * Sends one request; a non-2xx answer throws `CoalesceApiError`, no answer `CoalesceConnectionError`.
   * A 429 is waited out first (within ClientOptions.rateLimitRetry) unless the call says not to.
   */
  async function send(call: Call): Promise<Response> {
    return call.waitOnRateLimit === false ? sendOnce(call) : waitingOutRateLimits(() => sendOnce(call), call.signal);
  }

  async function sendOnce(call: Call): Promise<Response> {
    let response: Response;
    try {
      response = await fetchImpl(urlFor(call.path, call.query), {
        method: call.method,
        headers: { ...authorization, ...call.headers },
        ...(call.body === undefined ? {} : { body: call.body }),
        ...(call.signal === undefined ? {} : { signal: call.signal }),
      });
    } catch (error) {
      // The caller's own abort is not a network failure.
      if (call.signal?.aborted) throw call.signal.reason;
      throw new CoalesceConnectionError(baseUrl, error);
    }
    if (!response.ok) throw await readApiError(response);
    return response;
  }

  async function parse<S extends z.ZodType>(schema: S, response: Response, call: Call): Promise<z.infer<S>> {
    const text = await response.text();
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      throw new CoalesceResponseError(`${call.method} ${call.path} answered ${response.status} with a body that is not JSON: ${text.slice(0, 120)}`);
    }
    const result = schema.safeParse(body);
    if (!result.success) {
      const issues = result.error.issues.slice(0, 3).map((issue) => `${issue.path.join(".") || "body"}: ${issue.message}`);
      throw new CoalesceResponseError(
        `${call.method} ${call.path} answered a body this client does not understand (${issues.join("; ")}); is the server the same version?`,
      );
    }
    return result.data;
  }

  async function callJson<S extends z.ZodType>(schema: S, call: Call): Promise<z.infer<S>> {
    return parse(schema, await send(call), call);
  }

  function pageQuery(page: PageOptions): URLSearchParams {
    const query = new URLSearchParams();
    if (page.cursor !== undefined) query.set("cursor", page.cursor);
    if (page.limit !== undefined) query.set("limit", String(page.limit));
    return query;
  }

  /** One CSV upload, streamed (see uploadCsv). */
  async function uploadCsvOnce(upload: CsvUploadOptions): Promise<Job> {
    const call: Call = { method: "POST", path: "/v1/jobs", query: buildCsvUploadQuery(upload) };
    const csv = await openCsvBody(upload);
    let response: Response;
    try {
      response = await fetchImpl(urlFor(call.path, call.query), {
        method: "POST",
        headers: {
          ...authorization,
          "Content-Type": "text/csv",
          ...(upload.gzip ? { "Content-Encoding": "gzip" } : {}),
          ...(upload.idempotencyKey === undefined ? {} : { "Idempotency-Key": upload.idempotencyKey }),
        },
        body: csv.body,
        duplex: "half",
      } as RequestInit);
    } catch (error) {
      csv.stop();
      // A file that cannot be read breaks the body, which fetch reports as a failed request.
      const sourceError = csv.sourceError();
      if (sourceError) throw sourceError;
      throw new CoalesceConnectionError(baseUrl, error);
    }
    if (!response.ok) {
      const error = await readApiError(response);
      csv.stop(); // the server refused early (unknown model, say): no point sending the rest
      throw error;
    }
    return parse(JobSchema, response, call);
  }

  const jobPath = (id: string) => `/v1/jobs/${encodeURIComponent(id)}`;

  /** The job; with `waitSeconds`, held by the server until the job finishes or that long has passed (long-poll). */
  async function getJob(id: string, waitSeconds?: number): Promise<Job> {
    const query = waitSeconds ? new URLSearchParams({ wait: String(Math.round(waitSeconds * 1000) / 1000) }) : undefined;
    return callJson(JobSchema, { method: "GET", path: jobPath(id), ...(query ? { query } : {}) });
  }

  const webhookPath = (id: string) => `/v1/webhooks/${encodeURIComponent(id)}`;
  const modelPath = (name: string) => `/v1/models/${encodeURIComponent(name)}`;
  const aliasPath = (name: string, alias: string) => `${modelPath(name)}/aliases/${encodeURIComponent(alias)}`;
  const jsonBody = (body: unknown) => ({ headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });

  async function cancelJob(id: string): Promise<Job> {
    return callJson(JobSchema, { method: "POST", path: `${jobPath(id)}/cancel` });
  }

  async function getResults(id: string, page: PageOptions = {}): Promise<JobResults> {
    return callJson(JobResultsSchema, { method: "GET", path: `${jobPath(id)}/results`, query: pageQuery(page) });
  }

  return {
    baseUrl,

    /**
     * Registers `bytes` (an .onnx file, or a .tar / .tar.gz of one and its external data files) as the
     * next version of `name`; the same bytes (or files) as the latest version return that version.
     * `format` is told from the bytes when not given.
     */
    async pushModel(name: string, bytes: Uint8Array, options: { format?: ModelFormat } = {}): Promise<ModelVersion> {
      const format = options.format ?? detectModelFormat(bytes);
      return callJson(ModelVersionSchema, {
        method: "POST",
        path: `/v1/models/${encodeURIComponent(name)}/versions`,
        headers: { "Content-Type": MODEL_CONTENT_TYPES[format] },
        body: bytes as RequestInit["body"],
      });
    },

    /**
     * Changes a version: its batching limits (`null` restores the workers' default; keys left out stay),
     * its `description` (`null` clears it) and its `labels` (replaced whole).
     */
    async updateModelVersion(name: string, version: number, changes: UpdateModelVersionRequest): Promise<ModelVersion> {
      return callJson(ModelVersionSchema, { method: "PATCH", path: `${modelPath(name)}/versions/${version}`, ...jsonBody(changes) });
    },

    /**
     * Deletes a version; its number is never given again. A 409 `conflict` names the alias or the
     * unfinished job that still uses it.
     */
    async deleteModelVersion(name: string, version: number): Promise<void> {
      await send({ method: "DELETE", path: `${modelPath(name)}/versions/${version}` });
    },

    /**
     * Creates or changes an alias: `{ version: 3 }`, or a split `{ routes: [{ version: 2, weight: 90 }, { version: 3, weight: 10 }] }`,
     * with an optional `shadow` and `guard`. The whole routing is replaced: a shadow or guard left out is removed.
     */
    async putAlias(name: string, alias: string, routing: PutAliasRequest): Promise<Alias> {
      return callJson(AliasSchema, { method: "PUT", path: aliasPath(name, alias), ...jsonBody(routing) });
    },

    async getAlias(name: string, alias: string): Promise<Alias> {
      return callJson(AliasSchema, { method: "GET", path: aliasPath(name, alias) });
    },

    /** Every alias of the model, by name. */
    async listAliases(name: string): Promise<AliasList> {
      return callJson(AliasListSchema, { method: "GET", path: `${modelPath(name)}/aliases` });
    },

    /** Deletes the alias; its history stays, and `rollbackAlias` brings it back. */
    async deleteAlias(name: string, alias: string): Promise<void> {
      await send({ method: "DELETE", path: aliasPath(name, alias) });
    },

    /** The alias's changes, newest first; pass the last entry's `id` as `before` for the next page. */
    async aliasHistory(name: string, alias: string, page: AliasHistoryOptions = {}): Promise<AliasHistory> {
      const query = new URLSearchParams();
      if (page.limit !== undefined) query.set("limit", String(page.limit));
      if (page.before !== undefined) query.set("before", page.before);
      return callJson(AliasHistorySchema, { method: "GET", path: `${aliasPath(name, alias)}/history`, query });
    },

    /** Puts back the routing from before the alias's newest change not yet rolled back. 409 when there is none. */
    async rollbackAlias(name: string, alias: string): Promise<Alias> {
      return callJson(AliasSchema, { method: "POST", path: `${aliasPath(name, alias)}/rollback` });
    },

    /** Rows, errors and run time per version since the alias last changed, and how the versions that scored the same rows agree. */
    async aliasComparison(name: string, alias: string): Promise<AliasComparison> {
      return callJson(AliasComparisonSchema, { method: "GET", path: `${aliasPath(name, alias)}/comparison` });
    },

    /** The caller's models, each with every version's signature. */
    async listModels(): Promise<ModelList> {
      return callJson(ModelListSchema, { method: "GET", path: "/v1/models" });
    },

    async getModel(name: string): Promise<Model> {
      return callJson(ModelSchema, { method: "GET", path: modelPath(name) });
    },

    /**
     * Scores rows now and returns their outputs, for a caller that needs the answer inside its own
     * request (for many rows, `createJob`). Rows are in the form a JSON job takes them and are checked
     * the same way: a row that does not fit the model is a 422 naming `inputs[i].field`. A row the
     * model fails on has its own `error` and does not fail the call.
     *
     * Bounded, and not retried here: with no worker running or a full backlog the server answers
     * 503 `service_unavailable` at once, with `retryAfterSeconds` (5 s from Coalesce); with no answer
     * within its PREDICT_TIMEOUT_MS, 504 `timeout`; past a rate limit, 429 `rate_limited`. Waiting out
     * a Retry-After would turn a call the caller meant to be quick into one of seconds, so the caller,
     * who knows its own budget, chooses: retry, fall back, or submit a job. (Other calls wait out a
     * 429 by themselves; `waitOnRateLimit: true` makes this one do so too. None retries a 503.)
     */
    async predict(model: ModelRef, rows: TensorRow[], options: PredictOptions = {}): Promise<Prediction> {
      const cacheControl = CACHE_CONTROL[options.cache ?? "use"];
      const call: Call = {
        method: "POST",
        path: predictPath(model),
        headers: {
          "Content-Type": "application/json",
          ...(cacheControl ? { "Cache-Control": cacheControl } : {}),
          ...(options.routingKey === undefined ? {} : { [ROUTING_KEY_HEADER]: options.routingKey }),
        },
        body: JSON.stringify({ inputs: rows }),
        ...(options.signal ? { signal: options.signal } : {}),
        waitOnRateLimit: options.waitOnRateLimit ?? false,
      };
      const response = await send(call);
      const cache = response.headers.get(PREDICT_CACHE_HEADER);
      if (cache !== "hit" && cache !== "miss") {
        await response.body?.cancel();
        throw new CoalesceResponseError(`${call.method} ${call.path} answered without a valid ${PREDICT_CACHE_HEADER} header; is the server the same version?`);
      }
      const answer = await parse(PredictResponseSchema, response, call);
      return { model: answer.model, outputs: answer.outputs, cache };
    },

    /**
     * Submits rows as JSON; every row is checked against the model before the job is accepted (422 otherwise).
     * `model` may name an alias (`iris@canary`), whose split `routing_key` makes choose the same version for the same key.
     * Sent with an `Idempotency-Key` (a fresh random one unless `options.idempotencyKey` names one, or `false` for
     * none), so a retry of the same request (this client's after a 429, a proxy's after a dropped connection) never
     * makes a second job: the server answers it with the job the first made.
     */
    async createJob(request: CreateJobRequest, options: { idempotencyKey?: string | false } = {}): Promise<Job> {
      const key = options.idempotencyKey === undefined ? globalThis.crypto.randomUUID() : options.idempotencyKey;
      const body = jsonBody(request);
      const headers = key === false ? body.headers : { ...body.headers, "Idempotency-Key": key };
      return callJson(JobSchema, { method: "POST", path: "/v1/jobs", ...body, headers });
    },

    /**
     * Submits a CSV file, streamed as the raw body (`text/csv`, gzipped on the fly with `gzip: true`),
     * so a file of any size takes constant memory here. A missing file fails before any request.
     */
    async uploadCsv(upload: CsvUploadOptions): Promise<Job> {
      // A 429 comes before the server reads the file; a file named by its path can be read again.
      if (typeof upload.file !== "string") return uploadCsvOnce(upload);
      return waitingOutRateLimits(() => uploadCsvOnce(upload), undefined);
    },

    getJob,
    /** Cancels an unfinished job; rows already scored keep their results. 409 when it had finished. */
    cancelJob,

    /** The caller's jobs, newest first. */
    async listJobs(page: PageOptions = {}): Promise<JobList> {
      return callJson(JobListSchema, { method: "GET", path: "/v1/jobs", query: pageQuery(page) });
    },

    /** Registers a webhook endpoint; the answer holds its signing secret, shown only this once. */
    async createWebhook(request: CreateWebhookRequest): Promise<CreatedWebhook> {
      return callJson(CreatedWebhookSchema, { method: "POST", path: "/v1/webhooks", ...jsonBody(request) });
    },

    async listWebhooks(): Promise<WebhookList> {
      return callJson(WebhookListSchema, { method: "GET", path: "/v1/webhooks" });
    },

    /** Changes an endpoint; `{ enabled: true }` re-enables one that a 410 disabled. */
    async updateWebhook(id: string, changes: UpdateWebhookRequest): Promise<WebhookEndpoint> {
      return callJson(WebhookEndpointSchema, { method: "PATCH", path: webhookPath(id), ...jsonBody(changes) });
    },

    async deleteWebhook(id: string): Promise<void> {
      await send({ method: "DELETE", path: webhookPath(id) });
    },

    /** A new signing secret; the old one keeps signing beside it for `overlapSeconds` (default 24 h). */
    async rotateWebhookSecret(id: string, overlapSeconds?: number): Promise<WebhookSecret> {
      const body = overlapSeconds === undefined ? {} : { overlap_seconds: overlapSeconds };
      return callJson(WebhookSecretSchema, { method: "POST", path: `${webhookPath(id)}/rotate-secret`, ...jsonBody(body) });
    },

    /** The secret that signs deliveries to jobs' own `webhook_url`. */
    async getDefaultWebhookSecret(): Promise<WebhookSecret> {
      return callJson(WebhookSecretSchema, { method: "GET", path: "/v1/webhooks/default-secret" });
    },

    /** A job's webhook deliveries, each with every attempt. */
    async listDeliveries(jobId: string): Promise<WebhookDeliveryList> {
      return callJson(WebhookDeliveryListSchema, { method: "GET", path: `${jobPath(jobId)}/deliveries` });
    },

    /** Sends a delivery again now, same webhook-id and body. */
    async retryDelivery(deliveryId: string): Promise<void> {
      await send({ method: "POST", path: `/v1/deliveries/${encodeURIComponent(deliveryId)}/retry` });
    },

    /** Makes an API key (admin); the answer holds its `secret`, shown only this once. */
    async createApiKey(request: CreateApiKeyRequest): Promise<CreatedApiKey> {
      return callJson(CreatedApiKeySchema, { method: "POST", path: "/v1/api-keys", ...jsonBody(request) });
    },

    /** The tenant's keys, newest first, never a secret; revoked ones only with `includeRevoked`. */
    async listApiKeys(options: { includeRevoked?: boolean } = {}): Promise<ApiKeyList> {
      const query = options.includeRevoked ? new URLSearchParams({ include_revoked: "true" }) : undefined;
      return callJson(ApiKeyListSchema, { method: "GET", path: "/v1/api-keys", ...(query ? { query } : {}) });
    },

    /** Revokes a key: every API replica refuses it within a second. */
    async revokeApiKey(id: string): Promise<void> {
      await send({ method: "DELETE", path: `/v1/api-keys/${encodeURIComponent(id)}` });
    },

    /** A new secret for the key; the old one keeps working for `overlapSeconds` (default 24 h). */
    async rotateApiKey(id: string, overlapSeconds?: number): Promise<CreatedApiKey> {
      const body = overlapSeconds === undefined ? {} : { overlap_seconds: overlapSeconds };
      return callJson(CreatedApiKeySchema, { method: "POST", path: `/v1/api-keys/${encodeURIComponent(id)}/rotate`, ...jsonBody(body) });
    },

    /** The caller's tenant and its limits (admin). */
    async getTenant(): Promise<Tenant> {
      return callJson(TenantSchema, { method: "GET", path: "/v1/tenant" });
    },

    /** Changes the tenant's limits; null returns one to the server's default, 0 turns it off. */
    async updateTenant(changes: UpdateTenantRequest): Promise<Tenant> {
      return callJson(TenantSchema, { method: "PATCH", path: "/v1/tenant", ...jsonBody(changes) });
    },

    /** A page of the tenant's audit log, newest first (admin). */
    async listAudit(page: PageOptions & { action?: AuditAction; actor?: string } = {}): Promise<AuditList> {
      const query = pageQuery(page);
      if (page.action !== undefined) query.set("action", page.action);
      if (page.actor !== undefined) query.set("actor", page.actor);
      return callJson(AuditListSchema, { method: "GET", path: "/v1/audit", query });
    },

    /**
     * Waits until the job is finished (succeeded, failed, cancelled or expired) and returns that last
     * state. It long-polls (`GET /v1/jobs/{id}?wait=`): the server answers the moment the job ends.
     */
    async waitForJob(id: string, wait: WaitOptions = {}): Promise<Job> {
      const intervalMs = wait.intervalMs ?? DEFAULT_POLL_INTERVAL_MS;
      const started = Date.now();
      let job = await getJob(id);
      for (;;) {
        wait.onProgress?.(job);
        if (TERMINAL_JOB_STATUSES.includes(job.status)) return job;
        const left = wait.timeoutMs === undefined ? Number.POSITIVE_INFINITY : wait.timeoutMs - (Date.now() - started);
        if (left <= 0) throw new CoalesceTimeoutError(job, wait.timeoutMs as number);
        wait.signal?.throwIfAborted();
        const holdMs = Math.min(intervalMs, left, MAX_WAIT_SECONDS * 1000);
        const asked = Date.now();
        job = await getJob(id, holdMs / 1000);
        // A server that does not hold the request (an older one) still gets polled at the interval.
        const early = holdMs - (Date.now() - asked);
        if (early > 0 && !TERMINAL_JOB_STATUSES.includes(job.status)) await sleep(early, wait.signal);
      }
    },

    /** One page of results in input order. While the job runs, only the rows scored so far. */
    getResults,

    /** Every result row, page after page (`pageSize` rows per request). Call it once the job is finished to see them all. */
    async *iterateResults(id: string, { pageSize = 1000 }: { pageSize?: number } = {}): AsyncGenerator<ResultRow, void, undefined> {
      let cursor: string | undefined;
      do {
        const page = await getResults(id, { limit: pageSize, ...(cursor === undefined ? {} : { cursor }) });
        yield* page.data;
        cursor = page.next_cursor ?? undefined;
      } while (cursor !== undefined);
    },

    /**
     * The results as one streamed file (`text/csv` or `application/x-ndjson`). `complete` says whether the
     * job was finished, so a partial file is never mistaken for a whole one.
     */
    async downloadResults(id: string, format: ResultsFormat): Promise<ResultsDownload> {
      const mediaType = RESULTS_MEDIA_TYPES[format];
      const call: Call = { method: "GET", path: `${jobPath(id)}/results`, headers: { Accept: mediaType } };
      const response = await send(call);
      const contentType = response.headers.get("content-type") ?? "";
      if (!contentType.toLowerCase().startsWith(mediaType)) {
        await response.body?.cancel();
        throw new CoalesceResponseError(
          `${call.method} ${call.path} answered ${contentType || "no content type"} for Accept: ${mediaType}; does this server offer ${format} downloads?`,
        );
      }
      const status = JobStatusSchema.safeParse(response.headers.get(JOB_STATUS_HEADER));
      if (!status.success) {
        await response.body?.cancel();
        throw new CoalesceResponseError(`${call.method} ${call.path} answered without a valid ${JOB_STATUS_HEADER} header`);
      }
      const completeHeader = response.headers.get(RESULTS_COMPLETE_HEADER)?.toLowerCase();
      const complete = completeHeader === undefined ? TERMINAL_JOB_STATUSES.includes(status.data) : completeHeader === "true";
      return { body: response.body ?? new ReadableStream<Uint8Array>({ start: (c) => c.close() }), jobStatus: status.data, complete };
    },
  };
}

/**
 * `/v1/models/iris/predict`, `/v1/models/iris/versions/2/predict` or `/v1/models/iris@canary/predict`.
 * '@' may stand in a path segment (RFC 3986 pchar), so it is kept readable in logs rather than encoded.
 */
function predictPath(model: ModelRef): string {
  const segment = (text: string) => encodeURIComponent(text).replace(/%40/g, "@");
  if (typeof model === "string") return `/v1/models/${segment(model)}/predict`;
  if ("version" in model) return `/v1/models/${segment(model.name)}/versions/${model.version}/predict`;
  return `/v1/models/${segment(model.name)}@${segment(model.alias)}/predict`;
}

function parseBaseUrl(baseUrl: string): URL {
  // `localhost:3000` parses as a URL with the scheme "localhost:", hence the protocol check.
  const url = URL.canParse(baseUrl) ? new URL(baseUrl) : null;
  if (!url || (url.protocol !== "http:" && url.protocol !== "https:")) {
    throw new TypeError(`baseUrl is not an http(s) URL: '${baseUrl}' (expected e.g. http://127.0.0.1:3000)`);
  }
  return url;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
