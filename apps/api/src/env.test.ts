import { ConfigError } from "@coalesce/contracts";
import { DEFAULT_UPLOAD_STALE_MS, MIN_UPLOAD_STALE_MS, UPLOAD_HEARTBEAT_MS } from "@coalesce/db";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEVELOPMENT_BOOTSTRAP_API_KEY, loadApiEnv } from "./env.ts";

describe("API configuration", () => {
  it("takes an upload for dead after UPLOAD_STALE_MS, the worker's setting, and refuses a bound of fewer than five heartbeats", () => {
    expect(loadApiEnv({}).UPLOAD_STALE_MS).toBe(DEFAULT_UPLOAD_STALE_MS);
    expect(loadApiEnv({ UPLOAD_STALE_MS: "10000" }).UPLOAD_STALE_MS).toBe(10_000);
    expect(MIN_UPLOAD_STALE_MS).toBe(5 * UPLOAD_HEARTBEAT_MS);
    expect(() => loadApiEnv({ UPLOAD_STALE_MS: "5000" })).toThrow(/UPLOAD_STALE_MS/);
    expect(() => loadApiEnv({ UPLOAD_STALE_MS: "5000" })).toThrow(ConfigError);
  });

  it("puts the bootstrap key in PLATFORM_TENANT, 'default' unless set, and refuses an empty name", () => {
    expect(loadApiEnv({}).PLATFORM_TENANT).toBe("default");
    expect(loadApiEnv({ PLATFORM_TENANT: "platform" }).PLATFORM_TENANT).toBe("platform");
    expect(() => loadApiEnv({ PLATFORM_TENANT: "" })).toThrow(/PLATFORM_TENANT/);
  });
});

