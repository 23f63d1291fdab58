export { createRedisConnection, DEFAULT_REDIS_URL } from "./connection.ts";
export {
  createPredictQueue,
  DEFAULT_QUEUE_PREFIX,
  chunkPriority,
  enqueueChunks,
  unqueueChunks,
  PREDICT_QUEUE,
  type PredictQueue,
  type QueueSettings,
} from "./predict-queue.ts";
export { listWorkers, publishWorkerStatus, removeWorkerStatus, WORKER_STALE_MS, type WorkerStatus } from "./workers.ts";
export { registerQueueGauge } from "./metrics.ts";
export { JobFinishedEvents, publishJobFinished, publishJobsFinished } from "./job-events.ts";
