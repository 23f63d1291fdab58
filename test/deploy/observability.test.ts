// deploy/prometheus and deploy/grafana against the real thing: promtool checks and unit-tests the
// rules and the compose scrape config; then the real API and worker processes score jobs, answer a
// predict request and send a webhook, Debian's Prometheus scrapes them (and evaluates the rules),
// and every expression of the dashboard and the rules is run there: valid PromQL, over metric names
// that the processes (or the recording rules) really produce. promtool also lints both /metrics.
import type { Job } from "@coalesce/contracts";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { API_MAIN, freePort, ROOT, startProcess, stopProcess, waitUntilReady, WORKER_MAIN, type ServiceProcess } from "../../scripts/processes.ts";
import { readFeatureCsv, readModel } from "../support/fixtures.ts";
import { createTestServices, REDIS_URL, TEST_WEBHOOK_ENV, type TestServices } from "../support/services.ts";
import { startTcpProxy, type TcpProxy } from "../support/tcp-proxy.ts";
import { WebhookReceiver } from "../support/webhook-receiver.ts";
import { createApiMetrics } from "../../apps/api/src/metrics.ts";
import { connectDatabase } from "@coalesce/db";
import { createPredictQueue, createRedisConnection } from "@coalesce/queue";

const PROMTOOL = "/usr/bin/promtool";
const PROMETHEUS = "/usr/bin/prometheus";
const HAVE_PROMETHEUS = existsSync(PROMTOOL) && existsSync(PROMETHEUS);
if (!HAVE_PROMETHEUS) console.warn(`skipping the observability tests: ${PROMTOOL} or ${PROMETHEUS} is missing (Debian's package prometheus; CI installs it)`);

const PROMETHEUS_DIR = path.join(ROOT, "deploy/prometheus");
const RULES_DIR = path.join(PROMETHEUS_DIR, "rules");
const DASHBOARD = path.join(ROOT, "deploy/grafana/coalesce.json");

function promtool(args: string[], options: { cwd?: string; input?: string } = {}): { status: number | null; output: string } {
  const result = spawnSync(PROMTOOL, args, { cwd: options.cwd ?? ROOT, input: options.input, encoding: "utf8" });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

async function yamlFiles(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((name) => name.endsWith(".yml")).sort().map((name) => path.join(dir, name));
}

type Rule = { record?: string; alert?: string; expr: string };
async function readRules(): Promise<Rule[]> {
  const rules: Rule[] = [];
  for (const file of await yamlFiles(RULES_DIR)) {
    const doc = parseYaml(await readFile(file, "utf8")) as { groups: { rules: Rule[] }[] };
    for (const group of doc.groups) rules.push(...group.rules);
  }
  return rules;
}

type Panel = { title: string; type: string; targets?: { expr: string }[] };
type Dashboard = { panels: Panel[]; templating: { list: { name: string; type: string; query: string | { query: string } }[] } };

/** Grafana's variables as a query sees them: every model and version, and a rate window a few scrapes long. */
function substitute(expr: string): string {
  return expr.replaceAll("$__rate_interval", "1m").replaceAll("$model", ".*").replaceAll("$version", ".*");
}

const KEYWORDS = new Set(["by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset", "inf", "nan"]);

/**
 * The metric names an expression reads: identifiers left once strings, label matchers, ranges and
 * grouping clauses are taken out, less functions and aggregations (followed by a parenthesis),
 * keywords and numbers. Enough for the expressions in this repository, not a PromQL parser.
 */
function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, "")
    .replace(/\{[^}]*\}/g, " ")
    .replace(/\[[^\]]*\]/g, " ")
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ");
  const names = new Set<string>();
  for (const match of bare.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*/g)) {
    const rest = bare.slice((match.index ?? 0) + match[0].length);
    if (/^\s*\(/.test(rest) || KEYWORDS.has(match[0].toLowerCase()) || /^\d/.test(match[0])) continue;
    names.add(match[0]);
  }
  return [...names];
}

