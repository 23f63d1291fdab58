import type { TensorRow, TensorSpec } from "@coalesce/contracts";
import { buildBatch, loadSessionWithFallback, splitOutputs, type OrtInferenceSession } from "@coalesce/models";
import { buildRandomMlp } from "@coalesce/models/tiny-onnx";
import * as ort from "onnxruntime-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DynamicBatcher } from "../batch/batcher.ts";
import { ThreadSession, type ModelSession } from "./thread-session.ts";

const MODEL = buildRandomMlp([4, 16, 3]);
const INPUTS: TensorSpec[] = [{ name: "x", type: "float32", shape: ["batch", 4] }];
const OUTPUTS: TensorSpec[] = [{ name: "y", type: "float32", shape: ["batch", 3] }];
const ROWS: TensorRow[] = Array.from({ length: 20 }, (_, i) => ({ x: [i, -i / 2, i / 3, 1] }));

async function predict(session: ModelSession, rows: TensorRow[]): Promise<TensorRow[]> {
  return splitOutputs(await session.run(buildBatch(rows, INPUTS)), OUTPUTS, rows.length);
}

describe("ThreadSession", () => {
  let inProcess: OrtInferenceSession;
  let threaded: ThreadSession;

  beforeAll(async () => {
    inProcess = (await loadSessionWithFallback(MODEL, ["cpu"])).session;
    threaded = (await ThreadSession.open({ model: MODEL, providers: ["cpu"], options: {} })).session;
  });

  afterAll(async () => {
    await threaded.release();
    await inProcess.release();
  });

  it("says which provider it opened the model on", async () => {
    const opened = await ThreadSession.open({ model: MODEL, providers: ["cpu"], options: { intraOpNumThreads: 1, spinning: false } });
    expect(opened.provider).toBe("cpu");
    expect(opened.skipped).toEqual([]);
    await opened.session.release();
  });

  it("gives the same outputs as the session in process, batched or row by row", async () => {
    const expected = await predict(inProcess, ROWS);
    expect(await predict(threaded, ROWS)).toEqual(expected);
    const oneByOne = await Promise.all(ROWS.map((row) => predict(threaded, [row])));
    expect(oneByOne.flat()).toEqual(expected);
  });

  it("fails a bad run with onnxruntime's message and keeps serving, so a batcher fails only the bad row", async () => {
    // Stacks rows as they come, so a row of the wrong width reaches onnxruntime once bisected alone.
    const runStacked = async (rows: TensorRow[]) => {
      const width = (rows[0]?.x as number[]).length;
      const x = new ort.Tensor("float32", Float32Array.from(rows.flatMap((row) => row.x as number[])), [rows.length, width]);
      return splitOutputs(await threaded.run({ x }), OUTPUTS, rows.length);
    };
    await expect(runStacked([{ x: [1, 2, 3, 4, 5] }])).rejects.toThrow(/dimension/i);

    const batcher = new DynamicBatcher<TensorRow, TensorRow>({ maxRows: 8, maxDelayMs: 1_000, run: runStacked });
    const results = await batcher.submit([...ROWS.slice(0, 3), { x: [1, 2, 3, 4, 5] }, ...ROWS.slice(3, 7)]);
    await batcher.close();
    expect(results.map((result) => result.ok)).toEqual([true, true, true, false, true, true, true, true]);
    expect(results[3]).toMatchObject({ ok: false, error: { message: expect.stringMatching(/dimension/i) } });
    expect(results.flatMap((result) => (result.ok ? [result.value] : []))).toEqual(await predict(inProcess, ROWS.slice(0, 7)));
  });

  it("finishes the runs already posted before it releases, and refuses runs after", async () => {
    const { session } = await ThreadSession.open({ model: MODEL, providers: ["cpu"], options: {} });
    const runs = ROWS.map((row) => predict(session, [row]));
    await session.release();
    expect((await Promise.all(runs)).flat()).toEqual(await predict(inProcess, ROWS));
    await expect(predict(session, ROWS)).rejects.toThrow(/exited/);
  });

  it("refuses to open a model no provider can load", async () => {
    await expect(ThreadSession.open({ model: new Uint8Array([1, 2, 3]), providers: ["cpu"], options: {} })).rejects.toThrow(/no execution provider/);
  });
});
