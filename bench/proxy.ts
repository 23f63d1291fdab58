// `npm run bench:proxy`: what nginx with TLS in front of the API costs a request, side by side in one run.
// Two real API processes on the same services, reached either directly over plain HTTP (the client
// alternates between them, as nginx's round robin does) or through docker/nginx's template on Debian's
// nginx (one worker process) over HTTPS with HTTP/1.1 keep-alive on both sides. Two loads: GET
// /v1/jobs/{id} of one job, and single-row JSON job submits (POST /v1/jobs; no worker runs, the jobs
// just queue, and the rate limits are off so nothing is refused). Each round runs every case, in an
// order that alternates from round to round. Prints requests/s, p50 and p99 and the ratio nginx /
// direct per load; writes bench/results/proxy.json. `--quick` is a shorter run; `--rounds`,
// `--requests` (per case and round) and `--concurrency` (default 32) override.
import { readFile } from "node:fs/promises";
import { availableParallelism, loadavg } from "node:os";
import path from "node:path";
import { Pool } from "undici";
import { API_MAIN, freePort, ROOT, startProcess, stopProcess, waitUntilReady } from "../scripts/processes.ts";
import { missingTools, startNginx } from "../test/nginx/nginx.ts";
import { openBench, parseRoundArgs, registerModel, type Bench } from "./harness.ts";
import { writeResults } from "./results.ts";
import { median, percentile, round2 } from "./stats.ts";

const { rounds: ROUNDS, requests: REQUESTS, concurrency: CONCURRENCY } = parseRoundArgs(["--concurrency", "32", ...process.argv.slice(2)]);
const WARMUP_REQUESTS = 500;
const LIMITS_OFF = { RATE_LIMIT_REQUESTS_PER_SECOND: "0", RATE_LIMIT_ROWS_PER_MINUTE: "0", QUOTA_QUEUED_ROWS: "0" };
const SUBMIT_BODY = JSON.stringify({ model: "iris", inputs: [{ features: [5.1, 3.5, 1.4, 0.2] }] });

type Route = "direct (HTTP)" | "nginx (HTTPS)";
type Load = "GET /v1/jobs/{id}" | "POST /v1/jobs";
type Sent = { latencies: number[]; seconds: number };

/** Sends `count` requests of a load, CONCURRENCY in flight, taking the pools in turn; every answer must be the expected status. */
async function send(pools: Pool[], bench: Bench, load: Load, jobId: string, count: number): Promise<Sent> {
  const request =
    load === "POST /v1/jobs"
      ? { path: "/v1/jobs", method: "POST" as const, headers: { ...bench.headers, "content-type": "application/json" }, body: SUBMIT_BODY, expect: 202 }
      : { path: `/v1/jobs/${jobId}`, method: "GET" as const, headers: bench.headers, expect: 200 };
  const sent: Sent = { latencies: [], seconds: 0 };
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: Math.min(CONCURRENCY, count) }, async () => {
      while (next < count) {
        const pool = pools[next++ % pools.length] as Pool;
        const at = performance.now();
        const response = await pool.request(request);
        const text = await response.body.text();
        sent.latencies.push(performance.now() - at);
        if (response.statusCode !== request.expect) throw new Error(`${request.method} ${request.path}: ${response.statusCode} ${text}`);
      }
    }),
  );
  sent.seconds = (performance.now() - started) / 1000;
  return sent;
}