describe.skipIf(!HAVE_PROMETHEUS)("Prometheus rules and scrape config", () => {
  it("promtool check rules accepts every rule file", async () => {
    const files = await yamlFiles(RULES_DIR);
    expect(files.map((file) => path.basename(file))).toEqual(["coalesce-alerts.yml", "coalesce-recording.yml"]);
    const result = promtool(["check", "rules", ...files]);
    expect(result.output).not.toMatch(/FAILED/);
    expect(result.status, result.output).toBe(0);
  });

  it("promtool test rules passes, with a firing and a quiet case for every alert", async () => {
    const testsDir = path.join(PROMETHEUS_DIR, "tests");
    const files = await yamlFiles(testsDir);
    expect(files.length).toBeGreaterThan(0);
    const result = promtool(["test", "rules", ...files.map((file) => path.basename(file))], { cwd: testsDir });
    expect(result.status, result.output).toBe(0);

    const alerts = (await readRules()).flatMap((rule) => (rule.alert ? [rule.alert] : []));
    const cases = new Map<string, { firing: number; quiet: number }>(alerts.map((alert) => [alert, { firing: 0, quiet: 0 }]));
    for (const file of files) {
      const doc = parseYaml(await readFile(file, "utf8")) as { tests: { alert_rule_test?: { alertname: string; exp_alerts?: unknown[] }[] }[] };
      for (const test of doc.tests) {
        for (const check of test.alert_rule_test ?? []) {
          const counts = cases.get(check.alertname);
          expect(counts, `a test names ${check.alertname}, which no rule file has`).toBeDefined();
          if ((check.exp_alerts ?? []).length > 0) counts!.firing++;
          else counts!.quiet++;
        }
      }
    }
    const untested = [...cases].filter(([, counts]) => counts.firing === 0 || counts.quiet === 0).map(([alert]) => alert);
    expect(untested).toEqual([]);
  });

  it("every alert has a severity, a summary, a description and a runbook", async () => {
    for (const file of await yamlFiles(RULES_DIR)) {
      const doc = parseYaml(await readFile(file, "utf8")) as { groups: { rules: (Rule & { labels?: Record<string, string>; annotations?: Record<string, string> })[] }[] };
      for (const rule of doc.groups.flatMap((group) => group.rules).filter((r) => r.alert)) {
        expect(["critical", "warning"], rule.alert).toContain(rule.labels?.severity);
        for (const annotation of ["summary", "description", "runbook"]) expect(rule.annotations?.[annotation], `${rule.alert}.${annotation}`).toBeTruthy();
      }
    }
  });

  it("promtool check config accepts the compose profile's scrape config", () => {
    const result = promtool(["check", "config", path.join(PROMETHEUS_DIR, "prometheus.compose.yml")]);
    expect(result.status, result.output).toBe(0);
  });

  it("reads metric names out of expressions", () => {
    expect(metricNames('sum by (lane) (rate(coalesce_jobs_finished_total{status="failed"}[15m])) or on () up == 0')).toEqual(["coalesce_jobs_finished_total", "up"]);
    expect(metricNames("histogram_quantile(0.95, sum by (le) (rate(a_bucket[5m]))) / lane:b:ratio_rate5m > (14.4 * 0.01)")).toEqual(["a_bucket", "lane:b:ratio_rate5m"]);
  });
});

