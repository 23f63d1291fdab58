import { allows } from "@coalesce/contracts";
import { findApiKeyOwner, SingleFlight, touchApiKey, type ApiKeyOwner, type Database } from "@coalesce/db";
import type { Context, MiddlewareHandler } from "hono";
import { hashApiKey } from "../auth/api-keys.ts";
import { InvalidTokenError, IssuerUnavailableError, looksLikeJwt, type JwtVerifier } from "../auth/jwt.ts";
import type { ScopeTable } from "../auth/scopes.ts";
import type { AppEnv, Principal } from "../context.ts";
import { ApiError, problemResponse, RETRY_AFTER_SECONDS } from "../errors.ts";

/** Records a key's use at most this often per process. */
const TOUCH_EVERY_MS = 60_000;

/**
 * How long a valid key is trusted without asking Postgres again: a revoked key stops working within
 * this long. A predict request answered from the cache takes about a millisecond, and the key's
 * lookup was a third of it. A JWT's tenant (by name) is remembered as long.
 */
const TRUST_MS = 1_000;

/**
 * How long a key that is not valid is remembered as such, so the same wrong key sent again and
 * again costs no Postgres round trip each; a key created a moment after it was tried waits this long.
 */
const REFUSE_MS = 1_000;

/** Most keys (valid or not) and tenants remembered per process; past it the memory starts afresh. */
const MAX_REMEMBERED = 10_000;

/** Most client addresses whose failures are counted; past it the expired ones are dropped, then all. */
const MAX_ADDRESSES = 100_000;

const REALM = 'Bearer realm="coalesce"';
const BASIC_REALM = 'Basic realm="coalesce admin", charset="UTF-8"';

/** How long a credential that authenticated may pass an address's failure throttle (it is still checked each time). */
const RECENTLY_VALID_MS = 10 * 60_000;

/** How the API authenticates, beside its API keys (from env: AUTH_JWT_*, AUTH_FAILURE_*, TRUST_PROXY). */
export type AuthOptions = {
  /** Verifies JWT bearer tokens; null or absent: only API keys are accepted. */
  jwt?: JwtVerifier | null | undefined;
  /** Failed authentications one client address may make per window before a 429; 0: no limit. @defaultValue 20 */
  failureLimit?: number | undefined;
  /** @defaultValue 10,000 */
  failureWindowMs?: number | undefined;
  /** Take the client address from the last X-Forwarded-For entry (the API is behind a proxy). @defaultValue false */
  trustProxy?: boolean | undefined;
  /**
   * Paths where the key is also taken as the password of HTTP Basic (any user name), and the
   * challenge is Basic: pages a person opens in a browser (the queue admin), which cannot send a
   * Bearer header but prompts for Basic and then sends it with every request of the page. One
   * middleware serves both, so the failure throttle and the recently-valid credentials are shared.
   * @defaultValue none
   */
  basicFor?: ((path: string) => boolean) | undefined;
};

/**
 * `Authorization: Bearer <key or JWT>`: sets the caller (tenant, key or token subject, scopes) for
 * every route behind it, and refuses (403) a route whose scope (its OpenAPI `security`, see
 * ScopeTable) the caller lacks. A value shaped like a JWT is verified as one; anything else is an
 * API key. An address that failed too often is refused (429) before any of that.
 */
