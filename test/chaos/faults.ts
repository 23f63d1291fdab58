// The faults: each injects one failure into a running 100k-row job (or an upload), lets the system
// recover on its own, then checks the history against the promise (iris-job.ts's checkJob).
import { randomBytes } from "node:crypto";
import { request as httpRequest } from "node:http";
import { TERMINAL_JOB_STATUSES, type Job } from "@coalesce/contracts";
import { WebhookReceiver, verifyWebhook } from "../support/webhook-receiver.ts";
import { canaryRollout } from "./canary-rollout.ts";
import { linesSince, logOffset, type ChaosProcess, type Cluster } from "./cluster.ts";
import { describeJob, processed, type ApiClient } from "./client.ts";
import { checkJob, CSV_QUERY, type IrisWorkload } from "./iris-job.ts";
import { probeProblems, startProbe, summarizeProbe, type ProbeAnswer } from "./probe.ts";
import { GiveUp, sleep, until } from "./wait.ts";

export type FaultOptions = {
  /** --quick: shorter outages (except Postgres': the issue's 25 s is what exhausts a chunk's attempts). */
  quick: boolean;
  /** How long a job may take to end once the fault has healed. */
  endTimeoutMs: number;
};

export type FaultContext = {
  cluster: Cluster;
  client: ApiClient;
  workload: IrisWorkload;
  options: FaultOptions;
  log(message: string): void;
};

export type FaultResult = {
  lost: number | null;
  duplicated: number | null;
  wrong: number | null;
  /** Seconds from the fault healing (or the kill) to the job moving again; see each fault. */
  recoverSeconds: number | null;
  apiDuring: string;
  problems: string[];
  notes: string[];
};

export type Fault = {
  name: string;
  title: string;
  run(context: FaultContext): Promise<FaultResult>;
};

const seconds = (ms: number) => Math.round(ms / 100) / 10;

/** Uploads the workload's CSV in one request; the 202's job. */
async function submitCsv(client: ApiClient, csv: string, extraQuery = ""): Promise<Job> {
  return client.json<Job>("POST", `/v1/jobs?${CSV_QUERY}${extraQuery}`, {
    body: csv,
    headers: { "Content-Type": "text/csv" },
    timeoutMs: 300_000,
  });
}

/**
 * Workers in a fault run batches of a few rows. Unpaced, a 100k-row iris job takes about 4 s here,
 * over before a fault can be placed in it (or a second worker started); paced, it takes tens of
 * seconds, and everything else (chunks, locks, Postgres writes) is as in production.
 */
const PACED: Record<string, string> = { MAX_BATCH_ROWS: "4" };

/**
 * The job is stored and queued whole before any worker runs (the fault is about the job's run, not
 * its upload); then the workers start and take it.
 */
async function submitThenStart(context: FaultContext, workers: Record<string, string>[]): Promise<{ job: Job; workers: ChaosProcess[] }> {
  const job = await submitCsv(context.client, context.workload.csv);
  const started: ChaosProcess[] = [];
  for (const env of workers) started.push(await context.cluster.startWorker({ ...PACED, ...env }));
  return { job, workers: started };
}

/** Waits until the job has done `fraction` of its rows: "mid-job" for a fault. */
async function waitForProgress(client: ApiClient, job: Job, rows: number, fraction: number): Promise<Job> {
  let last = job;
  return until(
    `job ${job.id} to reach ${Math.round(fraction * 100)}% of ${rows} rows`,
    300_000,
    async () => {
      last = await client.getJob(job.id);
      if (TERMINAL_JOB_STATUSES.includes(last.status)) throw new GiveUp(`job ${job.id} ${last.status} before the fault could be injected: the suite could not place the fault mid-job`);
      return processed(last) >= fraction * rows ? last : null;
    },
    { everyMs: 100, describe: () => describeJob(last) },
  );
}

/**
 * Seconds from `since` until the job's processed count passes `from` (or the job ends): how long
 * the job stood still after the fault. Null if it never moved within `timeoutMs`.
 */
async function timeToMove(client: ApiClient, jobId: string, from: number, since: number, timeoutMs: number): Promise<number | null> {
  try {
    await until(`job ${jobId} to move past ${from} rows`, timeoutMs, async () => {
      const job = await client.getJob(jobId);
      return processed(job) > from || TERMINAL_JOB_STATUSES.includes(job.status);
    }, { everyMs: 100 });
    return seconds(performance.now() - since);
  } catch {
    return null;
  }
}