describe("authentication configuration (JWT, failure throttle)", () => {
  const jwt = { AUTH_JWT_ISSUER: "https://issuer.example/", AUTH_JWT_AUDIENCE: "coalesce", AUTH_JWKS_URL: "https://issuer.example/jwks.json" };
  const pem = ["-----BEGIN PUBLIC KEY-----", "MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=", "-----END PUBLIC KEY-----"];

  it("is off with API keys only by default, throttling 20 failures per 10 s per address, no proxy trusted", () => {
    const env = loadApiEnv({});
    expect(env.AUTH_JWT_ISSUER).toBeUndefined();
    expect(env.AUTH_JWT_ALGORITHMS).toEqual(["RS256", "ES256", "EdDSA", "PS256"]);
    expect(env.AUTH_JWT_CLOCK_TOLERANCE_S).toBe(30);
    expect(env.AUTH_JWT_TENANT_CLAIM).toBe("tenant");
    expect([env.AUTH_FAILURE_LIMIT, env.AUTH_FAILURE_WINDOW_S, env.TRUST_PROXY]).toEqual([20, 10, false]);
    // compose passes an unset variable as "".
    expect(loadApiEnv({ AUTH_JWT_ISSUER: "", AUTH_JWKS_URL: "" }).AUTH_JWT_ISSUER).toBeUndefined();
  });

  it("takes an issuer with its audiences and a JWKS URL or one PEM key (\\n for line breaks)", () => {
    const env = loadApiEnv({ ...jwt, AUTH_JWT_AUDIENCE: "coalesce, coalesce-admin" });
    expect([env.AUTH_JWT_ISSUER, env.AUTH_JWT_AUDIENCE, env.AUTH_JWKS_URL]).toEqual([jwt.AUTH_JWT_ISSUER, ["coalesce", "coalesce-admin"], jwt.AUTH_JWKS_URL]);
    const withPem = loadApiEnv({ ...jwt, AUTH_JWKS_URL: undefined, AUTH_JWT_PUBLIC_KEY: pem.join("\\n") });
    expect(withPem.AUTH_JWT_PUBLIC_KEY).toBe(pem.join("\n"));
    expect(() => loadApiEnv({ ...jwt, AUTH_JWKS_URL: undefined, AUTH_JWT_PUBLIC_KEY: "not a key" })).toThrow(/AUTH_JWT_PUBLIC_KEY: expected a PEM public key/);
  });

  it("never accepts alg none, and HS* only with a shared secret of 32 characters or more", () => {
    expect(() => loadApiEnv({ ...jwt, AUTH_JWT_ALGORITHMS: "RS256,none" })).toThrow(/AUTH_JWT_ALGORITHMS: 'none'/);
    expect(() => loadApiEnv({ ...jwt, AUTH_JWT_ALGORITHMS: "RS1" })).toThrow(/AUTH_JWT_ALGORITHMS: unknown algorithm 'RS1'/);
    expect(() => loadApiEnv({ ...jwt, AUTH_JWT_ALGORITHMS: "RS256,HS256" })).toThrow(/AUTH_JWT_ALGORITHMS: HS256 needs AUTH_JWT_SECRET/);
    expect(() => loadApiEnv({ ...jwt, AUTH_JWT_SECRET: "x".repeat(31), AUTH_JWT_ALGORITHMS: "HS256" })).toThrow(/AUTH_JWT_SECRET: use at least 32/);
    expect(() => loadApiEnv({ ...jwt, AUTH_JWT_SECRET: "x".repeat(32) })).toThrow(/AUTH_JWT_ALGORITHMS: AUTH_JWT_SECRET is set, so list HS256/);
    expect(loadApiEnv({ ...jwt, AUTH_JWT_SECRET: "x".repeat(32), AUTH_JWT_ALGORITHMS: "RS256,HS256" }).AUTH_JWT_ALGORITHMS).toEqual(["RS256", "HS256"]);
  });

  it("refuses a half configuration, naming the variable to set", () => {
    expect(() => loadApiEnv({ ...jwt, AUTH_JWT_AUDIENCE: undefined })).toThrow(/AUTH_JWT_AUDIENCE: required with AUTH_JWT_ISSUER/);
    expect(() => loadApiEnv({ ...jwt, AUTH_JWKS_URL: undefined })).toThrow(/AUTH_JWKS_URL: required with AUTH_JWT_ISSUER/);
    expect(() => loadApiEnv({ ...jwt, AUTH_JWT_PUBLIC_KEY: pem.join("\n") })).toThrow(/AUTH_JWT_PUBLIC_KEY: set either it or AUTH_JWKS_URL/);
    expect(() => loadApiEnv({ AUTH_JWKS_URL: jwt.AUTH_JWKS_URL })).toThrow(/AUTH_JWKS_URL: is set but AUTH_JWT_ISSUER is not/);
    expect(() => loadApiEnv({ ...jwt, AUTH_JWKS_URL: "not a url" })).toThrow(/AUTH_JWKS_URL/);
    expect(() => loadApiEnv({ ...jwt, AUTH_JWT_CLOCK_TOLERANCE_S: "3600" })).toThrow(/AUTH_JWT_CLOCK_TOLERANCE_S/);
    expect(() => loadApiEnv({ ...jwt, AUTH_JWT_ALGORITHMS: " , " })).toThrow(/AUTH_JWT_ALGORITHMS: name at least one/);
    expect(() => loadApiEnv({ TRUST_PROXY: "maybe" })).toThrow(/TRUST_PROXY/);
    expect(loadApiEnv({ AUTH_FAILURE_LIMIT: "0" }).AUTH_FAILURE_LIMIT).toBe(0);
  });
});

