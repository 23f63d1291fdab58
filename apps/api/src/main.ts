import { ConfigError } from "@coalesce/contracts";
import pino from "pino";
import { loadApiEnv } from "./env.ts";
import { startApi } from "./server.ts";

const logger = pino({ name: "api", level: process.env.LOG_LEVEL ?? "info" });
// A crash is said as a JSON line like everything else, then the process exits as Node's default would.
process.on("uncaughtException", (error) => {
  logger.fatal({ err: error }, `api crashed: ${error.message}`);
  process.exit(1);
});
process.on("unhandledRejection", (reason) => {
  logger.fatal({ err: reason }, "api crashed: unhandled promise rejection");
  process.exit(1);
});

try {
  const env = loadApiEnv();
  logger.level = env.LOG_LEVEL;
  const api = await startApi(env, logger);
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      logger.info({ signal }, "shutting down");
      api.close().then(
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
  else logger.fatal({ err: error }, `api could not start: ${(error as Error).message}`);
  process.exit(1);
}
