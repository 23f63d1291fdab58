import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { irisInputs, useIrisSuite } from "../support/iris-suite.ts";
import { startTestWorker } from "../support/worker.ts";
import type { RunningWorker } from "../../apps/worker/src/worker.ts";

const suite = useIrisSuite("predict-smoke");
let worker: RunningWorker;
beforeAll(async () => {
  worker = await startTestWorker(suite.services);
});
afterAll(async () => {
  await worker?.close();
});

describe("predict smoke", () => {
  it("answers", async () => {
    const rows = irisInputs(suite, 3);
    const t0 = performance.now();
    const response = await suite.api.app.request("/v1/models/iris/predict", {
      method: "POST",
      headers: { Authorization: suite.auth, "Content-Type": "application/json" },
      body: JSON.stringify({ inputs: rows }),
    });
    const body = await response.json();
    console.log(response.status, response.headers.get("coalesce-cache"), performance.now() - t0, JSON.stringify(body));
    expect(response.status).toBe(200);
    const again = await suite.api.app.request("/v1/models/iris/predict", {
      method: "POST",
      headers: { Authorization: suite.auth, "Content-Type": "application/json" },
      body: JSON.stringify({ inputs: rows }),
    });
    console.log(again.status, again.headers.get("coalesce-cache"), JSON.stringify(await again.json()));
  });
});
