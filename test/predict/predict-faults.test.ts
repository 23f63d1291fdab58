// Predict now under real process faults: worker processes killed with SIGKILL while they hold a
// request, and the API's Redis taken away (through a TCP proxy). The API is a real process too, so
// its Redis connection is the one production has (fail-fast). The promise checked: a request is
// answered 200 by another worker, or refused with a 503 and Retry-After, never left hanging.
import type { PredictResponse, Problem } from "@coalesce/contracts";
import { createRedisConnection, listWorkers } from "@coalesce/queue";
import type { RedisClient } from "@coalesce/queue";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { API_MAIN, freePort, startProcess, stopProcess, waitUntilReady, WORKER_MAIN, type ServiceProcess } from "../../scripts/processes.ts";
import { readModel, readReference, type Reference } from "../support/fixtures.ts";
import { irisRows } from "../support/http.ts";
import { PREDICT_GROUP, predictStreamKey, waitUntil } from "../support/predict.ts";
import { createTestApi, createTestServices, REDIS_URL, type TestApi, type TestServices } from "../support/services.ts";
import { startTcpProxy, type TcpProxy } from "../support/tcp-proxy.ts";

const KEY = "csk_predict_faults_0123456789ab";
/**
 * The API process' PREDICT_TIMEOUT_MS: room for a second worker process to start (seconds when
 * other test files load the machine) after the first holds the request, and then to claim it.
 */
const PREDICT_TIMEOUT_MS = 20_000;
/** The in-process API's, for the request whose only worker dies: it is answered at this timeout. */
const SHORT_TIMEOUT_MS = 4_000;
/** A worker whose heartbeat is this old is dead: its requests are claimed by a live one. */
const STALLED_TAKEOVER_MS = 2_000;
/** A request not answered this long after the API's own timeout has hung: the test fails. */
const HANG_MS = PREDICT_TIMEOUT_MS + 5_000;

let services: TestServices;
let redis: RedisClient;
let proxy: TcpProxy;
let api: ServiceProcess;
let baseUrl: string;
let reference: Reference[];
const workers: ServiceProcess[] = [];
const output = new Map<ServiceProcess, string>();

beforeAll(async () => {
  services = await createTestServices();
  redis = createRedisConnection(REDIS_URL);
  reference = await readReference("iris");
  const redisUrl = new URL(REDIS_URL);
  proxy = await startTcpProxy(Number(redisUrl.port || 6379), redisUrl.hostname);
  redisUrl.hostname = "127.0.0.1";
  redisUrl.port = String(proxy.port);
  const port = await freePort();
  baseUrl = `http://127.0.0.1:${port}`;
  api = startProcess(
    "api",
    API_MAIN,
    { ...services.env, REDIS_URL: redisUrl.toString(), PORT: String(port), BOOTSTRAP_API_KEY: KEY, MIGRATE_ON_START: "false", PREDICT_TIMEOUT_MS: String(PREDICT_TIMEOUT_MS) },
    "ignore",
  );
  await waitUntilReady(baseUrl, [api]);
  const model = await fetch(`${baseUrl}/v1/models/iris/versions`, {
    method: "POST",
    headers: { Authorization: `Bearer ${KEY}`, "Content-Type": "application/octet-stream" },
    body: new Uint8Array(await readModel("iris")),
  });
  expect(model.status, await model.text()).toBe(201);
}, 90_000);

afterEach(async () => {
  await Promise.all(workers.splice(0).map((worker) => stopProcess(worker, 5_000)));
});

afterAll(async () => {
  if (api) await stopProcess(api);
  await proxy?.close();
  redis?.disconnect();
  await services?.cleanup();
});

function startWorkerProcess(env: Record<string, string> = {}): ServiceProcess {
  const worker = startProcess(
    "worker",
    WORKER_MAIN,
    { ...services.env, MIGRATE_ON_START: "false", LOG_LEVEL: "info", STALLED_TAKEOVER_MS: String(STALLED_TAKEOVER_MS), ...env },
    "pipe",
  );
  output.set(worker, "");
  const keep = (chunk: Buffer) => output.set(worker, (output.get(worker) ?? "") + chunk.toString());
  worker.child.stdout?.on("data", keep);
  worker.child.stderr?.on("data", keep);
  workers.push(worker);
  return worker;
}

/** A worker that holds every predict row for a minute (its batches wait to fill), as a worker about to die would. */
const startHoldingWorker = () => startWorkerProcess({ ADAPTIVE_BATCHING: "false", MAX_BATCH_DELAY_MS: "60000" });

/** A worker's heartbeat id (and consumer name) holds its process id. */
const isOf = (worker: ServiceProcess) => (id: string) => id.split(":")[1] === String(worker.child.pid);

const ready = (worker: ServiceProcess) =>
  waitUntil(`worker ${worker.child.pid} to be ready`, async () => (await listWorkers(redis, services.queuePrefix)).some((w) => isOf(worker)(w.id)), 60_000, 100);

