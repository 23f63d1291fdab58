// The canary-rollout fault: jobs routed through an alias (a 50/50 split of two versions, a third
// shadowing them, a guard watching) while the alias is changed and rolled back, concurrently, and a
// worker holding their chunks is killed. The three versions differ in their bytes only, so the
// promise is the suite's (every row once, the reference prediction) plus the alias's own: each job
// keeps the version it was routed to, and the guard, seeing equivalent versions without a row
// error, rolls nothing back.
import { readFile } from "node:fs/promises";
import path from "node:path";
import { TERMINAL_JOB_STATUSES, type Alias, type AliasComparison, type AliasHistoryEntry, type Job } from "@coalesce/contracts";
import { ROOT } from "../../scripts/processes.ts";
import { processed, type ApiClient } from "./client.ts";
import type { Fault, FaultContext, FaultResult } from "./faults.ts";
import { buildWorkload, checkJob, CSV_QUERY, type IrisWorkload } from "./iris-job.ts";
import { sleep, until } from "./wait.ts";

/** A model of its own, so the other faults' `iris` keeps one version and no alias. */
const MODEL = "iris-canary";
const ALIAS = "production";
const ALIAS_ROUTE = `/v1/models/${MODEL}/aliases/${ALIAS}`;
const ROUTED = [1, 2];
const SHADOW = { version: 3, sample: 0.5 };
const GUARD = { max_error_rate: 0.01, min_rows: 100 };

/** Jobs submitted before the workers start: at least this many, more until both routes have one. */
const MIN_JOBS = 4;
/** Twelve jobs of a 50/50 split all on one version happen once in 2048 runs: a routing bug, not luck. */
const MAX_JOBS = 12;

/** The stable version's weight in each PUT of the churn; the candidate has the rest. */
const CHURN_WEIGHTS = [90, 20, 70, 35];

const seconds = (ms: number) => Math.round(ms / 100) / 10;

function routing(stableWeight: number) {
  return { routes: [{ version: 1, weight: stableWeight }, { version: 2, weight: 100 - stableWeight }], shadow: SHADOW, guard: GUARD };
}

function varint(n: number): number[] {
  const bytes: number[] = [];
  for (; n >= 0x80; n >>>= 7) bytes.push((n & 0x7f) | 0x80);
  bytes.push(n);
  return bytes;
}

function lengthDelimited(tag: number, bytes: Uint8Array | number[]): number[] {
  return [tag, ...varint(bytes.length), ...bytes];
}

/**
 * The model with one more `metadata_props` entry (ModelProto field 14, a StringStringEntryProto of
 * key 1 and value 2): protobuf lets a message's fields come in any order, so appending it gives new
 * bytes, a new sha256 and a new version, with the same graph and so the same outputs.
 */
function withMetadata(model: Uint8Array, key: string, value: string): Uint8Array {
  const text = new TextEncoder();
  const entry = [...lengthDelimited(0x0a, text.encode(key)), ...lengthDelimited(0x12, text.encode(value))];
  return new Uint8Array([...model, ...lengthDelimited(0x72, entry)]);
}

/** Versions 1, 2 and 3 of MODEL: fixtures/iris.onnx, then two equivalent variants of it. */
async function registerEquivalentVersions(client: ApiClient): Promise<void> {
  const base = new Uint8Array(await readFile(path.join(ROOT, "fixtures/iris.onnx")));
  const files = [base, withMetadata(base, "coalesce.chaos", "variant-2"), withMetadata(base, "coalesce.chaos", "variant-3")];
  for (const [i, body] of files.entries()) {
    // The API loads each file in onnxruntime before it answers 201; the same bytes again would be a 200 of the old version.
    const answer = await client.request("POST", `/v1/models/${MODEL}/versions`, { body, headers: { "Content-Type": "application/octet-stream" } });
    const version = answer.status === 201 ? (JSON.parse(answer.text) as { version: number }).version : null;
    if (version !== i + 1) throw new Error(`registering ${MODEL} version ${i + 1} answered ${answer.status}: ${answer.text.slice(0, 300)}`);
  }
}

type Tracked = { job: Job; when: "before" | "during" | "after" };

function submitter(client: ApiClient, workload: IrisWorkload) {
  const query = new URLSearchParams(CSV_QUERY);
  query.set("model", `${MODEL}@${ALIAS}`);
  return (when: Tracked["when"]) =>
    client
      .json<Job>("POST", `/v1/jobs?${query}`, { body: workload.csv, headers: { "Content-Type": "text/csv" }, timeoutMs: 300_000 })
      .then((job): Tracked => ({ job, when }));
}

function bothRoutes(jobs: Tracked[]): boolean {
  return ROUTED.every((version) => jobs.some((tracked) => tracked.job.model.version === version));
}