export function requireApiKey(db: Database, scopes: ScopeTable, options: AuthOptions = {}): MiddlewareHandler<AppEnv> {
  const touched = new Map<string, number>();
  const throttle = new FailureThrottle(options.failureLimit ?? 20, options.failureWindowMs ?? 10_000);
  const keys = new BriefMemory<ApiKeyOwner | null>((hash) => findApiKeyOwner(db, hash), (owner) => (owner ? TRUST_MS : REFUSE_MS));
  const tenants = new BriefMemory<string | null>((name) => findTenantId(db, name), () => TRUST_MS);

  const identify = async (c: Context<AppEnv>, credential: string): Promise<Principal> => {
    if (looksLikeJwt(credential)) {
      if (!options.jwt) throw new ApiError("unauthorized", "this server does not accept JWT bearer tokens (AUTH_JWT_ISSUER is not set); send an API key");
      const token = await verifyToken(options.jwt, credential);
      const tenantId = await tenants.get(token.tenantName);
      // Refused rather than created: a tenant exists only when an admin made it, whatever a token says.
      if (!tenantId) throw new ApiError("unauthorized", `the bearer token names the tenant '${token.tenantName.slice(0, 100)}', which does not exist here`);
      return { tenantId, actor: `token:${token.subject}`, keyId: null, scopes: token.scopes, rateLimitRps: null };
    }
    // Requests that arrive together with the same key share one lookup, and a valid key is trusted
    // for TRUST_MS after it (a wrong one refused for REFUSE_MS).
    const owner = await keys.get(hashApiKey(credential));
    if (!owner) throw new ApiError("unauthorized", "the API key is not valid; create one with `npm run keys:create -- --name NAME`");
    const now = Date.now();
    if ((touched.get(owner.keyId) ?? 0) < now - TOUCH_EVERY_MS) {
      if (touched.size >= MAX_REMEMBERED) touched.clear();
      touched.set(owner.keyId, now);
      // Bookkeeping only: the request does not wait for it, and a failure is just logged.
      touchApiKey(db.prisma, owner.keyId).catch((error: unknown) => c.get("logger").warn({ err: error }, "could not record key use"));
    }
    return { tenantId: owner.tenantId, actor: owner.keyId, keyId: owner.keyId, scopes: owner.scopes, rateLimitRps: owner.rateLimitRps };
  };

  // Credentials that authenticated lately: an address over its failure limit (behind a proxy, many
  // clients share one) still lets these through, so someone else's wrong keys cannot lock them out.
  const recentlyValid = new Map<string, number>();

  return async (c, next) => {
    const basic = options.basicFor?.(c.req.path) ?? false;
    const credential = readCredential(c.req.header("authorization") ?? "", basic);
    const fingerprint = credential ? hashApiKey(credential) : null;
    const address = throttle.enabled ? clientAddress(c, options.trustProxy ?? false) : null;
    const wait = address ? throttle.retryAfterSeconds(address) : 0;
    if (wait > 0 && !(fingerprint && (recentlyValid.get(fingerprint) ?? 0) > performance.now())) {
      const response = problemResponse(c, new ApiError("rate_limited", `too many failed authentications from this address; retry in ${wait} s`));
      response.headers.set("Retry-After", String(wait));
      return response;
    }
    let principal: Principal;
    try {
      if (!credential) {
        throw new ApiError(
          "unauthorized",
          basic ? "sign in with an API key as the password (any user name), or send it as 'Authorization: Bearer <key>'" : "send your API key (or an OAuth 2.0 access token) as 'Authorization: Bearer <key>'",
        );
      }
      principal = await identify(c, credential);
      if (fingerprint) {
        if (recentlyValid.size >= MAX_REMEMBERED) recentlyValid.clear();
        recentlyValid.set(fingerprint, performance.now() + RECENTLY_VALID_MS);
      }
    } catch (error) {
      if (!(error instanceof ApiError) || error.code !== "unauthorized") throw error;
      if (address) throttle.fail(address);
      const response = problemResponse(c, error);
      // RFC 6750 §3.1: a credential that was sent and refused is an invalid_token. A browser asked
      // for Basic prompts again (RFC 7617 has no error parameter).
      response.headers.set("WWW-Authenticate", basic ? BASIC_REALM : credential ? `${REALM}, error="invalid_token"` : REALM);
      return response;
    }
    try {
      authenticate(c, principal, scopes);
    } catch (error) {
      if (!(error instanceof ApiError) || error.code !== "forbidden") throw error;
      const response = problemResponse(c, error);
      response.headers.set("WWW-Authenticate", `${REALM}, error="insufficient_scope", scope="${scopes.scopeFor(c.req.method, c.req.path) ?? ""}"`);
      return response;
    }
    await next();
  };
}

/** `Authorization: Bearer <credential>`, or with `basic` also the password of `Basic base64(user:password)`. */
function readCredential(header: string, basic: boolean): string | undefined {
  const bearer = /^Bearer\s+(\S+)$/i.exec(header)?.[1];
  if (bearer || !basic) return bearer;
  const encoded = /^Basic\s+([A-Za-z0-9+/]+={0,2})$/i.exec(header)?.[1];
  if (!encoded) return undefined;
  const pair = Buffer.from(encoded, "base64").toString("utf8");
  const colon = pair.indexOf(":");
  return colon >= 0 && colon < pair.length - 1 ? pair.slice(colon + 1) : undefined;
}

