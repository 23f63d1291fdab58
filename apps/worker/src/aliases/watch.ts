import { isTransientError, type TensorRow } from "@coalesce/contracts";
import type { AliasPlan } from "@coalesce/db";
import type { PackedRows } from "@coalesce/models";
import type { Logger } from "pino";
import type { ItemResult } from "../batch/batcher.ts";
import { submitRows, type RowBatchers, type RowOutcome } from "../batch/rows.ts";
import type { ModelCache } from "../inference/model-cache.ts";
import type { WorkerMetrics } from "../metrics.ts";
import { compareOutputs } from "./compare-outputs.ts";
import type { AliasFigures, FigureLabels } from "./figures.ts";
import type { AliasPlans } from "./plans.ts";

/** Rows a version just scored for a caller, and the alias (at the revision) that routed them there. */
export type ScoredRows = {
  alias: { id: string; revision: number };
  modelVersionId: string;
  version: number;
  rows: PackedRows;
  /** The rows of `rows` that ran, and each one's outcome, in the same order. */
  indexes: readonly number[];
  outcomes: readonly ItemResult<RowOutcome>[];
};

export type AliasWatchOptions = {
  plans: AliasPlans;
  figures: AliasFigures;
  batchers: RowBatchers;
  models: ModelCache;
  metrics: WorkerMetrics;
  /** Most rows scored beside their callers' at once (SHADOW_ROWS_IN_FLIGHT); past it samples are skipped, and counted. */
  maxRowsInFlight: number;
  logger: Logger;
};

/**
 * Watches the rows that came through an alias, after their caller has its answer: counts them per
 * version (rows, row errors, run time), scores a sample on the alias's shadow version, and, with a
 * guarded canary, a sample of the candidate's rows on the stable version, comparing the answers.
 * None of it is on the caller's path: `observe` returns at once, the extra rows run in the batch
 * lane behind every caller's, their outputs are never returned, and their failures fail nothing
 * (an infrastructure failure is not even counted against the version).
 */
export class AliasWatch {
  readonly #options: AliasWatchOptions;
  readonly #inFlight = new Set<Promise<void>>();
  #rowsInFlight = 0;
  #closing = false;

  constructor(options: AliasWatchOptions) {
    this.#options = options;
  }

  observe(scored: ScoredRows): void {
    if (this.#closing) return;
    const work = this.#observe(scored)
      .catch((error: unknown) => {
        // A lost sample is only a lost sample: said once per failure, never raised.
        if (!isTransientError(error)) this.#options.logger.warn({ err: error, aliasId: scored.alias.id }, "could not watch an alias's rows");
      })
      .finally(() => this.#inFlight.delete(work));
    this.#inFlight.add(work);
  }

  /** Stops taking rows and waits for the samples in flight (they finish in the batch lane), up to the caller's bound. */
  async close(): Promise<void> {
    this.#closing = true;
    await Promise.allSettled([...this.#inFlight]);
  }

  async #observe(scored: ScoredRows): Promise<void> {
    const plan = await this.#options.plans.get(scored.alias.id);
    const labels: FigureLabels = { model: plan?.modelName ?? "", alias: plan?.name ?? scored.alias.id };
    let rows = 0;
    let errors = 0;
    let runMs = 0;
    for (const outcome of scored.outcomes) {
      if (outcome.ok) {
        rows++;
        runMs += outcome.value.runMs;
      } else if (!isTransientError(outcome.error)) {
        rows++;
        errors++;
      }
    }
    this.#options.figures.addStat({ aliasId: scored.alias.id, revision: scored.alias.revision, version: scored.version, role: "route", rows, errors, runMs }, labels);
    // A plan changed since the rows were routed (a rollback, a promote) is not mixed with them.
    if (!plan || plan.revision !== scored.alias.revision) return;
    const samples: Promise<void>[] = [];
    if (plan.shadow) samples.push(this.#scoreBeside(plan, scored, plan.shadow, plan.shadow.sample, "shadow", labels));
    const stable = plan.routes[0];
    const guard = plan.guard;
    if (guard?.min_agreement !== undefined && stable && plan.routes.length > 1 && stable.version !== scored.version) {
      samples.push(this.#scoreBeside(plan, scored, stable, guard.compare_sample, "check", labels));
    }
    await Promise.all(samples);
  }

  /**
   * Scores a `sample` of the rows on another version and compares the answers. `shadow`: the
   * alias's shadow, whose own rows and errors are counted too; `check`: the stable version scoring a
   * canary candidate's rows, counted only as a comparison.
   */
  async #scoreBeside(
    plan: AliasPlan,
    scored: ScoredRows,
    other: { version: number; versionId: string },
    sample: number,
    kind: "shadow" | "check",
    labels: FigureLabels,
  ): Promise<void> {
    if (!other.versionId) return;
    const positions: number[] = [];
    for (let i = 0; i < scored.indexes.length; i++) if (sample >= 1 || Math.random() < sample) positions.push(i);
    if (positions.length === 0) return;
    if (this.#rowsInFlight + positions.length > this.#options.maxRowsInFlight) {
      this.#options.metrics.shadowSkipped.inc({ ...labels, kind }, positions.length);
      return;
    }
    this.#rowsInFlight += positions.length;
    try {
      const model = await this.#options.models.get(other.versionId);
      const outcomes = await submitRows(this.#options.batchers, other.versionId, scored.rows, positions.map((i) => scored.indexes[i]!), "batch");
      let rows = 0;
      let errors = 0;
      let runMs = 0;
      outcomes.forEach((outcome, j) => {
        if (!outcome.ok) {
          if (isTransientError(outcome.error)) return;
          rows++;
          errors++;
          return;
        }
        rows++;
        runMs += outcome.value.runMs;
        const primary = scored.outcomes[positions[j]!];
        if (!primary?.ok) return;
        const compared = compareOutputs(primary.value.outputs as TensorRow, outcome.value.outputs, model.version.outputs);
        this.#options.figures.addComparison(
          { aliasId: plan.id, revision: plan.revision, primaryVersion: scored.version, shadowVersion: other.version },
          compared,
          labels,
        );
      });
      if (kind === "shadow") this.#options.figures.addStat({ aliasId: plan.id, revision: plan.revision, version: other.version, role: "shadow", rows, errors, runMs }, labels);
    } catch (error) {
      // The shadow version could not even be loaded: every sampled row counts as its error (a
      // version whose file is broken must trip the guard), unless it was only an outage.
      if (isTransientError(error)) throw error;
      if (kind === "shadow") {
        this.#options.figures.addStat({ aliasId: plan.id, revision: plan.revision, version: other.version, role: "shadow", rows: positions.length, errors: positions.length, runMs: 0 }, labels);
      }
      throw error;
    } finally {
      this.#rowsInFlight -= positions.length;
    }
  }
}