/** "PUT 200 x4; rollback 200 x3, 409 x1" */
function summarizeAnswers(answers: { what: string; status: number }[]): string {
  const byWhat = new Map<string, Map<number, number>>();
  for (const { what, status } of answers) {
    const counts = byWhat.get(what) ?? new Map<number, number>();
    counts.set(status, (counts.get(status) ?? 0) + 1);
    byWhat.set(what, counts);
  }
  return [...byWhat].map(([what, counts]) => `${what} ${[...counts].map(([status, n]) => `${status} x${n}`).join(", ")}`).join("; ");
}

/**
 * The alias changed while its jobs run: PUTs of other weights, pairs of simultaneous rollbacks (each
 * steps one change back; with none left, 409), and jobs submitted in between. Every routing it can
 * reach has the shadow and the guard: a rollback never goes past the alias's creation.
 */
async function churn(client: ApiClient, submit: ReturnType<typeof submitter>): Promise<{ answers: { what: string; status: number }[]; jobs: Tracked[] }> {
  const answers: { what: string; status: number }[] = [];
  const jobs: Tracked[] = [];
  const rollback = async () => answers.push({ what: "rollback", status: (await client.request("POST", `${ALIAS_ROUTE}/rollback`)).status });
  await Promise.all([
    (async () => {
      for (const weight of CHURN_WEIGHTS) {
        const answer = await client.request("PUT", ALIAS_ROUTE, { body: JSON.stringify(routing(weight)), headers: { "Content-Type": "application/json" } });
        answers.push({ what: "PUT", status: answer.status });
        await sleep(200);
      }
    })(),
    (async () => {
      for (let round = 0; round < 2; round++) {
        await sleep(300);
        await Promise.all([rollback(), rollback()]);
      }
    })(),
    (async () => {
      for (let n = 0; n < 2; n++) {
        await sleep(250);
        jobs.push(await submit("during"));
      }
    })(),
  ]);
  return { answers, jobs };
}

/** Seconds from `since` until the jobs' rows done, together, pass `from`; null if not within `timeoutMs`. */
async function timeToMove(client: ApiClient, jobs: Tracked[], from: number, since: number, timeoutMs: number): Promise<number | null> {
  try {
    await until("the jobs to move after the kill", timeoutMs, async () => {
      const now = await Promise.all(jobs.map((tracked) => client.getJob(tracked.job.id)));
      return now.reduce((sum, job) => sum + processed(job), 0) > from || now.every((job) => TERMINAL_JOB_STATUSES.includes(job.status));
    }, { everyMs: 100 });
    return seconds(performance.now() - since);
  } catch {
    return null;
  }
}

type JobVerdict = { lost: number; duplicated: number; wrong: number; problems: string[]; version: number };

/** The suite's row check, plus the alias's promise for the job: it came through the alias and kept the version it was routed to. */
async function checkRoutedJob(client: ApiClient, tracked: Tracked, workload: IrisWorkload, timeoutMs: number): Promise<JobVerdict> {
  const job = await client.waitForEnd(tracked.job.id, timeoutMs).catch(() => client.getJob(tracked.job.id));
  const rows = await checkJob(client, job, workload);
  const problems = rows.problems.map((problem) => `${job.id} (${tracked.when}): ${problem}`);
  const routed = tracked.job.model;
  if (job.model.alias !== ALIAS) problems.push(`${job.id} (${tracked.when}): model.alias is ${job.model.alias}, expected ${ALIAS}`);
  if (!ROUTED.includes(routed.version)) problems.push(`${job.id} (${tracked.when}): routed to version ${routed.version}, not one of the routes ${ROUTED.join(", ")}`);
  if (job.model.version !== routed.version) problems.push(`${job.id} (${tracked.when}): accepted on version ${routed.version}, ended on version ${job.model.version}`);
  return { lost: rows.lost, duplicated: rows.duplicated, wrong: rows.wrong, problems, version: routed.version };
}

/**
 * The figures of the alias's `revision` once the workers have flushed them: read until two reads a
 * flush interval apart (ALIAS_GUARD_INTERVAL_MS, 2 s) agree and the shadow has compared rows. Null
 * when the alias moves on first (the guard rolled it back).
 */
async function settledComparison(client: ApiClient, primary: number, revision: number): Promise<{ comparison: AliasComparison | null; problem: string | null }> {
  const compared = (comparison: AliasComparison) => comparison.pairs.find((pair) => pair.primary_version === primary && pair.shadow_version === SHADOW.version)?.compared ?? 0;
  const deadline = performance.now() + 40_000;
  let last: AliasComparison | null = null;
  for (;;) {
    const now = await client.json<AliasComparison>("GET", `${ALIAS_ROUTE}/comparison`);
    // Its figures are gone with the revision; the revision and history checks say what moved it.
    if (now.revision !== revision) return { comparison: null, problem: null };
    if (last && compared(now) > 0 && compared(now) === compared(last)) return { comparison: now, problem: null };
    last = now;
    if (performance.now() > deadline) return { comparison: last, problem: `the comparison did not settle within 40 s (last: ${JSON.stringify(last)})` };
    await sleep(2_500);
  }
}

