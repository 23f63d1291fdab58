import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import type { Job, Problem } from "@coalesce/contracts";
import { expect } from "vitest";
import { FIXTURES, type TestApi } from "./services.ts";

/** A fixture's bytes, e.g. `fixture("iris.onnx")`. */
export function fixture(name: string): Uint8Array {
  return new Uint8Array(readFileSync(path.join(FIXTURES, name)));
}

export function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** The first iris rows, as a job's `inputs`. */
export function irisRows(count: number): { features: number[] }[] {
  const lines = readFileSync(path.join(FIXTURES, "iris.csv"), "utf8").trim().split("\n").slice(1);
  return Array.from({ length: count }, (_, i) => {
    const cells = lines[i % lines.length]!.split(",").map(Number);
    return { features: cells.slice(1, 5) };
  });
}

/** POST /v1/models/{name}/versions with the bytes as the raw body. */
export function uploadModel(api: TestApi, auth: string, name: string, bytes: Uint8Array, contentType = "application/octet-stream"): Promise<Response> {
  return Promise.resolve(
    api.app.request(`/v1/models/${name}/versions`, {
      method: "POST",
      headers: { Authorization: auth, "Content-Type": contentType },
      body: bytes,
    }),
  );
}

/** A JSON request; `body` is sent as is when it is a string, else JSON-encoded. */
export function requestJson(
  api: TestApi,
  auth: string | null,
  method: string,
  url: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Response> {
  const init: RequestInit = {
    method,
    headers: { ...(auth ? { Authorization: auth } : {}), ...(body === undefined ? {} : { "Content-Type": "application/json" }), ...headers },
  };
  if (body !== undefined) init.body = typeof body === "string" ? body : JSON.stringify(body);
  return Promise.resolve(api.app.request(url, init));
}

export function submitJob(api: TestApi, auth: string, body: unknown): Promise<Response> {
  return requestJson(api, auth, "POST", "/v1/jobs", body);
}

export function get(api: TestApi, auth: string | null, url: string): Promise<Response> {
  return requestJson(api, auth, "GET", url);
}

/**
 * Asserts what a client sees of an error: the status, problem+json, the code, a request id in the
 * body that matches the X-Request-Id header. Returns the body for further checks.
 */
export async function expectProblem(response: Response, status: number, code: Problem["code"]): Promise<Problem> {
  const text = await response.text();
  expect(response.status, text).toBe(status);
  expect(response.headers.get("content-type")).toMatch(/^application\/problem\+json/);
  const body = JSON.parse(text) as Problem;
  expect(body).toMatchObject({ status, code, type: expect.stringContaining(code) as string });
  expect(body.detail).toEqual(expect.any(String));
  expect(body.detail).not.toMatch(/\n\s+at /); // never a stack trace
  expect(body.request_id).toMatch(/\S/);
  expect(response.headers.get("x-request-id")).toBe(body.request_id);
  return body;
}

/** The `field` of each entry of a 422's `errors`. */
export function errorFields(problem: Problem): string[] {
  return (problem.errors ?? []).map((error) => error.field);
}

/** Reads a 2xx JSON body, failing with the body's text when the status is not the expected one. */
export async function expectJson<T = Record<string, unknown>>(response: Response, status: number): Promise<T> {
  const text = await response.text();
  expect(response.status, text).toBe(status);
  expect(response.headers.get("content-type")).toMatch(/^application\/json/);
  return JSON.parse(text) as T;
}

/** Polls GET /v1/jobs/{id} until the job is finished (succeeded, failed or cancelled). */
export async function waitForJob(api: TestApi, auth: string, id: string, timeoutMs = 60_000): Promise<Job> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const job = (await (await get(api, auth, `/v1/jobs/${id}`)).json()) as Job;
    if (!["queued", "running"].includes(job.status)) return job;
    if (Date.now() > deadline) throw new Error(`job ${id} is still ${job.status} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
