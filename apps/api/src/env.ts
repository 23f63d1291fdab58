import { boolVar, ConfigError, DEFAULT_PREDICT_MAX_ROWS, intVar, LOG_LEVELS, optionalVar, parseEnv } from "@coalesce/contracts";
import { DEFAULT_DATABASE_URL, DEFAULT_UPLOAD_STALE_MS, MAX_UPLOAD_STALE_MS, MIN_UPLOAD_STALE_MS } from "@coalesce/db";
import { DEFAULT_MODEL_STORE_DIR } from "@coalesce/models";
import { checkRedisUrl, DEFAULT_QUEUE_PREFIX, DEFAULT_REDIS_URL, queuePrefixFor } from "@coalesce/queue";
import { WebhookPolicyEnvShape } from "@coalesce/webhooks";
import { createPublicKey } from "node:crypto";
import { readFileSync } from "node:fs";
import { createSecureContext } from "node:tls";
import { z } from "zod";
import { QUEUE_ADMIN_MODES } from "./admin/queue-admin-mode.ts";
import { DEFAULT_PLATFORM_TENANT } from "./auth/platform.ts";

const MiB = 1024 * 1024;

// --- Authentication: JWT bearer tokens and the failed-authentication throttle (see auth/jwt.ts) ---

/** The signature algorithms a token may use; `none` is never one of them. */
export const JWT_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "Ed25519", "HS256", "HS384", "HS512"] as const;
export type JwtAlgorithm = (typeof JWT_ALGORITHMS)[number];

function splitList(text: string): string[] {
  return text.split(",").map((part) => part.trim()).filter((part) => part !== "");
}

/** A comma-separated list, each item checked by `item`. */
function listVar(defaultValue: string, item: (text: string) => string | null) {
  return z
    .string()
    .default(defaultValue)
    .transform((text, ctx) => {
      const items = splitList(text);
      for (const part of items) {
        const problem = item(part);
        if (problem) ctx.addIssue({ code: "custom", message: problem });
      }
      return items;
    });
}

function AuthEnvShape() {
  return {
    /** The issuer (`iss`) whose bearer tokens are accepted beside API keys; unset: JWT auth is off. */
    AUTH_JWT_ISSUER: optionalVar(z.string()),
    /** The audience (`aud`) a token must name, comma-separated for several; required with AUTH_JWT_ISSUER. */
    AUTH_JWT_AUDIENCE: optionalVar(z.string().transform(splitList)),
    /** The issuer's key set (JWKS), fetched when first needed and cached; an unknown `kid` refetches it at most once a minute. */
    AUTH_JWKS_URL: optionalVar(z.string().url()),
    /** Or the issuer's one public key, as PEM (SPKI); `\n` stands for a line break. */
    AUTH_JWT_PUBLIC_KEY: optionalVar(
      z
        .string()
        .transform((text) => text.replaceAll("\\n", "\n"))
        .refine(isPublicKeyPem, "expected a PEM public key (-----BEGIN PUBLIC KEY-----)"),
    ),
    /** A shared secret for HS256/384/512 tokens (at least 32 characters); HS* are refused without it. */
    AUTH_JWT_SECRET: optionalVar(z.string().min(32, "use at least 32 characters")),
    /** The signature algorithms accepted, comma-separated. */
    AUTH_JWT_ALGORITHMS: listVar("RS256,ES256,EdDSA,PS256", (name) =>
      name.toLowerCase() === "none"
        ? "'none' (an unsigned token) is never accepted"
        : (JWT_ALGORITHMS as readonly string[]).includes(name)
          ? null
          : `unknown algorithm '${name}'; expected some of ${JWT_ALGORITHMS.join(", ")}`,
    ),
    /** Seconds of clock difference forgiven on a token's `exp` and `nbf`. */
    AUTH_JWT_CLOCK_TOLERANCE_S: intVar(30, 0, 300),
    /** The claim that names the token's tenant (by name; a tenant that does not exist is refused). */
    AUTH_JWT_TENANT_CLAIM: z.string().min(1).default("tenant"),
    /** Failed authentications one client address may make per AUTH_FAILURE_WINDOW_S before it is refused (429); 0 for no limit. */
    AUTH_FAILURE_LIMIT: intVar(20, 0),
    AUTH_FAILURE_WINDOW_S: intVar(10, 1, 3600),
    /** The API sits behind a proxy: the client address is the last X-Forwarded-For entry, not the socket's. */
    TRUST_PROXY: boolVar(false),
  };
}

function isPublicKeyPem(text: string): boolean {
  try {
    return createPublicKey(text).type === "public";
  } catch {
    return false;
  }
}

// --- Rate limits and quotas (see limits/rate-limits.ts); every one 0 for off ---

