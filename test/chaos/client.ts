// The fault suite talks to the API as a user does: over HTTP, with the tenant's key.
import { TERMINAL_JOB_STATUSES, type Job, type JobList } from "@coalesce/contracts";
import { until } from "./wait.ts";

export type Answer = { status: number; headers: Headers; text: string; ms: number };
type RequestOptions = { body?: string | Uint8Array; headers?: Record<string, string>; timeoutMs?: number };

export type ApiClient = {
  baseUrl: string;
  /** Any request; a refused connection or a timeout throws. */
  request(method: string, route: string, options?: RequestOptions): Promise<Answer>;
  /** A request that must answer 2xx; its JSON body. */
  json<T>(method: string, route: string, options?: RequestOptions): Promise<T>;
  getJob(id: string): Promise<Job>;
  /** Polls until the job is finished (any terminal status); the deadline's message says where it stood. */
  waitForEnd(id: string, timeoutMs: number): Promise<Job>;
  /** Every job of the tenant, newest first. */
  listJobs(): Promise<Job[]>;
};

export function createClient(baseUrl: string, key: string): ApiClient {
  const request: ApiClient["request"] = async (method, route, options = {}) => {
    const started = performance.now();
    const response = await fetch(`${baseUrl}${route}`, {
      method,
      headers: { Authorization: `Bearer ${key}`, ...options.headers },
      ...(options.body === undefined ? {} : { body: options.body }),
      signal: AbortSignal.timeout(options.timeoutMs ?? 30_000),
    });
    const text = await response.text();
    return { status: response.status, headers: response.headers, text, ms: performance.now() - started };
  };
  const json = async <T>(method: string, route: string, options?: RequestOptions): Promise<T> => {
    const answer = await request(method, route, options);
    if (answer.status < 200 || answer.status > 299) throw new Error(`${method} ${route} answered ${answer.status}: ${answer.text.slice(0, 500)}`);
    return JSON.parse(answer.text) as T;
  };
  const getJob = (id: string) => json<Job>("GET", `/v1/jobs/${id}`, { timeoutMs: 10_000 });
  return {
    baseUrl,
    request,
    json,
    getJob,
    async waitForEnd(id, timeoutMs) {
      let last: Job | null = null;
      return until(
        `job ${id} to end`,
        timeoutMs,
        async () => {
          last = await getJob(id);
          return TERMINAL_JOB_STATUSES.includes(last.status) ? last : null;
        },
        { everyMs: 250, describe: () => (last ? `still ${describeJob(last)}` : "no answer from GET /v1/jobs/{id}") },
      );
    },
    async listJobs() {
      const jobs: Job[] = [];
      let cursor: string | null = null;
      do {
        const page: JobList = await json<JobList>("GET", `/v1/jobs?limit=100${cursor ? `&cursor=${cursor}` : ""}`);
        jobs.push(...page.data);
        cursor = page.next_cursor;
      } while (cursor !== null);
      return jobs;
    },
  };
}

export function describeJob(job: Job): string {
  const done = job.counts.succeeded + job.counts.failed;
  // total is null while a CSV upload streams (in versions that say so).
  return `${job.status} at ${done}/${job.counts.total ?? "?"} rows (${job.counts.failed} failed)`;
}

/** Rows done (scored or failed) so far. */
export function processed(job: Job): number {
  return job.counts.succeeded + job.counts.failed;
}
