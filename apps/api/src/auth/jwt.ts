import { createPublicKey, createSecretKey, type KeyObject } from "node:crypto";
import { SCOPES, type Scope } from "@coalesce/contracts";
import { createRemoteJWKSet, decodeProtectedHeader, errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from "jose";
import type { ApiEnv, JwtAlgorithm } from "../env.ts";

/** How a token is checked: who issued it, for whom, with which keys and algorithms. */
export type JwtSettings = {
  issuer: string;
  audience: string[];
  /** The issuer's JWKS (fetched, cached, refetched for an unknown `kid`), or one public key as PEM. */
  jwksUrl?: string | undefined;
  publicKeyPem?: string | undefined;
  /** The shared secret for HS256/384/512; without it no HS* token is accepted. */
  secret?: string | undefined;
  algorithms: readonly JwtAlgorithm[];
  clockToleranceS: number;
  /** The claim holding the tenant's name. @defaultValue "tenant" */
  tenantClaim: string;
  /** Least time between two fetches of the JWKS for an unknown `kid`. @defaultValue 60,000 */
  jwksCooldownMs?: number | undefined;
  /** Longest a fetched JWKS is used before it is fetched again. @defaultValue 600,000 */
  jwksMaxAgeMs?: number | undefined;
};

/** What a verified token says about its caller. */
export type TokenIdentity = { subject: string; tenantName: string; scopes: Scope[] };

/** A token that does not verify; its message says why, for the 401's detail. */
export class InvalidTokenError extends Error {}

/** The issuer's key set could not be fetched (a 503: the token may well be good). */
export class IssuerUnavailableError extends Error {}

/** Three base64url parts: a JWS in compact form (the signature may be empty, as an `alg: none` token's is). */
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/** Whether a bearer value is a JWT rather than an API key (keys never hold a dot). */
export function looksLikeJwt(value: string): boolean {
  return JWT_SHAPE.test(value);
}

/** The verifier's settings from the environment; null when JWT auth is off (no AUTH_JWT_ISSUER). */
export function jwtSettingsFromEnv(env: ApiEnv): JwtSettings | null {
  if (!env.AUTH_JWT_ISSUER) return null;
  return {
    issuer: env.AUTH_JWT_ISSUER,
    audience: env.AUTH_JWT_AUDIENCE ?? [],
    jwksUrl: env.AUTH_JWKS_URL,
    publicKeyPem: env.AUTH_JWT_PUBLIC_KEY,
    secret: env.AUTH_JWT_SECRET,
    algorithms: env.AUTH_JWT_ALGORITHMS as JwtAlgorithm[],
    clockToleranceS: env.AUTH_JWT_CLOCK_TOLERANCE_S,
    tenantClaim: env.AUTH_JWT_TENANT_CLAIM,
  };
}

/**
 * Verifies bearer tokens from one OAuth 2.0 / OIDC issuer with `jose`: the signature (by an
 * allow-listed algorithm, never `none`), `iss`, `aud`, `exp` (required) and `nbf` with a small
 * leeway, then reads the subject, the tenant and the scopes. Built once per process: the JWKS it
 * fetches is shared by every request.
 */
export class JwtVerifier {
  readonly #settings: JwtSettings;
  readonly #getKey: JWTVerifyGetKey;

  constructor(settings: JwtSettings) {
    this.#settings = settings;
    const secret: KeyObject | null = settings.secret ? createSecretKey(Buffer.from(settings.secret, "utf8")) : null;
    const publicKey: KeyObject | null = settings.publicKeyPem ? createPublicKey(settings.publicKeyPem) : null;
    const jwks = settings.jwksUrl
      ? createRemoteJWKSet(new URL(settings.jwksUrl), {
          // An unknown kid (a rotation, or a forged token) refetches at most this often, so forged
          // kids cannot make the API hammer the issuer.
          cooldownDuration: settings.jwksCooldownMs ?? 60_000,
          cacheMaxAge: settings.jwksMaxAgeMs ?? 600_000,
          timeoutDuration: 5_000,
        })
      : null;
    this.#getKey = async (header, token) => {
      // An HS* token is checked with the shared secret only, never with a public key taken as an
      // HMAC secret (the classic algorithm confusion); the allow-list has already refused HS* without one.
      if (header.alg?.startsWith("HS")) {
        if (!secret) throw new InvalidTokenError(`its algorithm '${header.alg}' is not accepted`);
        return secret;
      }
      if (publicKey) return publicKey;
      if (!jwks) throw new InvalidTokenError(`its algorithm '${header.alg ?? "?"}' needs a public key, and none is configured (AUTH_JWKS_URL or AUTH_JWT_PUBLIC_KEY)`);
      try {
        return await jwks(header, token);
      } catch (error) {
        if (error instanceof errors.JWKSNoMatchingKey || error instanceof errors.JWKSMultipleMatchingKeys) throw error;
        if (error instanceof errors.JOSENotSupported || error instanceof errors.JWKInvalid) throw error;
        throw new IssuerUnavailableError(`the token issuer's key set (${settings.jwksUrl}) could not be fetched: ${(error as Error).message}`);
      }
    };
  }

  /** The token's caller; throws InvalidTokenError (a 401) or IssuerUnavailableError (a 503). */
  async verify(token: string): Promise<TokenIdentity> {
    const settings = this.#settings;
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.#getKey, {
        issuer: settings.issuer,
        audience: settings.audience,
        algorithms: [...settings.algorithms],
        clockTolerance: settings.clockToleranceS,
        requiredClaims: ["exp", "sub"],
      }));
    } catch (error) {
      if (error instanceof IssuerUnavailableError || error instanceof InvalidTokenError) throw error;
      throw new InvalidTokenError(describeFailure(error, token));
    }
    const tenantName = payload[settings.tenantClaim];
    if (typeof tenantName !== "string" || tenantName === "") {
      throw new InvalidTokenError(`it has no '${settings.tenantClaim}' claim naming its tenant`);
    }
    return { subject: payload.sub as string, tenantName, scopes: readScopes(payload) };
  }
}

