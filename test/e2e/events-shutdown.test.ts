// An event stream lasts as long as its job, which may sit queued for hours. When an API process shuts
// down (a rolling update, a scale-in), its open streams must end at once rather than hold the drain
// until the orchestrator's SIGKILL: the client reconnects and another replica goes on.
import type { Job } from "@coalesce/contracts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { API_MAIN, freePort, startProcess, stopProcess, waitUntilReady, type ServiceProcess } from "../../scripts/processes.ts";
import { readModel } from "../support/fixtures.ts";
import { createTestServices, type TestServices } from "../support/services.ts";

const KEY = "csk_events_shutdown_0123456789";
let services: TestServices;
let api: ServiceProcess;
let baseUrl: string;
const headers = { Authorization: `Bearer ${KEY}` };

beforeAll(async () => {
  services = await createTestServices();
  const port = await freePort();
  baseUrl = `http://127.0.0.1:${port}`;
  // No worker: the job stays queued, so its stream would never end by itself.
  api = startProcess("api", API_MAIN, { ...services.env, PORT: String(port), BOOTSTRAP_API_KEY: KEY }, "ignore");
  await waitUntilReady(baseUrl, [api]);
});

afterAll(async () => {
  await stopProcess(api);
  await services?.cleanup();
});

describe("GET /v1/jobs/{id}/events when the API shuts down", () => {
  it("ends the open stream without an end event, and the process exits cleanly within seconds", async () => {
    const upload = await fetch(`${baseUrl}/v1/models/iris/versions`, { method: "POST", headers: { ...headers, "Content-Type": "application/octet-stream" }, body: await readModel("iris") });
    expect(upload.status).toBe(201);
    const created = await fetch(`${baseUrl}/v1/jobs`, {
      method: "POST",
      headers: { ...headers, "Content-Type": "application/json" },
      body: JSON.stringify({ model: "iris", inputs: [{ features: [5.1, 3.5, 1.4, 0.2] }] }),
    });
    const job = (await created.json()) as Job;
    const stream = await fetch(`${baseUrl}/v1/jobs/${job.id}/events`, { headers });
    expect(stream.headers.get("content-type")).toContain("text/event-stream");
    const reader = (stream.body as ReadableStream<Uint8Array>).getReader();
    let text = new TextDecoder().decode((await reader.read()).value);
    expect(text).toContain("event: progress");

    api.child.kill("SIGTERM");
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    expect(text).not.toContain("event: end");
    // Without the shutdown signal the drain would wait for the stream, here for ever (the test times out).
    expect(await api.exited).toBe(0);
  });
});
