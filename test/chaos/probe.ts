// What the API answers while a dependency is down: a client's requests every ~250 ms, each on its own
// (a slow answer does not hold back the next request, as it would not for a fleet of clients).
import type { Job } from "@coalesce/contracts";
import type { ApiClient } from "./client.ts";
import { sleep } from "./wait.ts";

export type ProbeRoute = "POST /v1/jobs" | "GET /v1/jobs/{id}" | "GET /readyz";

export type ProbeAnswer = {
  route: ProbeRoute;
  /** An HTTP status, or what happened instead. */
  outcome: number | "timeout" | "refused" | "error";
  ms: number;
  retryAfter: string | null;
  problemJson: boolean;
  /** POST answered 202: the job it created, which must complete. */
  jobId?: string;
};

/** The issue's promise is an answer within about 2 s; 5 s leaves room for a loaded 2-core machine, and still fails a hang. */
export const SLOW_ANSWER_MS = 5_000;
/** A request not answered in this long is given up, as a client would. */
const PROBE_TIMEOUT_MS = 10_000;
/** Requests of one route in flight at most, so a hanging API does not pile up unbounded work. */
const MAX_IN_FLIGHT = 40;

const ONE_ROW = JSON.stringify({ model: "iris", inputs: [{ features: [5.1, 3.5, 1.4, 0.2] }] });

export type Probe = { stop(): Promise<ProbeAnswer[]> };

export function startProbe(client: ApiClient, jobId: string, everyMs = 250): Probe {
  const answers: ProbeAnswer[] = [];
  const inFlight = new Map<ProbeRoute, number>();
  const pending = new Set<Promise<void>>();
  let running = true;

  const send = (route: ProbeRoute) => {
    if ((inFlight.get(route) ?? 0) >= MAX_IN_FLIGHT) return;
    inFlight.set(route, (inFlight.get(route) ?? 0) + 1);
    const started = performance.now();
    const request =
      route === "POST /v1/jobs"
        ? client.request("POST", "/v1/jobs", { body: ONE_ROW, headers: { "Content-Type": "application/json" }, timeoutMs: PROBE_TIMEOUT_MS })
        : client.request("GET", route === "GET /readyz" ? "/readyz" : `/v1/jobs/${jobId}`, { timeoutMs: PROBE_TIMEOUT_MS });
    const done = request
      .then(
        (answer) => {
          const record: ProbeAnswer = {
            route,
            outcome: answer.status,
            ms: answer.ms,
            retryAfter: answer.headers.get("retry-after"),
            problemJson: (answer.headers.get("content-type") ?? "").startsWith("application/problem+json"),
          };
          if (route === "POST /v1/jobs" && answer.status === 202) record.jobId = (JSON.parse(answer.text) as Job).id;
          answers.push(record);
        },
        (error: unknown) => {
          const name = (error as Error).name;
          const code = (error as { cause?: { code?: string } }).cause?.code;
          const outcome = name === "TimeoutError" || name === "AbortError" ? "timeout" : code === "ECONNREFUSED" ? "refused" : "error";
          answers.push({ route, outcome, ms: performance.now() - started, retryAfter: null, problemJson: false });
        },
      )
      .finally(() => {
        inFlight.set(route, (inFlight.get(route) ?? 1) - 1);
        pending.delete(done);
      });
    pending.add(done);
  };

  const loop = (async () => {
    while (running) {
      send("POST /v1/jobs");
      send("GET /v1/jobs/{id}");
      send("GET /readyz");
      await sleep(everyMs);
    }
  })();

  return {
    async stop() {
      running = false;
      await loop;
      // Requests already sent are answered or time out (PROBE_TIMEOUT_MS): wait for them all.
      await Promise.all([...pending]);
      return answers;
    },
  };
}

/** "503 x12 <=2.1 s, 202 x4 <=0.1 s" per route. */
export function summarizeProbe(answers: ProbeAnswer[]): string {
  const routes: [ProbeRoute, string][] = [
    ["POST /v1/jobs", "POST"],
    ["GET /v1/jobs/{id}", "GET job"],
    ["GET /readyz", "readyz"],
  ];
  return routes
    .map(([route, label]) => {
      const byOutcome = new Map<string, number[]>();
      for (const answer of answers.filter((a) => a.route === route)) {
        const key = String(answer.outcome);
        byOutcome.set(key, [...(byOutcome.get(key) ?? []), answer.ms]);
      }
      const parts = [...byOutcome].map(([outcome, times]) => `${outcome} x${times.length} <=${(Math.max(...times) / 1000).toFixed(1)}s`);
      return `${label}: ${parts.join(", ") || "none"}`;
    })
    .join("; ");
}

/**
 * What broke the promise for a client during the outage: an answer other than 2xx or a 503 problem
 * with Retry-After (a 500, a 404 for a job that exists), no answer (timeout, refused: the API
 * died), or an answer slower than SLOW_ANSWER_MS.
 */
export function probeProblems(answers: ProbeAnswer[]): string[] {
  const problems = new Map<string, number>();
  const add = (text: string) => problems.set(text, (problems.get(text) ?? 0) + 1);
  for (const answer of answers) {
    const { route, outcome } = answer;
    if (typeof outcome !== "number") add(`${route}: ${outcome === "timeout" ? `no answer within ${PROBE_TIMEOUT_MS / 1000} s` : outcome}`);
    else if (outcome === 503 && (!answer.retryAfter || !answer.problemJson)) add(`${route}: 503 without ${answer.retryAfter ? "problem+json" : "Retry-After"}`);
    else if (outcome !== 503 && (outcome < 200 || outcome > 299)) add(`${route}: answered ${outcome}`);
    if (typeof outcome === "number" && answer.ms > SLOW_ANSWER_MS) add(`${route}: answered after more than ${SLOW_ANSWER_MS / 1000} s`);
  }
  return [...problems].map(([text, n]) => `${text} x${n}`);
}
