import type { Alias, Job, JobResults } from "@coalesce/contracts";
import { expect } from "vitest";
import { buildOnnxModel } from "../../packages/models/src/tiny-onnx.ts";
import { expectJson, get, requestJson, uploadModel } from "./http.ts";
import type { TestApi } from "./services.ts";

/**
 * `y = x + offset` over float32[batch, 4]: versions of one signature that answer differently, so
 * every result says which version scored it (`y - x`).
 */
export function buildOffsetModel(offset: number): Uint8Array {
  return buildOnnxModel({
    inputs: [{ name: "x", type: "float32", shape: ["batch", 4] }],
    outputs: [{ name: "y", type: "float32", shape: ["batch", 4] }],
    nodes: [{ opType: "Add", inputs: ["x", "offset"], outputs: ["y"] }],
    initializers: [{ name: "offset", dims: [4], data: new Float32Array(4).fill(offset) }],
  });
}

const SIGNATURE = {
  inputs: [{ name: "x", type: "float32" as const, shape: ["batch", 4] }],
  outputs: [{ name: "y", type: "float32" as const, shape: ["batch", 4] }],
};

/** `y = x` over float32[batch, 4]. */
export const identityModel = buildOnnxModel({ ...SIGNATURE, nodes: [{ opType: "Identity", inputs: ["x"], outputs: ["y"] }] });

/** `y = x` again, through two nodes: other bytes (another version), the same answers. */
export const identityAgainModel = buildOnnxModel({
  ...SIGNATURE,
  nodes: [
    { opType: "Identity", inputs: ["x"], outputs: ["t"] },
    { opType: "Identity", inputs: ["t"], outputs: ["y"] },
  ],
});

/** `y = -x`: the same signature, answers whose argmax never agrees with `y = x` on rows with a clear largest value. */
export const negateModel = buildOnnxModel({ ...SIGNATURE, nodes: [{ opType: "Neg", inputs: ["x"], outputs: ["y"] }] });

/** The offset each version of a model built by `registerOffsetVersions` adds: version N adds N * 100. */
export const OFFSET_PER_VERSION = 100;

/** Registers `count` offset models as versions 1..count of `name` (version N adds N * 100). */
export async function registerOffsetVersions(api: TestApi, auth: string, name: string, count: number): Promise<void> {
  for (let version = 1; version <= count; version++) {
    const response = await uploadModel(api, auth, name, buildOffsetModel(version * OFFSET_PER_VERSION));
    expect(response.status, await response.clone().text()).toBe(201);
  }
}

/** The version of an offset model that scored `y` for `x` (see registerOffsetVersions). */
export function offsetVersionOf(x: readonly number[], y: readonly number[]): number {
  return Math.round(((y[0] as number) - (x[0] as number)) / OFFSET_PER_VERSION);
}

/** `count` rows for an offset model, `seed` apart so no two tests share a cached answer. */
export function offsetRows(count: number, seed = 0): { x: number[] }[] {
  return Array.from({ length: count }, (_, i) => ({ x: [seed + i / 8, 1, 2, 3] }));
}

export function putAlias(api: TestApi, auth: string, model: string, alias: string, body: unknown): Promise<Response> {
  return requestJson(api, auth, "PUT", `/v1/models/${model}/aliases/${alias}`, body);
}

/** PUT an alias that must succeed (201 or 200); returns it. */
export async function setAlias(api: TestApi, auth: string, model: string, alias: string, body: unknown): Promise<Alias> {
  const response = await putAlias(api, auth, model, alias, body);
  expect([200, 201], await response.clone().text()).toContain(response.status);
  return (await response.json()) as Alias;
}

export function rollbackAlias(api: TestApi, auth: string, model: string, alias: string): Promise<Response> {
  return requestJson(api, auth, "POST", `/v1/models/${model}/aliases/${alias}/rollback`);
}

/** Every result row of a finished job (all pages). */
export async function readAllResults(api: TestApi, auth: string, job: Pick<Job, "id">): Promise<JobResults["data"]> {
  const rows: JobResults["data"] = [];
  let cursor: string | null = null;
  do {
    const page: JobResults = await expectJson<JobResults>(
      await get(api, auth, `/v1/jobs/${job.id}/results?limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`),
      200,
    );
    rows.push(...page.data);
    cursor = page.next_cursor;
  } while (cursor);
  return rows;
}