function RateLimitEnvShape() {
  return {
    /**
     * Requests per second per API key (or token subject) on the routes behind a key; reads (GET)
     * have a bucket of their own, READS_PER_REQUEST_LIMIT times as large. A key's own rate_limit_rps
     * overrides it (0: no limit for that key).
     */
    RATE_LIMIT_REQUESTS_PER_SECOND: intVar(1_000, 0),
    /** Rows per minute per tenant over submissions (jobs, uploads, predict, infer); a tenant's own rate_limit_rows_per_minute overrides it. */
    RATE_LIMIT_ROWS_PER_MINUTE: intVar(10_000_000, 0),
    /** Most unfinished rows a tenant may have queued before new jobs are refused; a tenant's own quota_queued_rows overrides it. */
    QUOTA_QUEUED_ROWS: intVar(50_000_000, 0),
  };
}

// --- The edges: who may read /metrics, the development key in production, CORS (see metrics-endpoint.ts) ---

/**
 * docker/compose.yaml's default BOOTSTRAP_API_KEY: anyone who has read the file knows it, so the API
 * refuses it when NODE_ENV=production.
 */
export const DEVELOPMENT_BOOTSTRAP_API_KEY = "csk_dev_insecure_change_me";

/** `scheme://host[:port]` exactly as a browser sends it in `Origin` (lowercase, no default port, no path). */
function originProblem(text: string): string | null {
  if (text === "*") return null;
  let url: URL | undefined;
  try {
    url = new URL(text);
  } catch {
    url = undefined;
  }
  if (url && (url.protocol === "http:" || url.protocol === "https:") && url.origin === text) return null;
  return `'${text}' is not an origin as a browser sends it: scheme://host[:port] in lowercase, no default port, path or trailing slash (e.g. https://app.example.com)`;
}

function EdgeEnvShape() {
  return {
    /**
     * A bearer token of its own for GET /metrics (`Authorization: Bearer <METRICS_TOKEN>`), wherever it is
     * served. Without it /metrics is open, which the API allows only on a loopback HOST or on API_METRICS_PORT.
     */
    METRICS_TOKEN: optionalVar(z.string().min(16, "use at least 16 characters")),
    /** Serve /metrics only on this port (on METRICS_HOST), and answer 404 for it on PORT; 0 picks a free port. */
    API_METRICS_PORT: optionalVar(z.coerce.number().int().min(0).max(65535)),
    /** Where API_METRICS_PORT listens; 0.0.0.0 inside a container network that only the scraper reaches. */
    METRICS_HOST: z.string().min(1).default("127.0.0.1"),
    /** `production` refuses DEVELOPMENT_BOOTSTRAP_API_KEY (compose's default) as BOOTSTRAP_API_KEY. */
    NODE_ENV: z.string().default("development"),
    /** Origins a browser may call the API from (CORS), comma-separated, or `*` for any; unset: CORS is off. */
    CORS_ORIGINS: listVar("", originProblem),
    /**
     * Serve HTTPS on PORT with this PEM certificate (chain) and TLS_KEY_FILE's key: both or neither. Unset, the
     * API speaks plain HTTP, as behind a TLS-terminating proxy (docker/nginx). Read once at start.
     */
    TLS_CERT_FILE: optionalVar(z.string()),
    /** The PEM private key of TLS_CERT_FILE's certificate. */
    TLS_KEY_FILE: optionalVar(z.string()),
  };
}

/** PEM files read by `checkTlsEnv` at start, so a bad path or pair fails there, naming the variable. */
export type TlsFiles = { cert: Buffer; key: Buffer };