/** Scopes from `scope` (space-separated, RFC 8693) or `scp` (an array or a string); unknown ones are ignored. */
export function readScopes(payload: JWTPayload): Scope[] {
  const words: string[] = [];
  for (const claim of [payload.scope, payload.scp]) {
    if (typeof claim === "string") words.push(...claim.split(/\s+/));
    else if (Array.isArray(claim)) words.push(...claim.filter((item): item is string => typeof item === "string"));
  }
  return SCOPES.filter((scope) => words.includes(scope));
}

/** Why jose refused a token, in words for the 401 (never the token itself). */
function describeFailure(error: unknown, token: string): string {
  if (error instanceof errors.JWTExpired) {
    const exp = typeof error.payload.exp === "number" ? ` at ${new Date(error.payload.exp * 1000).toISOString()}` : "";
    return `it expired${exp}`;
  }
  if (error instanceof errors.JWTClaimValidationFailed) {
    if (error.reason === "missing") return `its '${error.claim}' claim is missing`;
    if (error.claim === "nbf") return "it is not valid yet (nbf)";
    if (error.claim === "iss") return "it was issued by another issuer (iss)";
    if (error.claim === "aud") return "it is meant for another audience (aud)";
    return `its '${error.claim}' claim is not valid`;
  }
  if (error instanceof errors.JOSEAlgNotAllowed) return `its algorithm '${headerAlg(token)}' is not accepted`;
  if (error instanceof errors.JWSSignatureVerificationFailed) return "its signature does not verify";
  if (error instanceof errors.JWKSNoMatchingKey) return "no key of the issuer's key set matches its kid";
  return "it is malformed or signed with a key that does not fit its algorithm";
}

function headerAlg(token: string): string {
  try {
    return String(decodeProtectedHeader(token).alg ?? "?").slice(0, 16);
  } catch {
    return "?";
  }
}