describe("the edges' configuration (/metrics, the development key, CORS)", () => {
  it("keeps /metrics open on a loopback HOST by default, and refuses any other HOST without METRICS_TOKEN or API_METRICS_PORT", () => {
    const env = loadApiEnv({});
    expect([env.METRICS_TOKEN, env.API_METRICS_PORT, env.METRICS_HOST, env.NODE_ENV, env.CORS_ORIGINS]).toEqual([undefined, undefined, "127.0.0.1", "development", []]);
    for (const host of ["localhost", "127.0.0.1", "127.1.2.3", "::1"]) expect(loadApiEnv({ HOST: host }).HOST).toBe(host);
    for (const host of ["0.0.0.0", "::", "10.0.0.5"]) {
      expect(() => loadApiEnv({ HOST: host })).toThrow(/METRICS_TOKEN: \/metrics would be open.*set METRICS_TOKEN .* or API_METRICS_PORT/);
    }
    expect(loadApiEnv({ HOST: "0.0.0.0", METRICS_TOKEN: "a-metrics-token-of-16+" }).METRICS_TOKEN).toBe("a-metrics-token-of-16+");
    expect(loadApiEnv({ HOST: "0.0.0.0", API_METRICS_PORT: "9464", METRICS_HOST: "0.0.0.0" })).toMatchObject({ API_METRICS_PORT: 9464, METRICS_HOST: "0.0.0.0" });
    // compose passes an unset variable as "".
    expect(loadApiEnv({ METRICS_TOKEN: "", API_METRICS_PORT: "" })).toMatchObject({ METRICS_TOKEN: undefined, API_METRICS_PORT: undefined });
    expect(() => loadApiEnv({ METRICS_TOKEN: "short" })).toThrow(/METRICS_TOKEN: use at least 16/);
    expect(() => loadApiEnv({ API_METRICS_PORT: "70000" })).toThrow(/API_METRICS_PORT/);
  });

  it("refuses the development key (compose's default) only when NODE_ENV=production", () => {
    expect(loadApiEnv({ BOOTSTRAP_API_KEY: DEVELOPMENT_BOOTSTRAP_API_KEY }).BOOTSTRAP_API_KEY).toBe(DEVELOPMENT_BOOTSTRAP_API_KEY);
    expect(() => loadApiEnv({ NODE_ENV: "production", BOOTSTRAP_API_KEY: DEVELOPMENT_BOOTSTRAP_API_KEY })).toThrow(/BOOTSTRAP_API_KEY: is the well-known development key/);
    expect(loadApiEnv({ NODE_ENV: "production", BOOTSTRAP_API_KEY: "csk_a-key-of-my-own-0123" }).NODE_ENV).toBe("production");
    expect(loadApiEnv({ NODE_ENV: "production" }).BOOTSTRAP_API_KEY).toBeUndefined();
  });

  it("takes CORS_ORIGINS as origins exactly as a browser sends them, or `*` alone", () => {
    expect(loadApiEnv({ CORS_ORIGINS: "https://app.example.com, http://localhost:5173" }).CORS_ORIGINS).toEqual(["https://app.example.com", "http://localhost:5173"]);
    expect(loadApiEnv({ CORS_ORIGINS: "*" }).CORS_ORIGINS).toEqual(["*"]);
    expect(loadApiEnv({ CORS_ORIGINS: "" }).CORS_ORIGINS).toEqual([]);
    for (const bad of ["app.example.com", "https://app.example.com/", "https://app.example.com/path", "https://App.example.com", "https://app.example.com:443", "ftp://files.example.com"]) {
      expect(() => loadApiEnv({ CORS_ORIGINS: bad }), bad).toThrow(/CORS_ORIGINS: '.*' is not an origin/);
    }
    expect(() => loadApiEnv({ CORS_ORIGINS: "*,https://app.example.com" })).toThrow(/CORS_ORIGINS: `\*` already allows every origin/);
  });

  it("has generous rate limits and quotas by default, 0 turning each off", () => {
    expect(loadApiEnv({})).toMatchObject({ RATE_LIMIT_REQUESTS_PER_SECOND: 1_000, RATE_LIMIT_ROWS_PER_MINUTE: 10_000_000, QUOTA_QUEUED_ROWS: 50_000_000 });
    expect(loadApiEnv({ RATE_LIMIT_REQUESTS_PER_SECOND: "0", RATE_LIMIT_ROWS_PER_MINUTE: "0", QUOTA_QUEUED_ROWS: "0" })).toMatchObject({
      RATE_LIMIT_REQUESTS_PER_SECOND: 0,
      RATE_LIMIT_ROWS_PER_MINUTE: 0,
      QUOTA_QUEUED_ROWS: 0,
    });
    for (const name of ["RATE_LIMIT_REQUESTS_PER_SECOND", "RATE_LIMIT_ROWS_PER_MINUTE", "QUOTA_QUEUED_ROWS"]) {
      expect(() => loadApiEnv({ [name]: "-1" }), name).toThrow(new RegExp(name));
      expect(() => loadApiEnv({ [name]: "many" }), name).toThrow(new RegExp(name));
    }
  });
});

