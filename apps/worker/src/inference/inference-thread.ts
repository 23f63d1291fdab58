// The inference thread: one onnxruntime session, runs taken one message at a time. onnxruntime-node
// runs a session synchronously on the calling thread, so a batch run here blocks this thread instead
// of the worker's event loop, which meanwhile keeps fetching chunks and writing results.
import { parentPort, workerData } from "node:worker_threads";
// Only the session module: the package index would load zod and the contracts into this thread too.
import { loadSessionWithFallback } from "@coalesce/models/session";
import { Tensor } from "onnxruntime-node";
import type { ThreadReply, ThreadRequest, ThreadSetup, WireTensors } from "./thread-session.ts";

const port = parentPort;
if (!port) throw new Error("inference-thread.ts runs as a worker thread (see ThreadSession)");
const setup = workerData as ThreadSetup;

function post(reply: ThreadReply): void {
  const transfer: ArrayBuffer[] = [];
  if ("outputs" in reply) {
    for (const tensor of Object.values(reply.outputs)) {
      if (ArrayBuffer.isView(tensor.data) && tensor.data.buffer instanceof ArrayBuffer) transfer.push(tensor.data.buffer);
    }
  }
  port!.postMessage(reply, transfer);
}

try {
  const { session, provider, skipped } = await loadSessionWithFallback(setup.model, setup.providers, setup.options);
  // One request at a time, in order: a release waits for the runs posted before it.
  let last: Promise<unknown> = Promise.resolve();
  port.on("message", (request: ThreadRequest) => {
    last = last.then(() => handle(session, request));
  });
  post({ type: "loaded", provider, skipped });
} catch (error) {
  post({ type: "load-failed", error: (error as Error).message });
  port.close();
}

async function handle(session: Awaited<ReturnType<typeof loadSessionWithFallback>>["session"], request: ThreadRequest): Promise<void> {
  if (request.type === "release") {
    await session.release().catch(() => {});
    port!.close();
    return;
  }
  try {
    const feeds: Record<string, Tensor> = {};
    for (const [name, wire] of Object.entries(request.feeds)) feeds[name] = new Tensor(wire.type, wire.data, wire.dims);
    const results = await session.run(feeds);
    const outputs: WireTensors = {};
    for (const [name, tensor] of Object.entries(results)) outputs[name] = { type: tensor.type, data: tensor.data, dims: tensor.dims };
    post({ id: request.id, outputs });
  } catch (error) {
    post({ id: request.id, error: error instanceof Error ? error.message : String(error) });
  }
}
