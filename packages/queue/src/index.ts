export {
  checkRedisUrl,
  createRedisConnection,
  DEFAULT_REDIS_URL,
  DEFAULT_SENTINEL_PORT,
  hashTaggedPrefix,
  isCluster,
  parseRedisUrl,
  queuePrefixFor,
  redisUrlProblem,
  type RedisClient,
  type RedisConnectionOptions,
  type RedisTarget,
} from "./connection.ts";
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
export {
  DEFAULT_STALLED_TAKEOVER_MS,
  listWorkers,
  publishWorkerStatus,
  removeWorkerStatus,
  WORKER_STALE_MS,
  workerTimings,
  type WorkerStatus,
  type WorkerTimings,
} from "./workers.ts";
export { registerQueueGauge } from "./metrics.ts";
export { JobFinishedEvents, publishJobFinished, publishJobsFinished } from "./job-events.ts";
export {
  answerPredicts,
  claimStranded,
  ensurePredictGroup,
  leavePredictGroup,
  predictBacklogKey,
  predictStreamKey,
  PREDICT_GROUP,
  PredictReplies,
  readPredicts,
  submitPredicts,
  type ClaimOptions,
  type PredictMessage,
  type PredictReply,
  type ReceivedPredict,
} from "./predict-requests.ts";