describe("native TLS (TLS_CERT_FILE, TLS_KEY_FILE)", () => {
  const HAS_OPENSSL = spawnSync("openssl", ["version"], { stdio: "ignore" }).status === 0;
  let dir: string;

  /** A self-signed pair from the openssl CLI (Node's crypto makes keys, not X.509 certificates). */
  function makePair(name: string): { cert: string; key: string } {
    const cert = path.join(dir, `${name}.crt`);
    const key = path.join(dir, `${name}.key`);
    execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout", key, "-out", cert], { stdio: "ignore" });
    return { cert, key };
  }

  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), "coalesce-tls-env-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("is off by default, and needs both variables or neither, naming the missing one", () => {
    const off = loadApiEnv({});
    expect([off.TLS_CERT_FILE, off.TLS_KEY_FILE]).toEqual([undefined, undefined]);
    expect(loadApiEnv({ TLS_CERT_FILE: "", TLS_KEY_FILE: "" }).TLS_CERT_FILE).toBeUndefined();
    expect(() => loadApiEnv({ TLS_CERT_FILE: "/etc/coalesce/tls.crt" })).toThrow(/TLS_KEY_FILE: required with TLS_CERT_FILE/);
    expect(() => loadApiEnv({ TLS_KEY_FILE: "/etc/coalesce/tls.key" })).toThrow(/TLS_CERT_FILE: required with TLS_KEY_FILE/);
    expect(() => loadApiEnv({ TLS_KEY_FILE: "/etc/coalesce/tls.key" })).toThrow(ConfigError);
  });

  it.skipIf(!HAS_OPENSSL)("takes a readable PEM pair, and refuses an unreadable file or a key of another certificate, naming the file", () => {
    const ours = makePair("ours");
    const other = makePair("other");
    expect(loadApiEnv({ TLS_CERT_FILE: ours.cert, TLS_KEY_FILE: ours.key })).toMatchObject({ TLS_CERT_FILE: ours.cert, TLS_KEY_FILE: ours.key });
    const missing = path.join(dir, "missing.key");
    expect(() => loadApiEnv({ TLS_CERT_FILE: ours.cert, TLS_KEY_FILE: missing })).toThrow(`TLS_KEY_FILE: cannot read ${missing} (ENOENT)`);
    expect(() => loadApiEnv({ TLS_CERT_FILE: dir, TLS_KEY_FILE: ours.key })).toThrow(`TLS_CERT_FILE: cannot read ${dir} (EISDIR)`);
    expect(() => loadApiEnv({ TLS_CERT_FILE: ours.cert, TLS_KEY_FILE: other.key })).toThrow(/TLS_KEY_FILE: .*other\.key and TLS_CERT_FILE: .*ours\.crt are not a PEM key and its certificate/);
    // A certificate given where the key belongs (the usual mix-up) is caught the same way.
    expect(() => loadApiEnv({ TLS_CERT_FILE: ours.cert, TLS_KEY_FILE: ours.cert })).toThrow(/are not a PEM key and its certificate/);
  });
});

describe("Redis topology (REDIS_URL)", () => {
  it("takes one Redis, Sentinel and Cluster URLs, and hash-tags the queue prefix on a cluster", () => {
    expect(loadApiEnv({}).QUEUE_PREFIX).toBe("coalesce");
    expect(loadApiEnv({ REDIS_URL: "redis+sentinel://s1:26379,s2:26379/mymaster" }).QUEUE_PREFIX).toBe("coalesce");
    const cluster = loadApiEnv({ REDIS_URL: "redis+cluster://n1:7000,n2:7001", QUEUE_PREFIX: "prod" });
    expect([cluster.REDIS_URL, cluster.QUEUE_PREFIX]).toEqual(["redis+cluster://n1:7000,n2:7001", "{prod}"]);
    expect(loadApiEnv({ PREDICT_CACHE_REDIS_URL: "redis+cluster://c1:7000" }).PREDICT_CACHE_REDIS_URL).toBe("redis+cluster://c1:7000");
  });

  it("refuses an unknown form or a prefix whose braces are no hash tag, naming the variable", () => {
    expect(() => loadApiEnv({ REDIS_URL: "redis+sentinel://s1:26379" })).toThrow(/REDIS_URL: redis\+sentinel:\/\/ needs the master's name/);
    expect(() => loadApiEnv({ PREDICT_CACHE_REDIS_URL: "memcached://c1" })).toThrow(/PREDICT_CACHE_REDIS_URL: unknown scheme/);
    expect(() => loadApiEnv({ REDIS_URL: "redis+cluster://n1:7000", QUEUE_PREFIX: "a{b" })).toThrow(/QUEUE_PREFIX: .*no hash tag/);
  });
});

describe("queue admin (QUEUE_ADMIN)", () => {
  it("shows the queues read-only unless told otherwise, and refuses a mode it does not know, naming the variable", () => {
    expect(loadApiEnv({}).QUEUE_ADMIN).toBe("read");
    expect(loadApiEnv({ QUEUE_ADMIN: "write" }).QUEUE_ADMIN).toBe("write");
    expect(loadApiEnv({ QUEUE_ADMIN: "off" }).QUEUE_ADMIN).toBe("off");
    expect(() => loadApiEnv({ QUEUE_ADMIN: "yes" })).toThrow(/QUEUE_ADMIN/);
  });
});