async function main(): Promise<void> {
  const missing = missingTools();
  if (missing) throw new Error(`bench:proxy needs nginx and openssl: ${missing}`);
  const bench = await openBench(LIMITS_OFF);
  const secondPort = await freePort();
  const second = startProcess("api-2", API_MAIN, { ...bench.env, PORT: String(secondPort), MIGRATE_ON_START: "false" });
  const secondUrl = `http://127.0.0.1:${secondPort}`;
  const nginx = await startNginx([bench.baseUrl, secondUrl].map((url) => url.replace("http://", "")));
  const direct = [new Pool(bench.baseUrl, { connections: CONCURRENCY }), new Pool(secondUrl, { connections: CONCURRENCY })];
  const proxied = [new Pool(nginx.httpsUrl, { connections: CONCURRENCY, connect: { ca: nginx.ca } })];
  try {
    await waitUntilReady(secondUrl, [second]);
    await registerModel(bench, "iris", new Uint8Array(await readFile(path.join(ROOT, "fixtures/iris.onnx"))));
    const created = await direct[0]!.request({ path: "/v1/jobs", method: "POST", headers: { ...bench.headers, "content-type": "application/json" }, body: SUBMIT_BODY });
    const jobId = ((await created.body.json()) as { id: string }).id;

    const routes: [Route, Pool[]][] = [
      ["direct (HTTP)", direct],
      ["nginx (HTTPS)", proxied],
    ];
    const loads: Load[] = ["GET /v1/jobs/{id}", "POST /v1/jobs"];
    // Warm both APIs, nginx's connections to them and the TLS sessions.
    for (const [, pools] of routes) for (const load of loads) await send(pools, bench, load, jobId, WARMUP_REQUESTS);

    const records = new Map<string, Sent[]>();
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? routes : [...routes].reverse();
      for (const load of loads) {
        for (const [name, pools] of order) {
          const key = `${load}|${name}`;
          records.set(key, [...(records.get(key) ?? []), await send(pools, bench, load, jobId, REQUESTS)]);
        }
      }
    }

    type Stats = { per_s: number; per_s_by_round: number[]; p50_ms: number; p99_ms: number };
    const stats: Record<string, Stats> = {};
    for (const [key, sent] of records) {
      const latencies = sent.flatMap((s) => s.latencies).sort((a, b) => a - b);
      const byRound = sent.map((s) => Math.round(s.latencies.length / s.seconds));
      stats[key] = { per_s: Math.round(median(byRound)), per_s_by_round: byRound, p50_ms: round2(percentile(latencies, 50)), p99_ms: round2(percentile(latencies, 99)) };
    }

    console.log(`\nnginx + TLS vs direct, 2 API processes, ${ROUNDS} rounds x ${REQUESTS} per case, ${CONCURRENCY} in flight, ${availableParallelism()} cores, load ${loadavg()[0]?.toFixed(2)}`);
    console.log("| load | route | requests/s | p50 | p99 |");
    console.log("|---|---|---|---|---|");
    for (const [key, s] of Object.entries(stats)) {
      const [load, route] = key.split("|");
      console.log(`| ${load} | ${route} | ${s.per_s.toLocaleString("en-US")} | ${s.p50_ms} ms | ${s.p99_ms} ms |`);
    }
    const ratios: Record<string, { per_s: number; by_round: number[]; p50: number; p99: number }> = {};
    for (const load of loads) {
      const proxy = stats[`${load}|nginx (HTTPS)`] as Stats;
      const plain = stats[`${load}|direct (HTTP)`] as Stats;
      ratios[load] = {
        per_s: round2(proxy.per_s / plain.per_s),
        by_round: proxy.per_s_by_round.map((value, i) => round2(value / (plain.per_s_by_round[i] ?? Number.NaN))),
        p50: round2(proxy.p50_ms / plain.p50_ms),
        p99: round2(proxy.p99_ms / plain.p99_ms),
      };
      const r = ratios[load];
      console.log(`${load}: nginx / direct requests/s ${r.per_s}x (rounds ${r.by_round.join(", ")}), p50 ${r.p50}x, p99 ${r.p99}x`);
    }
    const file = await writeResults("proxy", { rounds: ROUNDS, requests: REQUESTS, concurrency: CONCURRENCY, stats, ratios });
    console.log(`wrote ${file}`);
  } finally {
    for (const pool of [...direct, ...proxied]) await pool.close();
    await nginx.stop();
    await stopProcess(second);
    await bench.close();
  }
}

await main();
