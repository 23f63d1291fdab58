// `npm run bench:rate-limit`: what the rate limiter costs a request, with it on and off side by side
// in one run. Two real API processes on the same services (one schema, one Redis, one prefix) and a
// real worker: one API with every limit on but generous (RATE_LIMIT_REQUESTS_PER_SECOND,
// RATE_LIMIT_ROWS_PER_MINUTE and QUOTA_QUEUED_ROWS far above the load, so nothing is refused and
// every check runs: a Redis round trip for the key's requests, one for the tenant's rows, the
// tenant's limits and queued rows from Postgres once a second), one with all three 0 (off).
// The load: single-row JSON jobs (POST /v1/jobs), CONCURRENCY in flight, the same key. Each round
// runs both cases, in an order that alternates from round to round, and the worker scores a load's
// jobs (untimed) before the next starts, so both meet the same queue. Prints submissions/s, the
// client's p50/p95 and the CPU each request cost the API, Redis and Postgres (from /proc), with
// the difference per request in microseconds; writes bench/results/rate-limit.json. `--quick` is a
// shorter run; `--rounds`, `--requests` (per case and round) and `--concurrency` override.
import { readFile } from "node:fs/promises";
import { availableParallelism, loadavg } from "node:os";
import path from "node:path";
import { Pool } from "undici";
import { API_MAIN, freePort, ROOT, startProcess, stopProcess, waitUntilReady, WORKER_MAIN } from "../scripts/processes.ts";
import { cpuPerJob, snapshotCpu } from "./cpu.ts";
import { openBench, parseRoundArgs, registerModel, type Bench } from "./harness.ts";
import { writeResults } from "./results.ts";
import { median, percentile, round2 } from "./stats.ts";

const { rounds: ROUNDS, requests: REQUESTS, concurrency: CONCURRENCY } = parseRoundArgs();
const WARMUP_REQUESTS = 300;

/** On, and far above what this machine can send: every check runs, none refuses. */
const LIMITS_ON = { RATE_LIMIT_REQUESTS_PER_SECOND: "1000000", RATE_LIMIT_ROWS_PER_MINUTE: "1000000000", QUOTA_QUEUED_ROWS: "1000000000" };
const LIMITS_OFF = { RATE_LIMIT_REQUESTS_PER_SECOND: "0", RATE_LIMIT_ROWS_PER_MINUTE: "0", QUOTA_QUEUED_ROWS: "0" };

type Case = { name: "limiter on" | "limiter off"; http: Pool; pid: number | undefined };
type Sent = { latencies: number[]; seconds: number; ids: string[] };

const BODY = JSON.stringify({ model: "iris", inputs: [{ features: [5.1, 3.5, 1.4, 0.2] }] });

/** Sends `count` single-row jobs, CONCURRENCY in flight; every answer must be a 202 (a refused one would look fast). */
async function send(http: Pool, bench: Bench, count: number): Promise<Sent> {
  const headers = { ...bench.headers, "content-type": "application/json" };
  const sent: Sent = { latencies: [], seconds: 0, ids: [] };
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: Math.min(CONCURRENCY, count) }, async () => {
      while (next++ < count) {
        const at = performance.now();
        const response = await http.request({ path: "/v1/jobs", method: "POST", headers, body: BODY });
        const text = await response.body.text();
        sent.latencies.push(performance.now() - at);
        if (response.statusCode !== 202) throw new Error(`POST /v1/jobs: ${response.statusCode} ${text}`);
        sent.ids.push((JSON.parse(text) as { id: string }).id);
      }
    }),
  );
  sent.seconds = (performance.now() - started) / 1000;
  return sent;
}

