import { setTimeout as sleep } from "node:timers/promises";
import { describeFailure, isTransientError, type PredictRowResult } from "@coalesce/contracts";
import { PackedRows } from "@coalesce/models";
import { GroupCommit } from "@coalesce/db";
import {
  answerPredicts,
  claimStranded,
  ensurePredictGroup,
  leavePredictGroup,
  listWorkers,
  readPredicts,
  type PredictReply,
  type ReceivedPredict,
} from "@coalesce/queue";
import type { RedisClient } from "@coalesce/queue";
import type { Logger } from "pino";
import { submitRows, type RowBatchers } from "../batch/rows.ts";
import type { AliasWatch } from "../aliases/watch.ts";
import type { ModelCache } from "../inference/model-cache.ts";
import type { WorkerMetrics } from "../metrics.ts";
import type { Outages } from "../outages.ts";
import { inferenceError } from "../score-chunk.ts";
import { within } from "../within.ts";

/** Most requests one read takes from the stream. */
const READ_COUNT = 256;

/** A dead consumer holding nothing is forgotten after this many claim intervals idle (a full STALLED_TAKEOVER_MS). */
const FORGET_AFTER_INTERVALS = 4;

/** Longest shutdown waits to leave the consumer group, or for a claim pass under way. */
const LEAVE_TIMEOUT_MS = 1_000;

/** Most requests answered (and acknowledged) in one round trip; more wait for the next. */
const MAX_ANSWERS_TOGETHER = 512;

/** How long one read waits for a request before it looks again (and sees a stop). */
const READ_BLOCK_MS = 1_000;

/**
 * A request delivered this often (its workers died each time) is answered with a failure instead
 * of being run once more: its rows are what is suspected of killing them.
 */
const MAX_DELIVERIES = 3;

export type PredictServerOptions = {
  /** The worker's connection: answers and acknowledgements. Reads block a connection of their own. */
  redis: RedisClient;
  prefix: string;
  /** This worker's id: its consumer name, as its heartbeat names it. */
  consumer: string;
  models: ModelCache;
  batchers: RowBatchers;
  /** Most predict rows held at once (PREDICT_ROWS_IN_FLIGHT); the rest wait in the stream for any worker. */
  rowsInFlight: number;
  /** How often requests held by dead workers are looked for (a quarter of STALLED_TAKEOVER_MS). */
  claimIntervalMs: number;
  metrics: WorkerMetrics;
  outages: Outages;
  logger: Logger;
  /** Counts and shadows the rows of requests that came through an alias (off their path). */
  watch?: AliasWatch | undefined;
};

export type PredictServer = { close(graceMs: number): Promise<void> };

/** A request done with: its answer (null when it is only acknowledged, dropped past its deadline). */
type Answer = { request: ReceivedPredict; reply: PredictReply | null };

/** What serving one request needs: the options, and where answers are sent, together. */
type Serving = PredictServerOptions & { answers: GroupCommit<Answer, undefined> };

/**
 * Serves predict requests: reads them from the stream (up to PREDICT_ROWS_IN_FLIGHT rows at a
 * time), hands their rows to the model's batchers in the interactive lane, where they share runs
 * with other requests' rows and with small jobs' rows, and answers on the requesting API's channel.
 * A request past its deadline is dropped unrun (its caller has had a 504). Requests held by a
 * worker that died are claimed from it once its heartbeat is stale, and run here.
 */
