import type { TensorRow, TensorSpec } from "@coalesce/contracts";
import { buildBatch, loadSessionWithFallback, splitOutputs, type OrtInferenceSession } from "@coalesce/models";
import { buildRandomMlp } from "@coalesce/models/tiny-onnx";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SessionPool } from "./session-pool.ts";
import { ThreadSession } from "./thread-session.ts";

const MODEL = buildRandomMlp([4, 16, 3]);
const INPUTS: TensorSpec[] = [{ name: "x", type: "float32", shape: ["batch", 4] }];
const OUTPUTS: TensorSpec[] = [{ name: "y", type: "float32", shape: ["batch", 3] }];
const ROWS: TensorRow[] = Array.from({ length: 12 }, (_, i) => ({ x: [i, -i / 2, i / 3, 1] }));

describe("SessionPool", () => {
  let inProcess: OrtInferenceSession;
  let instances: ThreadSession[];
  let pool: SessionPool;

  beforeAll(async () => {
    inProcess = (await loadSessionWithFallback(MODEL, ["cpu"])).session;
    instances = await Promise.all([0, 1].map(async () => (await ThreadSession.open({ model: MODEL, providers: ["cpu"], options: { intraOpNumThreads: 1 } })).session));
    pool = new SessionPool(instances);
  });

  afterAll(async () => {
    await pool.release();
    await inProcess.release();
  });

  it("spreads runs over its instances, the least busy first, with the outputs of one session", async () => {
    const runs = ROWS.map((row) => pool.run(buildBatch([row], INPUTS)));
    // Posted together, the twelve runs went six to each thread.
    expect(instances.map((instance) => instance.runsInFlight)).toEqual([6, 6]);
    const outputs = (await Promise.all(runs)).flatMap((result) => splitOutputs(result, OUTPUTS, 1));
    expect(outputs).toEqual(splitOutputs(await inProcess.run(buildBatch(ROWS, INPUTS)), OUTPUTS, ROWS.length));
    expect(instances.map((instance) => instance.runsInFlight)).toEqual([0, 0]);
  });

  it("releases every instance, after the runs already given to each", async () => {
    const own = await Promise.all([0, 1, 2].map(async () => (await ThreadSession.open({ model: MODEL, providers: ["cpu"], options: {} })).session));
    const ownPool = new SessionPool(own);
    const runs = ROWS.map((row) => ownPool.run(buildBatch([row], INPUTS)));
    await ownPool.release();
    expect(await Promise.all(runs)).toHaveLength(ROWS.length);
    await expect(own[2]!.run(buildBatch(ROWS, INPUTS))).rejects.toThrow(/exited/);
  });

  it("needs at least one instance", () => {
    expect(() => new SessionPool([])).toThrow(RangeError);
  });
});