describe.skipIf(!HAVE_PROMETHEUS)("the dashboard and the rules over the real processes' metrics", () => {
  const KEY = "csk_observability_0123456789";
  let services: TestServices;
  let receiver: WebhookReceiver;
  let processes: ServiceProcess[] = [];
  let prometheus: ChildProcess | undefined;
  let prometheusDir: string | undefined;
  let baseUrl: string;
  let apiMetricsUrl: string;
  let workerMetricsUrl: string;
  let prometheusUrl: string;
  let output = "";

  async function call<T>(method: string, route: string, body?: string | Uint8Array, type = "application/json"): Promise<T> {
    const response = await fetch(`${baseUrl}${route}`, {
      method,
      headers: { Authorization: `Bearer ${KEY}`, "Content-Type": type },
      ...(body === undefined ? {} : { body }),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`${method} ${route}: ${response.status} ${text}`);
    return JSON.parse(text) as T;
  }

  async function until<T>(what: string, read: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = await read().catch(() => undefined);
      if (value !== undefined) return value;
      if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms\n${output.slice(-4000)}`);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }

  type QueryResult = { status: string; error?: string; data?: { resultType: string; result: unknown[] } };
  async function query(expr: string): Promise<{ httpStatus: number; body: QueryResult }> {
    const response = await fetch(`${prometheusUrl}/api/v1/query?query=${encodeURIComponent(expr)}`);
    return { httpStatus: response.status, body: (await response.json()) as QueryResult };
  }

  async function metricNamesStored(): Promise<Set<string>> {
    const body = (await (await fetch(`${prometheusUrl}/api/v1/label/__name__/values`)).json()) as { data: string[] };
    return new Set(body.data);
  }

  beforeAll(async () => {
    services = await createTestServices();
    receiver = await WebhookReceiver.start();
    const [port, apiMetricsPort, workerMetricsPort, prometheusPort] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
    baseUrl = `http://127.0.0.1:${port}`;
    apiMetricsUrl = `http://127.0.0.1:${apiMetricsPort}/metrics`;
    workerMetricsUrl = `http://127.0.0.1:${workerMetricsPort}/metrics`;
    prometheusUrl = `http://127.0.0.1:${prometheusPort}`;
    const env = {
      ...services.env,
      ...TEST_WEBHOOK_ENV,
      PORT: String(port),
      BOOTSTRAP_API_KEY: KEY,
      // As in compose: the API's /metrics on a port of its own, the worker's on its METRICS_PORT.
      API_METRICS_PORT: String(apiMetricsPort),
      METRICS_PORT: String(workerMetricsPort),
      MAX_BATCH_DELAY_MS: "5",
    };
    processes = [startProcess("api", API_MAIN, env, "pipe"), startProcess("worker", WORKER_MAIN, env, "pipe")];
    for (const service of processes) {
      service.child.stdout?.on("data", (chunk: Buffer) => (output += chunk.toString()));
      service.child.stderr?.on("data", (chunk: Buffer) => (output += chunk.toString()));
    }
    await waitUntilReady(baseUrl, processes).catch((error: unknown) => {
      throw new Error(`${String(error)}\n${output.slice(-4000)}`);
    });

    // Work of every kind the dashboard shows: both lanes, a webhook, a predict request.
    await call("POST", "/v1/models/iris/versions", await readModel("iris"), "application/octet-stream");
    const { features } = await readFeatureCsv("iris");
    const inputs = features.slice(0, 20).map((f) => ({ features: f }));
    const jobs = await Promise.all([
      call<Job>("POST", "/v1/jobs", JSON.stringify({ model: "iris", inputs, priority: "interactive", webhook_url: receiver.url })),
      call<Job>("POST", "/v1/jobs", JSON.stringify({ model: "iris", inputs, priority: "batch" })),
    ]);
    await until("the worker announces itself", async () => ((await call<{ workers: unknown[] }>("GET", "/readyz")).workers.length > 0 ? true : undefined));
    await call("POST", "/v1/models/iris/predict", JSON.stringify({ inputs: inputs.slice(0, 2) }));
    for (const job of jobs) {
      await until(`job ${job.id} finishes`, async () => ((await call<Job>("GET", `/v1/jobs/${job.id}`)).status === "succeeded" ? true : undefined));
    }
    await receiver.waitFor((received) => received.length > 0, 30_000);
    // The delivery's attempt is counted after the receiver answered.
    await until("the webhook attempt is counted", async () => ((await (await fetch(workerMetricsUrl)).text()).includes("coalesce_webhook_attempts_total{") ? true : undefined));

    prometheusDir = await mkdtemp(path.join(tmpdir(), "coalesce-prometheus-"));
    const config = {
      global: { scrape_interval: "1s", evaluation_interval: "1s", scrape_timeout: "1s" },
      rule_files: [path.join(RULES_DIR, "*.yml")],
      scrape_configs: [
        { job_name: "coalesce-api", static_configs: [{ targets: [`127.0.0.1:${apiMetricsPort}`] }] },
        { job_name: "coalesce-worker", static_configs: [{ targets: [`127.0.0.1:${workerMetricsPort}`] }] },
      ],
    };
    await writeFile(path.join(prometheusDir, "prometheus.yml"), JSON.stringify(config));
    prometheus = spawn(
      PROMETHEUS,
      [
        `--config.file=${path.join(prometheusDir, "prometheus.yml")}`,
        `--storage.tsdb.path=${path.join(prometheusDir, "data")}`,
        `--web.listen-address=127.0.0.1:${prometheusPort}`,
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    prometheus.stderr?.on("data", (chunk: Buffer) => (output += chunk.toString()));
    // Rates need two scrapes of each process, and recording rules read rates: wait until every
    // recording rule has produced a series.
    const recorded = (await readRules()).flatMap((rule) => (rule.record ? [rule.record] : []));
    await until(
      "Prometheus has scraped both processes and evaluated every recording rule",
      async () => {
        const names = await metricNamesStored();
        return ["coalesce_batch_rows_bucket", "coalesce_http_request_duration_seconds_bucket", ...recorded].every((name) => names.has(name)) ? true : undefined;
      },
      30_000,
    );
  });

  afterAll(async () => {
    if (prometheus && prometheus.exitCode === null) {
      const exited = new Promise((resolve) => prometheus!.once("exit", resolve));
      prometheus.kill("SIGTERM");
      await exited;
    }
    await Promise.all(processes.map((service) => stopProcess(service)));
    await receiver?.down();
    await services?.cleanup();
    if (prometheusDir) await rm(prometheusDir, { recursive: true, force: true });
  });

  it("promtool check metrics finds nothing of ours in either process's /metrics", async () => {
    for (const url of [apiMetricsUrl, workerMetricsUrl]) {
      const text = await (await fetch(url)).text();
      expect(text).toContain("coalesce_");
      const result = promtool(["check", "metrics"], { input: text });
      // prom-client's own process and Node.js metrics are not ours to rename.
      const ours = result.output.split("\n").filter((line) => line.startsWith("coalesce_"));
      expect(ours, `${url}:\n${result.output}`).toEqual([]);
    }
  });

  it("serves the histograms in seconds, with the bucket bounds the SLO rules count", async () => {
    const worker = await (await fetch(workerMetricsUrl)).text();
    for (const name of ["coalesce_batch_wait_seconds", "coalesce_onnx_run_seconds", "coalesce_predict_queue_wait_seconds", "coalesce_webhook_attempt_seconds"]) {
      expect(worker).toMatch(new RegExp(`^${name}_count(\\{[^}]*\\})? [1-9]`, "m"));
    }
    expect(worker).not.toMatch(/^coalesce_\w+_ms[_ {]/m);
    for (const expr of ['coalesce_job_latency_seconds_bucket{lane="interactive",le="10"}', 'coalesce_predict_duration_seconds_bucket{outcome="ok",le="1"}']) {
      const { body } = await query(expr);
      expect(body.data?.result.length, expr).toBeGreaterThan(0);
    }
  });

  it("every panel's and template variable's query is valid PromQL with data behind it", async () => {
    const dashboard = JSON.parse(await readFile(DASHBOARD, "utf8")) as Dashboard;
    const exprs = dashboard.panels.flatMap((panel) => (panel.targets ?? []).map((target) => ({ where: panel.title, expr: target.expr })));
    for (const variable of dashboard.templating.list.filter((v) => v.type === "query")) {
      const text = typeof variable.query === "string" ? variable.query : variable.query.query;
      // Grafana's label_values(selector, label): the selector is PromQL; the label must be on it.
      const match = /^label_values\((.+),\s*(\w+)\)$/.exec(text);
      expect(match, `variable ${variable.name}: ${text}`).not.toBeNull();
      exprs.push({ where: `$${variable.name}`, expr: `count by (${match![2]}) (${match![1]})` });
    }
    expect(exprs.length).toBeGreaterThan(20);
    const empty: string[] = [];
    for (const { where, expr } of exprs) {
      const { httpStatus, body } = await query(substitute(expr));
      expect({ where, expr, httpStatus, status: body.status, error: body.error }).toMatchObject({ httpStatus: 200, status: "success" });
      if ((body.data?.result.length ?? 0) === 0) empty.push(`${where}: ${expr}`);
    }
    expect(empty).toEqual([]);
  });

  it("an invalid expression is refused (so the check above can fail)", async () => {
    const { httpStatus, body } = await query("sum by (lane (rate(coalesce_rows_scored_total[1m]))");
    expect(httpStatus).toBe(400);
    expect(body.status).toBe("error");
  });

  it("every metric the dashboard and the rules read is one the processes or the recording rules produce", async () => {
    const dashboard = JSON.parse(await readFile(DASHBOARD, "utf8")) as Dashboard;
    const rules = await readRules();
    const exprs = [
      ...dashboard.panels.flatMap((panel) => (panel.targets ?? []).map((target) => target.expr)),
      ...dashboard.templating.list.flatMap((v) => (v.type === "query" ? [typeof v.query === "string" ? v.query : v.query.query] : [])),
      ...rules.map((rule) => rule.expr),
    ];
    const recorded = new Set(rules.flatMap((rule) => (rule.record ? [rule.record] : [])));
    const stored = await metricNamesStored();
    const used = new Set(exprs.flatMap((expr) => metricNames(substitute(expr.replace(/^label_values\((.+),\s*\w+\)$/, "$1")))));
    const missing = [...used].filter((name) => !stored.has(name) && !recorded.has(name));
    expect(missing).toEqual([]);
    // Every recording rule that the dashboard or an alert reads has produced a series by now.
    const unrecorded = [...used].filter((name) => recorded.has(name) && !stored.has(name));
    expect(unrecorded).toEqual([]);
  });
});

// Not a timing test: a scrape that hung on a silent dependency would never resolve, and the test
// would fail on its timeout; what is asserted is what the scrape says.
describe("the API's scrape-time reads under a silent Postgres and Redis", () => {
  let services: TestServices;
  let postgres: TcpProxy;
  let redisProxy: TcpProxy;

  beforeAll(async () => {
    services = await createTestServices();
    const database = new URL(services.databaseUrl);
    postgres = await startTcpProxy(Number(database.port || 5432), database.hostname);
    redisProxy = await startTcpProxy(Number(new URL(REDIS_URL).port || 6379), new URL(REDIS_URL).hostname);
  });

  afterAll(async () => {
    await postgres?.close();
    await redisProxy?.close();
    await services?.cleanup();
  });

  it("answers with the dependencies down and their gauges left out, then recovers", async () => {
    const databaseUrl = new URL(services.databaseUrl);
    databaseUrl.port = String(postgres.port);
    const redisUrl = new URL(REDIS_URL);
    redisUrl.port = String(redisProxy.port);
    const db = connectDatabase(databaseUrl.toString(), { connectTimeoutMs: 1_000 });
    const redis = createRedisConnection(redisUrl.toString(), { failFast: true });
    const queue = createPredictQueue({ connection: redis, prefix: services.queuePrefix });
    queue.on("error", () => {});
    const metrics = createApiMetrics(queue, redis, services.queuePrefix, db);
    const gauge = (text: string, name: string) => text.split("\n").filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `));
    try {
      // A fail-fast connection refuses commands until it is ready, as the API's does at start.
      await until(async () => ((await redis.ping().catch(() => null)) === "PONG" ? true : undefined));
      const healthy = await metrics.registry.metrics();
      expect(gauge(healthy, "coalesce_dependency_up")).toEqual(['coalesce_dependency_up{dependency="postgres"} 1', 'coalesce_dependency_up{dependency="redis"} 1']);
      expect(gauge(healthy, "coalesce_workers_serving")).toEqual(['coalesce_workers_serving{lane="jobs"} 0', 'coalesce_workers_serving{lane="predict"} 0']);
      expect(gauge(healthy, "coalesce_oldest_unscored_row_seconds")).toEqual([
        'coalesce_oldest_unscored_row_seconds{lane="interactive"} 0',
        'coalesce_oldest_unscored_row_seconds{lane="batch"} 0',
      ]);
      expect(gauge(healthy, "coalesce_webhook_deliveries_pending")).toEqual(["coalesce_webhook_deliveries_pending 0"]);

      // Connections stay open and nothing answers: the worst case, as no error ever comes back.
      postgres.stall();
      redisProxy.stall();
      const silent = await metrics.registry.metrics();
      expect(gauge(silent, "coalesce_dependency_up")).toEqual(['coalesce_dependency_up{dependency="postgres"} 0', 'coalesce_dependency_up{dependency="redis"} 0']);
      for (const name of ["coalesce_workers_serving", "coalesce_workers", "coalesce_oldest_unscored_row_seconds", "coalesce_queue_jobs"]) {
        expect(gauge(silent, name), name).toEqual([]);
      }
      // Unlabelled gauges always have a value: unknown (prom-client writes NaN as "Nan", which
      // Prometheus parses), not a reassuring 0.
      expect(gauge(silent, "coalesce_webhook_deliveries_pending")).toEqual([expect.stringMatching(/ nan$/i)]);
      expect(gauge(silent, "coalesce_webhook_oldest_due_seconds")).toEqual([expect.stringMatching(/ nan$/i)]);
      // The process's own metrics are still there.
      expect(silent).toMatch(/^coalesce_http_request_duration_seconds_bucket|^process_cpu_seconds_total/m);

      await postgres.up();
      await redisProxy.up();
      const back = await until(async () => {
        const text = await metrics.registry.metrics();
        return gauge(text, "coalesce_dependency_up").every((line) => line.endsWith(" 1")) ? text : undefined;
      });
      expect(gauge(back, "coalesce_oldest_unscored_row_seconds")).toHaveLength(2);
    } finally {
      // Reset what is stalled, so that closing does not wait on connections that will never answer.
      await postgres.up();
      await redisProxy.up();
      await queue.close().catch(() => {});
      redis.disconnect();
      await db.close();
    }
  });

  async function until<T>(read: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = await read();
      if (value !== undefined) return value;
      if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
});