/** Waits until every job of a load has ended, so the next load meets an empty queue. */
async function waitForJobs(bench: Bench, ids: string[], timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { rows } = await bench.db.query<{ open: string }>(`SELECT count(*) AS open FROM jobs WHERE id = ANY($1) AND completed_at IS NULL`, [ids]);
    if (Number(rows[0]?.open) === 0) return;
    if (Date.now() > deadline) throw new Error(`${rows[0]?.open} jobs still open after ${timeoutMs / 1000} s`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}




async function main(): Promise<void> {
  const bench = await openBench(LIMITS_ON);
  const offPort = await freePort();
  const offApi = startProcess("api-off", API_MAIN, { ...bench.env, ...LIMITS_OFF, PORT: String(offPort), MIGRATE_ON_START: "false" });
  const worker = startProcess("worker", WORKER_MAIN, bench.env);
  const offUrl = `http://127.0.0.1:${offPort}`;
  const on = new Pool(bench.baseUrl, { connections: CONCURRENCY });
  const off = new Pool(offUrl, { connections: CONCURRENCY });
  try {
    await waitUntilReady(offUrl, [offApi]);
    await registerModel(bench, "iris", new Uint8Array(await readFile(path.join(ROOT, "fixtures/iris.onnx"))));
    const cases: Case[] = [
      { name: "limiter on", http: on, pid: bench.api.child.pid },
      { name: "limiter off", http: off, pid: offApi.child.pid },
    ];
    for (const c of cases) await waitForJobs(bench, (await send(c.http, bench, WARMUP_REQUESTS)).ids);

    const records = new Map(cases.map((c) => [c.name, { sent: [] as Sent[], cpu: [] as Record<string, number>[] }]));
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? cases : [...cases].reverse();
      for (const c of order) {
        const before = await snapshotCpu({ api: c.pid, worker: undefined });
        const sent = await send(c.http, bench, REQUESTS);
        const cpu = cpuPerJob(before, await snapshotCpu({ api: c.pid, worker: undefined }), REQUESTS);
        records.get(c.name)?.sent.push(sent);
        records.get(c.name)?.cpu.push(cpu);
        await waitForJobs(bench, sent.ids);
      }
    }

    const stats = Object.fromEntries(
      [...records].map(([name, record]) => {
        const latencies = record.sent.flatMap((s) => s.latencies).sort((a, b) => a - b);
        const cpu = (part: string) => median(record.cpu.map((c) => c[`${part}_cpu_ms`] ?? Number.NaN)) * 1000;
        return [
          name,
          {
            per_s: Math.round(median(record.sent.map((s) => s.latencies.length / s.seconds))),
            per_s_by_round: record.sent.map((s) => Math.round(s.latencies.length / s.seconds)),
            p50_ms: round2(percentile(latencies, 50)),
            p95_ms: round2(percentile(latencies, 95)),
            api_cpu_us: Math.round(cpu("api")),
            redis_cpu_us: Math.round(cpu("redis")),
            postgres_cpu_us: Math.round(cpu("postgres")),
          },
        ];
      }),
    ) as Record<Case["name"], { per_s: number; per_s_by_round: number[]; p50_ms: number; p95_ms: number; api_cpu_us: number; redis_cpu_us: number; postgres_cpu_us: number }>;
    const withLimits = stats["limiter on"];
    const without = stats["limiter off"];
    const ratios = withLimits.per_s_by_round.map((value, i) => round2(value / (without.per_s_by_round[i] ?? Number.NaN)));
    const cost = {
      wall_us_per_request: Math.round((1 / withLimits.per_s - 1 / without.per_s) * 1e6),
      p50_us: Math.round((withLimits.p50_ms - without.p50_ms) * 1000),
      api_cpu_us: withLimits.api_cpu_us - without.api_cpu_us,
      redis_cpu_us: withLimits.redis_cpu_us - without.redis_cpu_us,
      postgres_cpu_us: withLimits.postgres_cpu_us - without.postgres_cpu_us,
    };

    console.log(`\nrate limiter, single-row JSON jobs, ${ROUNDS} rounds x ${REQUESTS} per case, ${CONCURRENCY} in flight, ${availableParallelism()} cores, load ${loadavg()[0]?.toFixed(2)}`);
    console.log("| case | submissions/s | p50 | p95 | API CPU / req | Redis CPU / req | Postgres CPU / req |");
    console.log("|---|---|---|---|---|---|---|");
    for (const [name, s] of Object.entries(stats)) {
      console.log(`| ${name} | ${s.per_s.toLocaleString("en-US")} | ${s.p50_ms} ms | ${s.p95_ms} ms | ${s.api_cpu_us} us | ${s.redis_cpu_us} us | ${s.postgres_cpu_us} us |`);
    }
    console.log(
      `\non / off: submissions/s ${round2(withLimits.per_s / without.per_s)}x (rounds ${ratios.join(", ")}); per request ${cost.wall_us_per_request} us of wall time ` +
        `(p50 ${cost.p50_us >= 0 ? "+" : ""}${cost.p50_us} us), CPU: API ${cost.api_cpu_us} us, Redis ${cost.redis_cpu_us} us, Postgres ${cost.postgres_cpu_us} us`,
    );
    const file = await writeResults("rate-limit", { rounds: ROUNDS, requests: REQUESTS, concurrency: CONCURRENCY, stats, ratios, cost });
    console.log(`wrote ${file}`);
  } finally {
    await on.close();
    await off.close();
    await stopProcess(worker);
    await stopProcess(offApi);
    await bench.close();
  }
}

await main();