function readTlsFile(name: "TLS_CERT_FILE" | "TLS_KEY_FILE", file: string, problems: string[]): Buffer | null {
  try {
    return readFileSync(file);
  } catch (error) {
    problems.push(`${name}: cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
    return null;
  }
}

/**
 * TLS_CERT_FILE and TLS_KEY_FILE, both or neither, read and checked as a pair: an unreadable file, a
 * file that is not PEM, or a key that is not the certificate's fails the start rather than the first
 * handshake (which would only show as a client's connection reset).
 */
export function readTlsFiles(env: Pick<ApiEnv, "TLS_CERT_FILE" | "TLS_KEY_FILE">): TlsFiles | null {
  const problems: string[] = [];
  const { TLS_CERT_FILE: certFile, TLS_KEY_FILE: keyFile } = env;
  if (certFile === undefined && keyFile === undefined) return null;
  if (certFile === undefined) problems.push("TLS_CERT_FILE: required with TLS_KEY_FILE (the PEM certificate the key belongs to)");
  if (keyFile === undefined) problems.push("TLS_KEY_FILE: required with TLS_CERT_FILE (the certificate's PEM private key)");
  const cert = certFile === undefined ? null : readTlsFile("TLS_CERT_FILE", certFile, problems);
  const key = keyFile === undefined ? null : readTlsFile("TLS_KEY_FILE", keyFile, problems);
  if (cert && key) {
    try {
      createSecureContext({ cert, key });
    } catch (error) {
      problems.push(`TLS_KEY_FILE: ${keyFile} and TLS_CERT_FILE: ${certFile} are not a PEM key and its certificate (${(error as Error).message})`);
    }
  }
  if (problems.length > 0) throw new ConfigError(`invalid configuration:\n${problems.map((line) => `  ${line}`).join("\n")}`);
  return { cert: cert as Buffer, key: key as Buffer };
}

function isLoopbackHost(host: string): boolean {
  return host === "localhost" || host === "::1" || host === "[::1]" || /^(::ffff:)?127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/i.test(host);
}

/** The checks that span several of the edges' variables, each failure naming the variable to set. */
function checkEdgeEnv(env: ApiEnv): ApiEnv {
  const problems: string[] = [];
  if (env.NODE_ENV === "production" && env.BOOTSTRAP_API_KEY === DEVELOPMENT_BOOTSTRAP_API_KEY) {
    problems.push("BOOTSTRAP_API_KEY: is the well-known development key from docker/compose.yaml, refused when NODE_ENV=production; set a key of your own (e.g. csk_$(openssl rand -hex 24))");
  }
  if (env.METRICS_TOKEN === undefined && env.API_METRICS_PORT === undefined && !isLoopbackHost(env.HOST)) {
    problems.push(
      `METRICS_TOKEN: /metrics would be open to anyone reaching HOST=${env.HOST}; set METRICS_TOKEN (a bearer token for the scraper) or API_METRICS_PORT (a port of its own, on METRICS_HOST)`,
    );
  }
  if (env.CORS_ORIGINS.includes("*") && env.CORS_ORIGINS.length > 1) problems.push("CORS_ORIGINS: `*` already allows every origin; give it alone or list origins");
  if (problems.length > 0) throw new ConfigError(`invalid configuration:\n${problems.map((line) => `  ${line}`).join("\n")}`);
  return env;
}

export const ApiEnvSchema = z.object({
  PORT: intVar(3000, 0, 65535),
  HOST: z.string().default("127.0.0.1"),
  DATABASE_URL: z.string().url().default(DEFAULT_DATABASE_URL),
  /** Postgres without PgBouncer in between, for migrations (a session's advisory lock); unset: DATABASE_URL. */
  DIRECT_DATABASE_URL: optionalVar(z.string().url()),
  /** redis://, rediss://, redis+sentinel://... or redis+cluster://... (see parseRedisUrl in @coalesce/queue). */
  REDIS_URL: z.string().superRefine(checkRedisUrl).default(DEFAULT_REDIS_URL),
  // While Postgres is away a request answers 503 within this long rather than waiting for it.
  DATABASE_CONNECT_TIMEOUT_MS: intVar(2_000, 100),
  // The longest any one statement of the API may take (client and server side); 0 for no limit.
  DATABASE_QUERY_TIMEOUT_MS: intVar(30_000, 0),
  QUEUE_PREFIX: z.string().min(1).default(DEFAULT_QUEUE_PREFIX),
  MODEL_STORE_DIR: z.string().min(1).default(DEFAULT_MODEL_STORE_DIR),
  CHUNK_ROWS: intVar(1024, 1, 100_000),
  MAX_JOB_ROWS: intVar(100_000, 1),
  MAX_BODY_BYTES: intVar(64 * MiB, 1024),
  MAX_MODEL_BYTES: intVar(512 * MiB, 1024),
  MAX_UPLOAD_BYTES: intVar(4096 * MiB, 1024),
  /** CSV uploads: fields a row may have beyond the header's (a failed row); past it the upload is refused. */
  MAX_CSV_EXTRA_FIELDS: intVar(1000, 0, 1_000_000),
  /** CSV uploads: blank lines one file may hold before it is refused. */
  MAX_CSV_BLANK_LINES: intVar(10_000, 0),
  /**
   * An upload not seen alive this long (its API says so every 2 s) is taken for dead: a retry may
   * take its Idempotency-Key. The same setting as the worker's, which ends such an upload.
   */
  UPLOAD_STALE_MS: intVar(DEFAULT_UPLOAD_STALE_MS, MIN_UPLOAD_STALE_MS, MAX_UPLOAD_STALE_MS),
  /** Predict: most rows one request may carry. */
  PREDICT_MAX_ROWS: intVar(DEFAULT_PREDICT_MAX_ROWS, 1, 100_000),
  /** Predict: longest a request waits for its answer before a 504. */
  PREDICT_TIMEOUT_MS: intVar(10_000, 100, 300_000),
  /** Predict: most rows waiting for an answer over every API; past it a request is refused (503) at once. */
  PREDICT_MAX_BACKLOG_ROWS: intVar(16_384, 1),
  /** Predict: seconds an answered row stays in the result cache; 0 turns the cache off. */
  PREDICT_CACHE_TTL_S: intVar(300, 0, 30 * 24 * 3600),
  /** Predict: a row whose answer is larger than this (bytes of JSON) is not cached. */
  PREDICT_CACHE_MAX_ENTRY_BYTES: intVar(64 * 1024, 0),
  /** Predict: the Redis that holds the result cache, if not REDIS_URL (one with maxmemory and allkeys-lru). */
  PREDICT_CACHE_REDIS_URL: z.string().superRefine(checkRedisUrl).optional(),
  BOOTSTRAP_API_KEY: z.string().min(16, "use at least 16 characters").optional(),
  /** The tenant BOOTSTRAP_API_KEY belongs to; its admin keys may create keys for other tenants (POST /v1/api-keys `tenant`). */
  PLATFORM_TENANT: z.string().min(1).max(200).default(DEFAULT_PLATFORM_TENANT),
  MIGRATE_ON_START: boolVar(true),
  LOG_LEVEL: z.enum(LOG_LEVELS).default("info"),
  /** bull-board at /admin/queues for the platform tenant's admin keys: `read` (shows), `write` (also retry, clean, pause...), `off` (no route). */
  QUEUE_ADMIN: z.enum(QUEUE_ADMIN_MODES).default("read"),
  ...WebhookPolicyEnvShape,
  ...AuthEnvShape(),
  ...EdgeEnvShape(),
  ...RateLimitEnvShape(),
});
export type ApiEnv = z.infer<typeof ApiEnvSchema>;

export function loadApiEnv(env: NodeJS.ProcessEnv = process.env): ApiEnv {
  const parsed = checkEdgeEnv(checkAuthEnv(parseEnv(ApiEnvSchema, env)));
  // On a Redis Cluster every key needs the prefix's hash tag; the worker derives the same prefix.
  parsed.QUEUE_PREFIX = queuePrefixFor(parsed.REDIS_URL, parsed.QUEUE_PREFIX);
  readTlsFiles(parsed);
  return parsed;
}

/** The checks that span several auth variables, each failure naming the variable to set. */
function checkAuthEnv(env: ApiEnv): ApiEnv {
  const problems: string[] = [];
  const hmac = env.AUTH_JWT_ALGORITHMS.filter((name) => name.startsWith("HS"));
  if (!env.AUTH_JWT_ISSUER) {
    for (const name of ["AUTH_JWT_AUDIENCE", "AUTH_JWKS_URL", "AUTH_JWT_PUBLIC_KEY", "AUTH_JWT_SECRET"] as const) {
      if (env[name] !== undefined) problems.push(`${name}: is set but AUTH_JWT_ISSUER is not; set the issuer to turn JWT auth on`);
    }
  } else {
    if (!env.AUTH_JWT_AUDIENCE?.length) problems.push("AUTH_JWT_AUDIENCE: required with AUTH_JWT_ISSUER (the audience tokens for this API name)");
    if (env.AUTH_JWKS_URL && env.AUTH_JWT_PUBLIC_KEY) problems.push("AUTH_JWT_PUBLIC_KEY: set either it or AUTH_JWKS_URL, not both");
    if (!env.AUTH_JWKS_URL && !env.AUTH_JWT_PUBLIC_KEY && !env.AUTH_JWT_SECRET) {
      problems.push("AUTH_JWKS_URL: required with AUTH_JWT_ISSUER (or AUTH_JWT_PUBLIC_KEY, or AUTH_JWT_SECRET for HS256)");
    }
    if (hmac.length > 0 && !env.AUTH_JWT_SECRET) problems.push(`AUTH_JWT_ALGORITHMS: ${hmac.join(", ")} needs AUTH_JWT_SECRET`);
    if (env.AUTH_JWT_SECRET && hmac.length === 0) problems.push("AUTH_JWT_ALGORITHMS: AUTH_JWT_SECRET is set, so list HS256 (or HS384, HS512) here");
  }
  if (env.AUTH_JWT_ALGORITHMS.length === 0) problems.push("AUTH_JWT_ALGORITHMS: name at least one algorithm");
  if (problems.length > 0) throw new ConfigError(`invalid configuration:\n${problems.map((line) => `  ${line}`).join("\n")}`);
  return env;
}
