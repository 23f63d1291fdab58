import { createHash, type Hash } from "node:crypto";
import { pipeline, Transform, type Readable } from "node:stream";
import type { CreateJobRequest } from "@coalesce/contracts";
import {
  claimIdempotencyKey,
  DEFAULT_UPLOAD_STALE_MS,
  findIdempotencyKey,
  findJob,
  IDEMPOTENCY_WINDOW_HOURS,
  releaseIdempotencyKey,
  takeOverStaleClaim,
  type JobRecord,
  type KeyClaim,
} from "@coalesce/db";
import type { ApiDeps } from "../../context.ts";
import { ApiError, validationError } from "../../errors.ts";

// Idempotency-Key on POST /v1/jobs: the same key and request within 24 h return the original job;
// the same key with another request is refused. Keys live in Postgres, so this holds across API
// replicas and restarts.

/** How long a JSON repeat waits for the first request with its key to finish writing. */
const IN_PROGRESS_WAIT_MS = 10_000;
/**
 * A JSON request's claim with no job after this long is taken over by a repeat: its API process died
 * between claiming the key and writing the job (the repeat is typically the proxy's or the client's
 * retry after a dropped connection). A JSON job is written within milliseconds; should the first
 * request still be alive, it finds the key taken when it ties its job, discards that job and answers
 * 409, so the key still names exactly one job.
 */
const JSON_CLAIM_STALE_MS = 3_000;

/** A CSV upload's key while its file is still streaming in (its hash is known only at the end). */
const UPLOAD_IN_PROGRESS = "csv-upload-in-progress";

function checkKeyFormat(key: string): void {
  if (key.length === 0 || key.length > 255) {
    throw validationError([{ field: "Idempotency-Key", message: "expected 1 to 255 characters" }]);
  }
}

function mismatch(): ApiError {
  return validationError([
    { field: "Idempotency-Key", message: `was used with a different request in the last ${IDEMPOTENCY_WINDOW_HOURS} h; use a new key for a new request` },
  ]);
}

function inProgress(): ApiError {
  return new ApiError("conflict", "a request with this Idempotency-Key is still in progress; retry once it has finished");
}

/**
 * The answer to a request whose key was taken over by a retry while it ran (it went unseen past
 * UPLOAD_STALE_MS): its own job was discarded, and the key is the retry's, whose answer stands.
 */
export function keyTakenOver(): ApiError {
  return new ApiError(
    "conflict",
    "this request's Idempotency-Key was taken over by a retry while it ran (it was not seen alive in time), so its job was discarded; the retry's job is the key's",
  );
}

/**
 * JSON jobs: claims the key for this request, or returns the job an earlier request with the same
 * key and body created (waiting a little if that request is still writing it).
 */
export async function claimJsonKey(
  deps: ApiDeps,
  tenantId: string,
  key: string,
  body: CreateJobRequest,
): Promise<{ kind: "replay"; job: JobRecord } | { kind: "claimed"; claim: KeyClaim }> {
  checkKeyFormat(key);
  const requestHash = createHash("sha256").update(JSON.stringify(body)).digest("hex");
  const deadline = Date.now() + IN_PROGRESS_WAIT_MS;
  for (;;) {
    const claim = await claimIdempotencyKey(deps.db, tenantId, key, requestHash);
    if (claim.kind === "claimed") return claim;
    if (claim.kind === "mismatch") throw mismatch();
    if (claim.kind === "replay") {
      const job = await findJob(deps.db, tenantId, claim.jobId);
      if (job) return { kind: "replay", job };
    }
    if (claim.kind === "in_progress") {
      const takenOver = await takeOverStaleClaim(deps.db, tenantId, key, requestHash, JSON_CLAIM_STALE_MS);
      if (takenOver) return { kind: "claimed", claim: takenOver };
    }
    if (Date.now() > deadline) throw inProgress();
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export type CsvKeyClaim =
  | { kind: "replay"; job: JobRecord }
  | {
      kind: "claimed";
      /** The file, hashed as the upload reads it. */
      csv: Readable;
      /** This request's hold on the key, tied to the job as the upload seals it (see sealJob). */
      claim: KeyClaim;
      /** The hash of the whole request, once the file has been read through. */
      requestHash(): string;
      /** Frees the key after a failed upload, so a retry can use it. */
      release(): Promise<void>;
    };

/**
 * CSV uploads: the request is the query (model, columns, options) and the CSV bytes as decoded
 * (not the raw body: a multipart boundary differs on every retry). A repeat of a finished upload is
 * read through and compared; while the first upload still streams, a repeat gets 409.
 */
export async function claimCsvKey(deps: ApiDeps, tenantId: string, key: string, query: URLSearchParams, csv: Readable): Promise<CsvKeyClaim> {
  checkKeyFormat(key);
  const canonical = [...query].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([name, value]) => `${name}=${value}`);
  const hash = createHash("sha256").update(`csv\n${canonical.join("&")}\n`);
  const earlier = await findIdempotencyKey(deps.db, tenantId, key);
  // A first upload not seen alive for the staleness bound died with its API process: its claim is
  // free (the worker's upload sweep frees it too, and ends its job).
  const staleMs = deps.limits.uploadStaleMs ?? DEFAULT_UPLOAD_STALE_MS;
  const takenOver = earlier?.jobId === null ? await takeOverStaleClaim(deps.db, tenantId, key, UPLOAD_IN_PROGRESS, staleMs) : null;
  if (earlier && !takenOver) {
    if (earlier.jobId === null) throw inProgress();
    for await (const part of csv) hash.update(part as Buffer);
    if (hash.digest("hex") !== earlier.requestHash) throw mismatch();
    const job = await findJob(deps.db, tenantId, earlier.jobId);
    if (job) return { kind: "replay", job };
    throw inProgress();
  }
  const claimed = takenOver ? { kind: "claimed" as const, claim: takenOver } : await claimIdempotencyKey(deps.db, tenantId, key, UPLOAD_IN_PROGRESS);
  // Another request took the key between the look and the claim.
  if (claimed.kind !== "claimed") throw inProgress();
  const { claim } = claimed;
  return {
    kind: "claimed",
    csv: hashing(csv, hash),
    claim,
    requestHash: () => hash.digest("hex"),
    release: () => releaseIdempotencyKey(deps.db, claim),
  };
}

/** Passes the bytes through unchanged, adding them to `hash`; a failure upstream reaches the reader. */
function hashing(source: Readable, hash: Hash): Readable {
  const tap = new Transform({
    transform(part: Buffer, _encoding, done) {
      hash.update(part);
      done(null, part);
    },
  });
  return pipeline(source, tap, () => {});
}