/** Sets the request's caller, then checks that it may use the route it asked for (403 naming the scope). */
export function authenticate(c: Context<AppEnv>, principal: Principal, scopes: ScopeTable): void {
  c.set("principal", principal);
  c.set("tenantId", principal.tenantId);
  c.set("keyId", principal.actor);
  c.set("logger", c.get("logger").child({ tenantId: principal.tenantId }));
  const needed = scopes.scopeFor(c.req.method, c.req.path);
  if (needed && !allows(principal.scopes, needed)) {
    throw new ApiError("forbidden", `this ${principal.keyId ? "key" : "token"} lacks the scope '${needed}' that ${c.req.method} ${c.req.path} needs; use a key or token with it (or admin)`);
  }
}

async function verifyToken(jwt: JwtVerifier, token: string) {
  try {
    return await jwt.verify(token);
  } catch (error) {
    if (error instanceof InvalidTokenError) throw new ApiError("unauthorized", `the bearer token is not valid: ${error.message}`);
    // The token may be fine: the client should retry, not throw it away.
    if (error instanceof IssuerUnavailableError) throw new ApiError("service_unavailable", `${error.message}; retry in ${RETRY_AFTER_SECONDS} s`);
    throw error;
  }
}

async function findTenantId(db: Database, name: string): Promise<string | null> {
  const { rows } = await db.pool.query<{ id: string }>({ name: "find-tenant-by-name", text: "SELECT id FROM tenants WHERE name = $1", values: [name] });
  return rows[0]?.id ?? null;
}

/**
 * Who is calling, for the failure throttle: the socket's peer, or with TRUST_PROXY the last
 * X-Forwarded-For entry (the one our own proxy added; the ones before it are the client's say).
 * Null for an in-process request (tests), which is then not throttled.
 */
function clientAddress(c: Context<AppEnv>, trustProxy: boolean): string | null {
  if (trustProxy) {
    const forwarded = c.req.header("x-forwarded-for")?.split(",").map((part) => part.trim()).filter((part) => part !== "");
    const last = forwarded?.at(-1);
    if (last) return last.replace(/^::ffff:/, "");
  }
  const peer = c.env?.incoming?.socket?.remoteAddress;
  return peer ? peer.replace(/^::ffff:/, "") : null;
}

/**
 * Failed authentications per client address in fixed windows, in this process's memory: each API
 * replica counts its own (a client spread over N replicas gets N times the limit, still far from
 * the thousands a second an unthrottled guesser gets).
 */
class FailureThrottle {
  readonly #windows = new Map<string, { start: number; failures: number }>();
  readonly #limit: number;
  readonly #windowMs: number;

  constructor(limit: number, windowMs: number) {
    this.#limit = limit;
    this.#windowMs = windowMs;
  }

  get enabled(): boolean {
    return this.#limit > 0;
  }

  /** Seconds until the address may try again; 0 while it is under the limit. */
  retryAfterSeconds(address: string): number {
    const window = this.#windows.get(address);
    if (!window || window.failures < this.#limit) return 0;
    const left = window.start + this.#windowMs - performance.now();
    return left > 0 ? Math.ceil(left / 1000) : 0;
  }

  fail(address: string): void {
    const now = performance.now();
    const window = this.#windows.get(address);
    if (window && now - window.start < this.#windowMs) {
      window.failures += 1;
      return;
    }
    if (!window && this.#windows.size >= MAX_ADDRESSES) {
      for (const [key, old] of this.#windows) if (now - old.start >= this.#windowMs) this.#windows.delete(key);
      if (this.#windows.size >= MAX_ADDRESSES) this.#windows.clear();
    }
    this.#windows.set(address, { start: now, failures: 1 });
  }
}

/** Answers looked up in Postgres, remembered for as long as `keepMs` says, with concurrent lookups shared. */
class BriefMemory<V> {
  readonly #entries = new Map<string, { value: V; until: number }>();
  readonly #lookups = new SingleFlight<V>();
  readonly #read: (key: string) => Promise<V>;
  readonly #keepMs: (value: V) => number;

  constructor(read: (key: string) => Promise<V>, keepMs: (value: V) => number) {
    this.#read = read;
    this.#keepMs = keepMs;
  }

  async get(key: string): Promise<V> {
    const known = this.#entries.get(key);
    if (known && performance.now() < known.until) return known.value;
    const value = await this.#lookups.run(key, () => this.#read(key));
    if (this.#entries.size >= MAX_REMEMBERED) this.#entries.clear();
    this.#entries.set(key, { value, until: performance.now() + this.#keepMs(value) });
    return value;
  }
}