/** What the comparison must say of equivalent versions: every compared label agrees, every value equal, no row error. */
function comparisonProblems(comparison: AliasComparison, primary: number): string[] {
  const problems: string[] = [];
  const pair = comparison.pairs.find((p) => p.primary_version === primary && p.shadow_version === SHADOW.version);
  if (!pair) return [`the comparison has no pair of version ${primary} and its shadow ${SHADOW.version}: ${JSON.stringify(comparison.pairs)}`];
  if (pair.agreement !== 1) problems.push(`versions ${primary} and ${SHADOW.version} agree on ${pair.agreement} of ${pair.compared} rows, expected 1`);
  const valued = pair.outputs.filter((output) => output.max_abs_diff !== null);
  if (valued.length === 0) problems.push(`the comparison of versions ${primary} and ${SHADOW.version} has no numeric output: ${JSON.stringify(pair.outputs)}`);
  for (const output of valued) {
    if (output.max_abs_diff !== 0) problems.push(`${output.output}: max_abs_diff ${output.max_abs_diff} between versions ${primary} and ${SHADOW.version}, expected 0`);
  }
  for (const version of comparison.versions) {
    if (version.errors > 0) problems.push(`version ${version.version} (${version.role}) has ${version.errors} row errors of ${version.rows}`);
  }
  const shadowRows = comparison.versions.find((v) => v.role === "shadow" && v.version === SHADOW.version)?.rows ?? 0;
  // Under min_rows the guard never judged, and "no rollback" would say nothing.
  if (shadowRows < GUARD.min_rows) problems.push(`the shadow scored ${shadowRows} rows, under the guard's min_rows ${GUARD.min_rows}: the guard was not put to the test`);
  return problems;
}

async function cancelUnfinished(client: ApiClient, jobs: Tracked[]): Promise<void> {
  for (const { job } of jobs) {
    const now = await client.getJob(job.id).catch(() => null);
    if (now && !TERMINAL_JOB_STATUSES.includes(now.status)) await client.request("POST", `/v1/jobs/${job.id}/cancel`).catch(() => {});
  }
}