/** Ends a job the fault left unfinished, so its chunks do not slow the next fault. */
async function cancelIfRunning(client: ApiClient, jobId: string): Promise<void> {
  const job = await client.getJob(jobId).catch(() => null);
  if (job && !TERMINAL_JOB_STATUSES.includes(job.status)) {
    await client.request("POST", `/v1/jobs/${jobId}/cancel`).catch(() => {});
  }
}

/** Waits for the job to end and checks its rows; a job that never ends is a problem, not a crash of the suite. */
async function endAndCheck(context: FaultContext, jobId: string, timeoutMs = context.options.endTimeoutMs): Promise<Pick<FaultResult, "lost" | "duplicated" | "wrong" | "problems">> {
  let job: Job;
  try {
    job = await context.client.waitForEnd(jobId, timeoutMs);
  } catch {
    // checkJob says where it stood ("job never ended: still running at ...").
    job = await context.client.getJob(jobId);
  }
  const check = await checkJob(context.client, job, context.workload);
  return { lost: check.lost, duplicated: check.duplicated, wrong: check.wrong, problems: check.problems };
}

/** Lines the processes logged during the fault: how many, and how many are not JSON (raw stack dumps). */
async function logNoise(cluster: Cluster, offsets: Map<string, number>): Promise<string> {
  const parts: string[] = [];
  for (const [file, offset] of offsets) {
    const lines = await linesSince(file, offset);
    const raw = lines.filter((line) => !line.startsWith("{")).length;
    // pino levels: 40 warn, 50 error, 60 fatal. The API's one summary line per request (the probe's)
    // is not noise, whatever its level: the lines about the outage itself are what the issue counts.
    const loud = lines.filter((line) => /^\{"level":(4|5|6)0,/.test(line) && !line.includes('"msg":"request"')).length;
    const name = file.split("/").pop()?.replace(/\.log$/, "") ?? file;
    parts.push(`${name} ${loud}${raw > 0 ? ` + ${raw} not JSON` : ""}`);
  }
  return `warn/error lines during the outage, besides one per request: ${parts.join(", ")}`;
}

async function serviceLogOffsets(cluster: Cluster): Promise<Map<string, number>> {
  const offsets = new Map<string, number>();
  for (const service of [cluster.api(), ...cluster.workers()]) offsets.set(service.logFile, await logOffset(service.logFile));
  return offsets;
}

/**
 * The probe's aftermath: a POST answered anything but 202 must have created nothing (no job that
 * the client was told failed), and every POST answered 202 must complete.
 */
async function checkProbeJobs(client: ApiClient, answers: ProbeAnswer[], before: Set<string>, known: Set<string>, timeoutMs: number): Promise<string[]> {
  const problems: string[] = [];
  const accepted = answers.filter((answer) => answer.jobId).map((answer) => answer.jobId as string);
  const jobs = await client.listJobs();
  const ghosts = jobs.filter((job) => !before.has(job.id) && !known.has(job.id) && !accepted.includes(job.id));
  if (ghosts.length > 0) problems.push(`${ghosts.length} jobs exist that the client was not answered 202 for (${ghosts.slice(0, 3).map((job) => job.id).join(", ")})`);
  // One deadline for them all: the ones still open are polled in turn until each has ended.
  const open = new Set(accepted);
  const ended = new Map<string, string>();
  await until(`the ${accepted.length} probe jobs answered 202 to end`, timeoutMs, async () => {
    for (const id of [...open]) {
      const job = await client.getJob(id);
      if (TERMINAL_JOB_STATUSES.includes(job.status)) {
        open.delete(id);
        ended.set(id, job.status);
      }
    }
    return open.size === 0;
  }, { everyMs: 1_000 }).catch(() => {});
  const failed = [...ended.values()].filter((status) => status !== "succeeded").length;
  if (open.size > 0) problems.push(`${open.size} of ${accepted.length} probe jobs answered 202 never ended`);
  if (failed > 0) problems.push(`${failed} of ${accepted.length} probe jobs answered 202 ended other than succeeded`);
  return problems;
}

/** A dependency outage mid-job with the API probed throughout: Postgres or Redis. */
async function outage(context: FaultContext, outageMs: number, down: () => Promise<void>, up: () => Promise<void>): Promise<FaultResult> {
  const { cluster, client, workload } = context;
  const before = new Set((await client.listJobs()).map((job) => job.id));
  const { job } = await submitThenStart(context, [{}]);
  try {
    const mid = await waitForProgress(client, job, workload.rows, 0.3);
    const offsets = await serviceLogOffsets(cluster);
    const probe = startProbe(client, job.id);
    context.log(`  ${describeJob(mid)}: down for ${seconds(outageMs)} s`);
    await down();
    await sleep(outageMs);
    await up();
    const healed = performance.now();
    // The probe's last requests are answered (or time out) while the job is watched for its recovery.
    const [answers, recoverSeconds] = await Promise.all([
      probe.stop(),
      (async () => {
        const atHeal = processed(await until("GET /v1/jobs/{id} to answer after the outage", 60_000, () => client.getJob(job.id), { everyMs: 100 }));
        return timeToMove(client, job.id, atHeal, healed, context.options.endTimeoutMs);
      })(),
    ]);
    const noise = await logNoise(cluster, offsets);
    // One deadline from the healing on: a job that never moved again is not waited for twice.
    const left = () => Math.max(10_000, healed + context.options.endTimeoutMs - performance.now());
    const rows = await endAndCheck(context, job.id, left());
    const probeJobProblems = await checkProbeJobs(client, answers, before, new Set([job.id]), Math.min(60_000, left()));
    return {
      ...rows,
      recoverSeconds,
      apiDuring: summarizeProbe(answers),
      problems: [...rows.problems, ...probeProblems(answers), ...probeJobProblems],
      notes: [noise],
    };
  } finally {
    await cancelIfRunning(client, job.id);
  }
}

const clean: Fault = {
  name: "clean",
  title: "no fault (baseline)",
  async run(context) {
    const { cluster, client, workload } = context;
    await cluster.startWorker();
    const started = performance.now();
    const job = await submitCsv(client, workload.csv);
    const rows = await endAndCheck(context, job.id);
    return { ...rows, recoverSeconds: null, apiDuring: "-", notes: [`${workload.rows} rows in ${seconds(performance.now() - started)} s`] };
  },
};

const workerKill: Fault = {
  name: "worker-kill",
  title: "worker kill -9, a second worker idle beside it",
  async run(context) {
    const { cluster, client, workload } = context;
    // The first worker takes every chunk at once (its concurrency exceeds the job's chunks), so the
    // second one has nothing to do until it takes over the dead one's: the job's count stands still
    // from the kill until the takeover. Runs of one row (slower still than PACED), so the second
    // worker is up before the first is done.
    const { job, workers: [first] } = await submitThenStart(context, [{ WORKER_CONCURRENCY: "1024", MAX_BATCH_ROWS: "1" }]);
    if (!first) throw new Error("no worker started");
    try {
      const second = await cluster.startWorker();
      const mid = await waitForProgress(client, job, workload.rows, 0.1);
      const offset = await logOffset(second.logFile);
      context.log(`  ${describeJob(mid)}: kill -9 ${first.name} (pid ${first.pid}); ${second.name} idle beside it`);
      const killed = performance.now();
      await cluster.signal(first, "SIGKILL");
      // Read after the kill: everything the dead worker wrote is in, so any move is the takeover's.
      const atKill = processed(await client.getJob(job.id));
      const [recoverSeconds, readyzSeconds] = await Promise.all([
        timeToMove(client, job.id, atKill, killed, context.options.endTimeoutMs),
        timeUntilDropped(cluster, first, killed),
      ]);
      const rows = await endAndCheck(context, job.id, Math.max(10_000, killed + context.options.endTimeoutMs - performance.now()));
      const takeover = (await linesSince(second.logFile, offset)).filter((line) => /stall|takeover|took over/i.test(line)).length;
      return {
        ...rows,
        recoverSeconds,
        apiDuring: "-",
        problems: [...rows.problems, ...takeoverProblems(recoverSeconds, readyzSeconds)],
        notes: [
          `the dead worker left /readyz after ${readyzSeconds === null ? "more than 60" : readyzSeconds} s`,
          `${second.name} logged ${takeover} lines about stalled/taken-over chunks`,
        ],
      };
    } finally {
      await cancelIfRunning(client, job.id);
    }
  },
};

/**
 * The issue's bound for a dead worker is 5 s (STALLED_TAKEOVER_MS here) for its chunks to run again
 * and for /readyz to drop it; the verdict allows three times that on a loaded machine, so it fails
 * BullMQ's default stalled check (30-60 s), not jitter.
 */
const TAKEOVER_BOUND_S = 15;

function takeoverProblems(recoverSeconds: number | null, readyzSeconds: number | null): string[] {
  const problems: string[] = [];
  if (recoverSeconds === null) problems.push("the dead worker's chunks never ran again");
  else if (recoverSeconds > TAKEOVER_BOUND_S) problems.push(`the dead worker's chunks waited ${recoverSeconds} s to run again (bound ${TAKEOVER_BOUND_S} s)`);
  if (readyzSeconds === null || readyzSeconds > TAKEOVER_BOUND_S) problems.push(`/readyz listed the dead worker for ${readyzSeconds ?? "more than 60"} s (bound ${TAKEOVER_BOUND_S} s)`);
  return problems;
}

/** Seconds from `since` until /readyz no longer lists the process's pid; null after 60 s. */
async function timeUntilDropped(cluster: Cluster, service: ChaosProcess, since: number): Promise<number | null> {
  try {
    await until(`/readyz to drop ${service.name}`, 60_000, async () => {
      const response = await fetch(`${cluster.baseUrl}/readyz`, { signal: AbortSignal.timeout(5_000) });
      const body = (await response.json()) as { workers?: { id: string }[] };
      return !(body.workers ?? []).some((worker) => worker.id.split(":")[1] === String(service.pid));
    }, { everyMs: 250 });
    return seconds(performance.now() - since);
  } catch {
    return null;
  }
}

const workerSigterm: Fault = {
  name: "worker-sigterm",
  title: "SIGTERM of a busy worker, then a new one",
  async run(context) {
    const { cluster, client, workload } = context;
    // Few chunks in hand, so there is work left for the next worker once this one has drained.
    const { job, workers: [busy] } = await submitThenStart(context, [{ WORKER_CONCURRENCY: "8" }]);
    if (!busy) throw new Error("no worker started");
    try {
      const mid = await waitForProgress(client, job, workload.rows, 0.3);
      context.log(`  ${describeJob(mid)}: SIGTERM ${busy.name}`);
      const signalled = performance.now();
      const code = await cluster.signal(busy, "SIGTERM", 60_000);
      const exitSeconds = seconds(performance.now() - signalled);
      const atExit = processed(await client.getJob(job.id));
      const next = await cluster.startWorker();
      const nextStarted = performance.now();
      const recoverSeconds = await timeToMove(client, job.id, atExit, nextStarted, context.options.endTimeoutMs);
      const rows = await endAndCheck(context, job.id, Math.max(10_000, nextStarted + context.options.endTimeoutMs - performance.now()));
      const problems = [...rows.problems];
      if (code !== 0) problems.push(`${busy.name} exited with ${code ?? "a signal"} after SIGTERM (killed after 60 s?)`);
      return {
        ...rows,
        recoverSeconds,
        apiDuring: "-",
        problems,
        notes: [`${busy.name} exited ${code} ${exitSeconds} s after SIGTERM; ${next.name} took the rest (recovery counted from its start)`],
      };
    } finally {
      await cancelIfRunning(client, job.id);
    }
  },
};

const postgresDown: Fault = {
  name: "postgres-down",
  title: "Postgres down mid-job (pg_ctl stop -m immediate, start again)",
  run: (context) => outage(context, 25_000, () => context.cluster.postgres.crash(), () => context.cluster.postgres.start()),
};

const redisDown: Fault = {
  name: "redis-down",
  title: "Redis down mid-job, back empty (kill -9, start again)",
  run: (context) => outage(context, context.options.quick ? 10_000 : 15_000, () => context.cluster.redis.kill(), () => context.cluster.redis.start()),
};

/**
 * Sends the first `fraction` of `body` as a CSV upload and then nothing more, holding the connection
 * open: an upload in flight when the API dies. Resolves once that part is written.
 */
function startSlowUpload(baseUrl: string, key: string, idempotencyKey: string, body: string, fraction: number): Promise<{ abort(): void }> {
  const url = new URL(`${baseUrl}/v1/jobs?${CSV_QUERY}`);
  const request = httpRequest(url, {
    method: "POST",
    headers: { Authorization: `Bearer ${key}`, "Content-Type": "text/csv", "Idempotency-Key": idempotencyKey, "Transfer-Encoding": "chunked" },
  });
  // The API's death ends the request with a reset: expected.
  request.on("error", () => {});
  request.on("response", (response) => response.resume());
  const part = body.slice(0, body.lastIndexOf("\n", Math.floor(body.length * fraction)) + 1);
  return new Promise((resolve) => request.write(part, () => resolve({ abort: () => request.destroy() })));
}

const apiKillUpload: Fault = {
  name: "api-kill-upload",
  title: "API kill -9 during a CSV upload with an Idempotency-Key, then a retry",
  async run(context) {
    const { cluster, client, workload } = context;
    await cluster.startWorker();
    const before = new Set((await client.listJobs()).map((job) => job.id));
    const idempotencyKey = `chaos-${randomBytes(6).toString("hex")}`;
    const upload = await startSlowUpload(cluster.baseUrl, cluster.key, idempotencyKey, workload.csv, 0.3);
    const notes: string[] = [];
    const problems: string[] = [];
    // The upload's job shows in the list once its first chunk is stored; it never got its 202.
    const orphan = await until("the upload's job to appear in GET /v1/jobs", 60_000, async () =>
      (await client.listJobs()).find((job) => !before.has(job.id)) ?? null,
    ).catch(() => null);
    // Let rows of it be scored, as with a real upload that is well under way.
    await sleep(2_000);
    const api = cluster.api();
    context.log(`  upload ${orphan?.id ?? "(no job seen)"} under way: kill -9 ${api.name}`);
    const killed = performance.now();
    await cluster.signal(api, "SIGKILL");
    upload.abort();
    await cluster.startApi();
    let recoverSeconds: number | null = null;
    if (orphan) {
      try {
        // The sweep's settings (cluster.ts) end it within seconds; a minute is ample.
        const ended = await client.waitForEnd(orphan.id, 60_000);
        recoverSeconds = seconds(performance.now() - killed);
        notes.push(`the interrupted upload's job ended ${describeJob(ended)}${ended.error ? `: ${ended.error.code}: ${ended.error.message}` : ""}`);
      } catch (error) {
        problems.push(`the interrupted upload's job never ended: ${(error as Error).message}`);
      }
    } else {
      notes.push("no job of the interrupted upload was seen");
    }
    // The client's retry with the same key, now that the first upload is resolved.
    const retry = await client.request("POST", `/v1/jobs?${CSV_QUERY}`, {
      body: workload.csv,
      headers: { "Content-Type": "text/csv", "Idempotency-Key": idempotencyKey },
      timeoutMs: 300_000,
    });
    if (retry.status !== 202) {
      problems.push(`the retry with the same Idempotency-Key answered ${retry.status}: ${retry.text.slice(0, 200)}`);
      if (orphan) await cancelIfRunning(client, orphan.id);
      return { lost: null, duplicated: null, wrong: null, recoverSeconds, apiDuring: "-", problems, notes };
    }
    const retried = JSON.parse(retry.text) as Job;
    notes.push(`the retry answered 202 with ${retried.id === orphan?.id ? "the interrupted job (replayed)" : "a new job"} ${retried.id}${retry.headers.get("idempotent-replayed") ? " (Idempotent-Replayed)" : ""}`);
    try {
      const rows = await endAndCheck(context, retried.id);
      return { ...rows, recoverSeconds, apiDuring: "-", problems: [...problems, ...rows.problems], notes };
    } finally {
      await cancelIfRunning(client, retried.id);
    }
  },
};

const webhookDown: Fault = {
  name: "webhook-down",
  title: "the job's webhook receiver down for a minute",
  async run(context) {
    const { cluster, client, workload, options } = context;
    const receiver = await WebhookReceiver.start();
    // Refuses connections from before the job ends until `downMs` after it.
    await receiver.down();
    const downMs = options.quick ? 20_000 : 60_000;
    try {
      const job = await submitCsv(client, workload.csv, `&webhook_url=${encodeURIComponent(receiver.url)}`);
      await cluster.startWorker();
      const rows = await endAndCheck(context, job.id);
      context.log(`  job ended; receiver stays down ${seconds(downMs)} s`);
      await sleep(downMs);
      await receiver.up();
      const back = performance.now();
      const problems = [...rows.problems];
      let recoverSeconds: number | null = null;
      const notes: string[] = [];
      try {
        const [delivery] = await receiver.waitFor((received) => received.length > 0, 180_000);
        recoverSeconds = seconds(performance.now() - back);
        const event = JSON.parse(delivery?.body ?? "{}") as { type?: string; data?: { id?: string } };
        if (event.data?.id !== job.id || event.type !== "job.succeeded") problems.push(`the delivery was ${event.type} for ${event.data?.id}, expected job.succeeded for ${job.id}`);
        const { secret } = await client.json<{ secret: string }>("GET", "/v1/webhooks/default-secret");
        try {
          verifyWebhook(secret, delivery as NonNullable<typeof delivery>);
        } catch (error) {
          problems.push(`the delivery's signature does not verify: ${(error as Error).message}`);
        }
        await sleep(2_000);
        if (receiver.received.length > 1) notes.push(`${receiver.received.length} deliveries arrived (one expected; a receiver dedupes by webhook-id)`);
      } catch {
        problems.push("no delivery arrived within 180 s of the receiver coming back");
      }
      return { ...rows, recoverSeconds, apiDuring: "-", problems, notes };
    } finally {
      await receiver.down();
    }
  },
};

export const FAULTS: Fault[] = [clean, workerKill, workerSigterm, postgresDown, redisDown, apiKillUpload, webhookDown, canaryRollout];