export async function startPredictServer(options: PredictServerOptions): Promise<PredictServer> {
  const { redis, prefix, consumer, logger, outages } = options;
  const reader = redis.duplicate();
  await ensurePredictGroup(redis, prefix);
  // Requests answered while an answer is in flight go together: one PUBLISH per API, one acknowledgement.
  const serving: Serving = {
    ...options,
    answers: new GroupCommit(async (answers) => {
      await answerPredicts(redis, prefix, answers);
      return answers.map(() => undefined);
    }, MAX_ANSWERS_TOGETHER),
  };
  let closing = false;
  let heldRows = 0;
  /** The requests in hand by stream entry id (so the claim pass can tell this worker's lost entries from them). */
  const inHand = new Map<string, Promise<void>>();
  let roomWaiter: (() => void) | undefined;

  const take = (request: ReceivedPredict) => {
    // Claimed back while still in hand (it cannot be: the claim pass skips those), it is run once.
    if (inHand.has(request.entryId)) return;
    heldRows += request.rowCount;
    options.metrics.predictWait.observe(Math.max(0, Date.now() - request.submittedAt) / 1000);
    const work = serve(serving, request).finally(() => {
      heldRows -= request.rowCount;
      inHand.delete(request.entryId);
      roomWaiter?.();
    });
    inHand.set(request.entryId, work);
  };

  const readLoop = (async () => {
    while (!closing) {
      if (heldRows >= options.rowsInFlight) {
        await new Promise<void>((resolve) => (roomWaiter = resolve));
        roomWaiter = undefined;
        continue;
      }
      try {
        const requests = await readPredicts(reader, prefix, consumer, READ_COUNT, READ_BLOCK_MS);
        outages.ok("redis");
        for (const request of requests) take(request);
        // The requests just taken reach their batchers (and a lone one its onnxruntime run) before
        // the next read is written to Redis: a socket write is ~0.2 ms on these machines.
        if (requests.length > 0) await new Promise((resolve) => setImmediate(resolve));
      } catch (error) {
        if (closing) return;
        if (isTransientError(error)) outages.failed("redis", error);
        else logger.warn({ err: error }, "could not read predict requests; trying again");
        await sleep(outages.isDown("redis") ? outages.retryDelayMs("redis") : 1_000);
      }
    }
  })();

  // Requests whose worker died, claimed once its heartbeat is stale (it is then off /readyz too),
  // and this worker's own pending entries that it lost (see claimStranded).
  let claiming: Promise<void> | undefined;
  const claimPass = async () => {
    const live = new Set((await listWorkers(redis, prefix)).map((worker) => worker.id));
    const claimed = await claimStranded(redis, prefix, consumer, {
      live,
      held: inHand,
      minIdleMs: options.claimIntervalMs,
      forgetIdleMs: options.claimIntervalMs * FORGET_AFTER_INTERVALS,
    });
    if (claimed.length > 0) logger.warn({ requests: claimed.length }, "took over predict requests that no live worker was running (their worker stopped, or a read or answer was lost)");
    for (const request of claimed) {
      if (request.deliveries > MAX_DELIVERIES) {
        logger.error({ requestId: request.id, deliveries: request.deliveries }, "predict request failed: every worker that took it died");
        await answer(serving, request, { id: request.id, failure: { code: "failed", message: `the request was taken by ${request.deliveries} workers and each died before answering (a crash in the model?)` } });
        continue;
      }
      take(request);
    }
  };
  const claimTimer = setInterval(() => {
    if (claiming || closing) return;
    claiming = claimPass()
      .catch((error: unknown) => {
        if (isTransientError(error)) outages.failed("redis", error);
        else logger.warn({ err: error }, "could not look for predict requests held by stopped workers");
      })
      .finally(() => (claiming = undefined));
  }, options.claimIntervalMs);

  return {
    async close(graceMs) {
      closing = true;
      clearInterval(claimTimer);
      // The blocking read is abandoned; requests it would have taken stay in the stream for other workers.
      reader.disconnect();
      roomWaiter?.();
      await readLoop;
      // A claim pass under way may still take requests: they are waited for with the rest (but not
      // for longer than LEAVE_TIMEOUT_MS while Redis, which the pass waits on, is away).
      if (claiming) await within(claiming, LEAVE_TIMEOUT_MS);
      if (!(await within(Promise.all(inHand.values()), graceMs))) {
        logger.warn({ requests: inHand.size }, "predict requests in hand did not finish in time; another worker claims them");
        return;
      }
      // Not at the cost of the rest of shutdown while Redis is away (this connection would wait for
      // it): a consumer left behind holding nothing is forgotten by the next worker that looks.
      if (outages.isDown("redis")) return;
      await within(leavePredictGroup(redis, prefix, consumer), LEAVE_TIMEOUT_MS);
    },
  };
}

/** Runs one request's rows and answers it; never rejects. */
async function serve(serving: Serving, request: ReceivedPredict): Promise<void> {
  if (Date.now() > request.deadline) {
    // Its caller has been answered (504) already; running it would only take a batch slot.
    serving.metrics.predictDropped.inc();
    await answer(serving, request, null);
    return;
  }
  await answer(serving, request, await run(serving, request));
}

async function run(options: PredictServerOptions, request: ReceivedPredict): Promise<PredictReply> {
  const { id } = request;
  let model;
  try {
    model = await options.models.get(request.modelVersionId);
  } catch (error) {
    const transient = isTransientError(error);
    if (!transient) options.logger.error({ err: error, modelVersionId: request.modelVersionId }, "could not load a model for a predict request");
    return { id, failure: { code: transient ? "unavailable" : "failed", message: `the model could not be loaded (${describeFailure(error)})` } };
  }
  let rows: PackedRows;
  try {
    rows = PackedRows.decode(request.rows, model.version.inputs);
    if (rows.rowCount !== request.rowCount) throw new Error(`${rows.rowCount} rows where the request says ${request.rowCount}`);
  } catch (error) {
    return { id, failure: { code: "failed", message: `the request's rows cannot be read (${(error as Error).message})` } };
  }
  const results = new Array<PredictRowResult>(rows.rowCount);
  const runRows = new Array<number>(rows.rowCount).fill(0);
  let unavailable: Error | undefined;
  const all = Array.from({ length: rows.rowCount }, (_, index) => index);
  const outcomes = await submitRows(options.batchers, request.modelVersionId, rows, all, "interactive");
  outcomes.forEach((outcome, index) => {
    if (outcome.ok) {
      results[index] = { outputs: outcome.value.outputs };
      runRows[index] = outcome.value.runRows;
      return;
    }
    if (isTransientError(outcome.error)) unavailable ??= outcome.error;
    results[index] = { error: inferenceError(outcome.error) };
  });
  if (unavailable) return { id, failure: { code: "unavailable", message: `the model could not run (${describeFailure(unavailable)})` } };
  if (request.alias) options.watch?.observe({ alias: request.alias, modelVersionId: request.modelVersionId, version: model.version.version, rows, indexes: all, outcomes });
  const labels = { model: model.version.modelName, version: String(model.version.version), provider: model.provider };
  const failed = results.filter((result) => "error" in result).length;
  options.metrics.predictRows.inc({ ...labels, outcome: "succeeded" }, results.length - failed);
  if (failed > 0) options.metrics.predictRows.inc({ ...labels, outcome: "failed" }, failed);
  return { id, results, runRows };
}

/**
 * Sends the answer, then acknowledges the request; an outage of Redis is reported, not thrown (a
 * request left unacknowledged is pending under this worker: claimed by another only if this one
 * dies, and dropped then, past its deadline).
 */
async function answer(serving: Serving, request: ReceivedPredict, reply: PredictReply | null): Promise<void> {
  try {
    await serving.answers.add({ request, reply });
  } catch (error) {
    report(serving, error, "could not answer a predict request");
  }
}

function report(options: PredictServerOptions, error: unknown, what: string): void {
  if (isTransientError(error)) options.outages.failed("redis", error);
  else options.logger.warn({ err: error }, what);
}