/** Waits until the worker's consumer holds a predict request (the group's pending list names it). */
const holdsRequest = (worker: ServiceProcess) =>
  waitUntil(
    `worker ${worker.child.pid} to hold a predict request`,
    async () => {
      const [, , , consumers] = (await redis.xpending(predictStreamKey(services.queuePrefix), PREDICT_GROUP)) as [number, string, string, [string, string][] | null];
      return (consumers ?? []).some(([name, count]) => isOf(worker)(name) && Number(count) > 0);
    },
    15_000,
  );

type Answer = { status: number; headers: Headers; body: unknown };

/** POST /v1/models/iris/predict to the API process, or to `inProcess` (an API on the same services). */
async function predict(rows: unknown[], inProcess?: TestApi): Promise<Answer> {
  const init = {
    method: "POST",
    headers: { Authorization: `Bearer ${KEY}`, "Content-Type": "application/json", "Cache-Control": "no-store" },
    body: JSON.stringify({ inputs: rows }),
    signal: AbortSignal.timeout(HANG_MS),
  };
  const response = inProcess ? await inProcess.app.request("/v1/models/iris/predict", init) : await fetch(`${baseUrl}/v1/models/iris/predict`, init);
  return { status: response.status, headers: response.headers, body: JSON.parse(await response.text()) as unknown };
}

/** Each row's outputs against the reference (iris rows in file order). */
function expectIrisAnswers(answer: Answer, rows: number): void {
  expect(answer.status, JSON.stringify(answer.body)).toBe(200);
  const { outputs } = answer.body as PredictResponse;
  expect(outputs).toHaveLength(rows);
  outputs.forEach((row, index) => {
    const expected = reference[index] as Reference;
    expect(row.outputs?.label).toBe(expected.label);
    (row.outputs?.probabilities as number[]).forEach((p, k) => expect(p).toBeCloseTo(expected.probabilities[k] as number, 5));
  });
}

function expectUnavailable(answer: Answer): Problem {
  expect(answer.status, JSON.stringify(answer.body)).toBe(503);
  expect(Number(answer.headers.get("retry-after"))).toBeGreaterThan(0);
  expect(answer.headers.get("content-type")).toMatch(/^application\/problem\+json/);
  expect(answer.body).toMatchObject({ code: "service_unavailable" });
  return answer.body as Problem;
}

describe("worker processes killed", () => {
  it("a worker killed -9 while it holds predict rows: another worker claims them and the request answers 200", async () => {
    const victim = startHoldingWorker();
    await ready(victim);
    const answer = predict(irisRows(3));
    await holdsRequest(victim);
    // Started only now, so the request cannot have gone to it first.
    const survivor = startWorkerProcess();
    await ready(survivor);
    victim.child.kill("SIGKILL");
    const killedAt = Date.now();
    await victim.exited;
    expectIrisAnswers(await answer, 3);
    expect(output.get(survivor)).toContain("took over predict requests that no live worker was running");
    console.info(`predict held by a worker killed -9: answered 200 by another ${Date.now() - killedAt} ms after the kill (STALLED_TAKEOVER_MS ${STALLED_TAKEOVER_MS})`);
  });

  it("the only worker killed -9 while it holds a request: 503 with Retry-After, not a hang", async () => {
    // An API in process with a short timeout, so the test does not wait out the process' long one.
    const api = createTestApi(services, {}, { timeoutMs: SHORT_TIMEOUT_MS });
    try {
      const victim = startHoldingWorker();
      await ready(victim);
      const answer = predict(irisRows(2), api);
      await holdsRequest(victim);
      victim.child.kill("SIGKILL");
      const killedAt = Date.now();
      await victim.exited;
      const problem = expectUnavailable(await answer);
      expect(problem.detail).toMatch(/no other is running/);
      console.info(`predict held by the only worker, killed -9: 503 ${Date.now() - killedAt} ms after the kill (PREDICT_TIMEOUT_MS ${SHORT_TIMEOUT_MS})`);
    } finally {
      await api.close();
    }
  });
});

describe("the API's Redis unreachable", () => {
  it("503 with Retry-After while it is down, and answers again once it is back", async () => {
    const worker = startWorkerProcess();
    await ready(worker);
    expectIrisAnswers(await predict(irisRows(2)), 2);
    await proxy.down();
    try {
      const sentAt = Date.now();
      const problem = expectUnavailable(await predict(irisRows(2)));
      expect(problem.detail).toMatch(/redis|queue/i);
      console.info(`predict with the API's Redis down: 503 in ${Date.now() - sentAt} ms: ${problem.detail}`);
    } finally {
      await proxy.up();
    }
    let last: Answer | undefined;
    await waitUntil(
      "predict to answer 200 again",
      async () => {
        last = await predict(irisRows(2));
        return last.status === 200;
      },
      30_000,
      200,
    ).catch((error: unknown) => {
      throw new Error(`${(error as Error).message}; last answer ${last?.status}: ${JSON.stringify(last?.body)}`);
    });
    expectIrisAnswers(last as Answer, 2);
  });
});
