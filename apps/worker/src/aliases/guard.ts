import { setInterval as every } from "node:timers/promises";
import { isTransientError } from "@coalesce/contracts";
import { guardRollbackAlias, readAliasFigures, readGuardedAliasPlans, summarizeFigures, type Database } from "@coalesce/db";
import type { Logger } from "pino";
import type { WorkerMetrics } from "../metrics.ts";
import type { Outages } from "../outages.ts";
import type { AliasFigures } from "./figures.ts";
import { judgeAlias } from "./judge.ts";

export type AliasGuardOptions = {
  db: Database;
  figures: AliasFigures;
  /** ALIAS_GUARD_INTERVAL_MS: how often counts are written and guards judged. */
  intervalMs: number;
  metrics: WorkerMetrics;
  outages: Outages;
  logger: Logger;
};

/**
 * One loop, every `intervalMs`: writes this worker's alias counts to Postgres, then judges every
 * guarded alias on every worker's counts and rolls back a candidate over a limit. Every worker runs
 * it; the rollback is made only if the alias is still at the revision judged, so two workers
 * judging together roll back once. Returns a stop that writes the last counts.
 */
export function startAliasGuard(options: AliasGuardOptions): () => Promise<void> {
  const controller = new AbortController();
  const loop = (async () => {
    try {
      for await (const _ of every(options.intervalMs, undefined, { signal: controller.signal })) await pass(options);
    } catch (error) {
      if ((error as Error).name !== "AbortError") throw error;
    }
  })();
  return async () => {
    controller.abort();
    await loop;
    await flush(options);
  };
}

async function pass(options: AliasGuardOptions): Promise<void> {
  if (!(await flush(options))) return;
  try {
    for (const plan of await readGuardedAliasPlans(options.db)) {
      const verdict = judgeAlias(plan, summarizeFigures(await readAliasFigures(options.db, plan.id, plan.revision)));
      if (!verdict) continue;
      const alias = await guardRollbackAlias(options.db, { aliasId: plan.id, revision: plan.revision, routing: verdict.routing, reason: verdict.reason });
      if (!alias) continue;
      options.metrics.aliasRollbacks.inc({ model: plan.modelName, alias: plan.name });
      options.logger.warn(
        { model: plan.modelName, alias: plan.name, revision: alias.revision, reason: verdict.reason, routing: verdict.routing },
        `guard rolled back ${plan.modelName}@${plan.name}: version ${verdict.reason.version}'s ${verdict.reason.figure} ${verdict.reason.value.toFixed(4)} crossed ${verdict.reason.limit}`,
      );
    }
    options.outages.ok("postgres");
  } catch (error) {
    if (isTransientError(error)) options.outages.failed("postgres", error);
    else options.logger.warn({ err: error }, "could not judge the guarded aliases; will try again");
  }
}

/** Writes the counts; false when Postgres could not take them (they are kept for the next pass). */
async function flush(options: AliasGuardOptions): Promise<boolean> {
  try {
    await options.figures.flush();
    return true;
  } catch (error) {
    if (isTransientError(error)) options.outages.failed("postgres", error);
    else options.logger.warn({ err: error }, "could not write the alias counts; will try again");
    return false;
  }
}
