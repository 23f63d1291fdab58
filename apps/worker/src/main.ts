import { ConfigError } from "@coalesce/contracts";
import pino from "pino";
import { loadWorkerEnv } from "./env.ts";
import { startWorker } from "./worker.ts";

const logger = pino({ name: "worker", level: process.env.LOG_LEVEL ?? "info" });

try {
  const env = loadWorkerEnv();
  logger.level = env.LOG_LEVEL;
  const worker = await startWorker(env, logger);
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      // Finish the chunks (and the batch) in hand, then exit; BullMQ hands anything else to another worker.
      logger.info({ signal }, "finishing work in hand, then exiting");
      // A shutdown stuck on a dependency that does not answer still ends: what this process held
      // is handed to another worker by BullMQ's stalled check.
      setTimeout(() => {
        logger.error({ signal }, "shutdown did not finish in time; exiting anyway");
        process.exit(1);
      }, env.SHUTDOWN_GRACE_MS + 15_000).unref();
      worker.close().then(
        () => process.exit(0),
        (error: unknown) => {
          logger.error({ err: error }, "shutdown failed");
          process.exit(1);
        },
      );
    });
  }
} catch (error) {
  if (error instanceof ConfigError) logger.fatal(error.message);
  else logger.fatal({ err: error }, `worker could not start: ${(error as Error).message}`);
  process.exit(1);
}