export const canaryRollout: Fault = {
  name: "canary-rollout",
  title: "jobs through a guarded, shadowed 50/50 alias, changed and rolled back while a worker is killed -9",
  async run(context: FaultContext): Promise<FaultResult> {
    const { cluster, client } = context;
    // Quarter-size jobs: several of them, so both routes get some, in about the time of one.
    const workload = await buildWorkload(Math.max(1_000, Math.ceil(context.workload.rows / 4)));
    const submit = submitter(client, workload);
    await registerEquivalentVersions(client);
    await client.json<Alias>("PUT", ALIAS_ROUTE, { body: JSON.stringify(routing(50)), headers: { "Content-Type": "application/json" } });
    const jobs: Tracked[] = [];
    try {
      while (jobs.length < MIN_JOBS || (jobs.length < MAX_JOBS && !bothRoutes(jobs))) jobs.push(await submit("before"));
      const problems: string[] = [];
      if (!bothRoutes(jobs)) problems.push(`all ${jobs.length} jobs of a 50/50 split were routed to version ${jobs[0]?.job.model.version}`);

      // As in worker-kill: the first worker takes every chunk (runs of one row, slow), the second
      // idles beside it until it takes the dead one's over.
      const first = await cluster.startWorker({ WORKER_CONCURRENCY: "1024", MAX_BATCH_ROWS: "1" });
      const second = await cluster.startWorker({ MAX_BATCH_ROWS: "4" });
      const total = jobs.length * workload.rows;
      await until(`the ${jobs.length} jobs to reach 10% of ${total} rows`, 120_000, async () => {
        const now = await Promise.all(jobs.map((tracked) => client.getJob(tracked.job.id)));
        return now.reduce((sum, job) => sum + processed(job), 0) >= 0.1 * total;
      }, { everyMs: 100 });
      context.log(`  ${jobs.length} jobs (versions ${jobs.map((t) => t.job.model.version).join(",")}) at 10%: kill -9 ${first.name}, ${second.name} beside it; changing and rolling back the alias`);
      const killed = performance.now();
      await cluster.signal(first, "SIGKILL");
      // Read after the kill, over the jobs the dead worker held: any move is the takeover's.
      const held = [...jobs];
      const atKill = (await Promise.all(held.map((tracked) => client.getJob(tracked.job.id)))).reduce((sum, job) => sum + processed(job), 0);
      const [changes, recoverSeconds] = await Promise.all([churn(client, submit), timeToMove(client, held, atKill, killed, context.options.endTimeoutMs)]);
      jobs.push(...changes.jobs);
      for (const { what, status } of changes.answers) {
        const expected = what === "PUT" ? [200] : [200, 409];
        if (!expected.includes(status)) problems.push(`${what} ${ALIAS_ROUTE} answered ${status} (expected ${expected.join(" or ")})`);
      }

      // Where the churn left the alias: the guard must leave it there.
      const settled = await client.json<Alias>("GET", ALIAS_ROUTE);
      if (settled.routes.map((route) => route.version).join(",") !== ROUTED.join(",") || settled.shadow?.version !== SHADOW.version || settled.guard === null) {
        problems.push(`the changes left the alias at a routing none of them set: ${JSON.stringify({ routes: settled.routes, shadow: settled.shadow, guard: settled.guard })}`);
      }
      const left = () => Math.max(10_000, killed + context.options.endTimeoutMs - performance.now());
      const verdicts: JobVerdict[] = [];
      for (const tracked of jobs) verdicts.push(await checkRoutedJob(client, tracked, workload, left()));

      // A job routed by the settled revision: only its rows are shadowed and counted in the figures
      // the comparison shows and the guard judges (the churn's revisions are gone).
      const last = await submit("after");
      jobs.push(last);
      verdicts.push(await checkRoutedJob(client, last, workload, context.options.endTimeoutMs));
      const { comparison, problem: unsettled } = await settledComparison(client, last.job.model.version, settled.revision);
      if (unsettled) problems.push(unsettled);
      // One more guard pass over the settled figures before its verdict is read.
      await sleep(3_000);
      const [now, history] = await Promise.all([
        client.json<Alias>("GET", ALIAS_ROUTE),
        client.json<{ data: AliasHistoryEntry[] }>("GET", `${ALIAS_ROUTE}/history?limit=200`),
      ]);
      const guardRollbacks = history.data.filter((entry) => entry.action === "guard_rollback");
      if (guardRollbacks.length > 0) problems.push(`the guard rolled the alias back ${guardRollbacks.length === 1 ? "once" : `${guardRollbacks.length} times`} (a false alarm: ${JSON.stringify(guardRollbacks[0]?.reason)})`);
      if (now.revision !== settled.revision) problems.push(`the alias moved from revision ${settled.revision} to ${now.revision} after the last change was made`);
      const pair = comparison?.pairs.find((p) => p.primary_version === last.job.model.version && p.shadow_version === SHADOW.version);
      const shadowRows = comparison?.versions.find((v) => v.role === "shadow")?.rows ?? 0;
      const actions = [...new Set(history.data.map((entry) => entry.action))]
        .map((action) => {
          const entries = history.data.filter((entry) => entry.action === action);
          const undone = entries.filter((entry) => entry.undone).length;
          return `${action} x${entries.length}${undone > 0 ? ` (${undone} undone)` : ""}`;
        })
        .join(", ");

      const sum = (key: "lost" | "duplicated" | "wrong") => verdicts.reduce((n, verdict) => n + verdict[key], 0);
      const perVersion = ROUTED.map((version) => `v${version} x${verdicts.filter((v) => v.version === version).length}`).join(", ");
      return {
        lost: sum("lost"),
        duplicated: sum("duplicated"),
        wrong: sum("wrong"),
        recoverSeconds,
        apiDuring: summarizeAnswers(changes.answers),
        problems: [...problems, ...verdicts.flatMap((verdict) => verdict.problems), ...(comparison ? comparisonProblems(comparison, last.job.model.version) : [])],
        notes: [
          `${jobs.length} jobs of ${workload.rows} rows (${jobs.filter((t) => t.when === "before").length} before the kill, ${jobs.filter((t) => t.when === "during").length} during the changes, 1 after): ${perVersion}`,
          `the alias was left at revision ${settled.revision}: ${settled.routes.map((r) => `v${r.version} ${r.weight}%`).join(", ")}, shadow v${settled.shadow?.version}`,
          `history: ${actions}`,
          `after: shadow v${SHADOW.version} scored ${shadowRows} rows; beside v${pair?.primary_version ?? "?"} ${pair?.compared ?? 0} compared, agreement ${pair?.agreement ?? "?"}, max |diff| ${pair?.outputs.map((o) => `${o.output} ${o.max_abs_diff}`).join(", ") ?? "?"}`,
        ],
      };
    } finally {
      await cancelUnfinished(client, jobs);
    }
  },
};
