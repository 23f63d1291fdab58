import type { Job, JobList, JobResults } from "@coalesce/contracts";
import { beforeAll, describe, expect, it } from "vitest";
import { errorFields, expectJson, expectProblem, get, irisRows, submitJob } from "../support/http.ts";
import { useApiSuite } from "../support/api-suite.ts";

/** In creation order. */
const jobs: Job[] = [];

const suite = useApiSuite("jobs-read", { iris: true });

beforeAll(async () => {
  for (const rows of [1, 2, 3]) {
    jobs.push(await expectJson<Job>(await submitJob(suite.api, suite.auth, { model: "iris", inputs: irisRows(rows) }), 202));
  }
});

describe("GET /v1/jobs/{id}", () => {
  it("returns the job as it was accepted", async () => {
    const job = await expectJson<Job>(await get(suite.api, suite.auth, `/v1/jobs/${jobs[1]!.id}`), 200);
    expect(job).toEqual(jobs[1]);
    expect(job).toMatchObject({ status: "queued", counts: { total: 2, succeeded: 0, failed: 0 }, started_at: null });
  });

  it("answers 404 problem+json for an unknown job", async () => {
    const problem = await expectProblem(await get(suite.api, suite.auth, "/v1/jobs/job_01jdq3x8m7k2v9c4n5p6r7s8t9"), 404, "not_found");
    expect(problem.detail).toContain("job_01jdq3x8m7k2v9c4n5p6r7s8t9");
  });

  it("answers 422 naming `id` for an id longer than any job id", async () => {
    const problem = await expectProblem(await get(suite.api, suite.auth, `/v1/jobs/job_${"x".repeat(100)}`), 422, "validation_failed");
    expect(errorFields(problem)).toEqual(["id"]);
  });
});

describe("GET /v1/jobs", () => {
  it("lists the caller's jobs newest first", async () => {
    const list = await expectJson<JobList>(await get(suite.api, suite.auth, "/v1/jobs"), 200);
    expect(list.data.map((job) => job.id)).toEqual(jobs.map((job) => job.id).reverse());
    expect(list.next_cursor).toBeNull();
    expect(list.data[0]).toEqual(jobs[2]);
  });

  it("pages with limit and next_cursor until next_cursor is null", async () => {
    const first = await expectJson<JobList>(await get(suite.api, suite.auth, "/v1/jobs?limit=2"), 200);
    expect(first.data.map((job) => job.id)).toEqual([jobs[2]!.id, jobs[1]!.id]);
    expect(first.next_cursor).toEqual(expect.any(String));

    const second = await expectJson<JobList>(await get(suite.api, suite.auth, `/v1/jobs?limit=2&cursor=${encodeURIComponent(first.next_cursor!)}`), 200);
    expect(second.data.map((job) => job.id)).toEqual([jobs[0]!.id]);
    expect(second.next_cursor).toBeNull();
  });

  it("gives no next_cursor when the page is exactly full", async () => {
    const page = await expectJson<JobList>(await get(suite.api, suite.auth, "/v1/jobs?limit=3"), 200);
    expect(page.data).toHaveLength(3);
    expect(page.next_cursor).toBeNull();
  });

  it.each(["0", "101", "1000", "-1", "2.5", "many"])("answers 422 naming `limit` for limit=%s", async (limit) => {
    const problem = await expectProblem(await get(suite.api, suite.auth, `/v1/jobs?limit=${limit}`), 422, "validation_failed");
    expect(errorFields(problem)).toEqual(["limit"]);
  });

  it("answers 422 naming `cursor` for a cursor longer than any job id", async () => {
    const problem = await expectProblem(await get(suite.api, suite.auth, `/v1/jobs?cursor=${"x".repeat(65)}`), 422, "validation_failed");
    expect(errorFields(problem)).toEqual(["cursor"]);
  });

  // A cursor that no page ever returned must not silently answer some other page: "zzz" sorts
  // after every job id, so the API answers page one again, and "garbage" an empty page.
  it.each(["garbage", "zzz"])("answers 422 naming `cursor` for cursor=%s, which no page returned", async (cursor) => {
    const problem = await expectProblem(await get(suite.api, suite.auth, `/v1/jobs?cursor=${cursor}`), 422, "validation_failed");
    expect(errorFields(problem)).toEqual(["cursor"]);
  });
});

describe("GET /v1/jobs/{id}/results", () => {
  it("answers an empty page for a queued job", async () => {
    const results = await expectJson<JobResults>(await get(suite.api, suite.auth, `/v1/jobs/${jobs[2]!.id}/results`), 200);
    expect(results).toEqual({ data: [], next_cursor: null, job_status: "queued", complete: false });
  });

  it("answers 404 for an unknown job", async () => {
    await expectProblem(await get(suite.api, suite.auth, "/v1/jobs/job_01jdq3x8m7k2v9c4n5p6r7s8t9/results"), 404, "not_found");
  });

  it.each(["abc", "-1", "1.5", "12345678901"])("answers 422 naming `cursor` for cursor=%s", async (cursor) => {
    const problem = await expectProblem(await get(suite.api, suite.auth, `/v1/jobs/${jobs[0]!.id}/results?cursor=${cursor}`), 422, "validation_failed");
    expect(errorFields(problem)).toEqual(["cursor"]);
  });

  it.each(["0", "1001"])("answers 422 naming `limit` for limit=%s", async (limit) => {
    const problem = await expectProblem(await get(suite.api, suite.auth, `/v1/jobs/${jobs[0]!.id}/results?limit=${limit}`), 422, "validation_failed");
    expect(errorFields(problem)).toEqual(["limit"]);
  });

  it("accepts limit=1000", async () => {
    await expectJson(await get(suite.api, suite.auth, `/v1/jobs/${jobs[0]!.id}/results?limit=1000`), 200);
  });
});
