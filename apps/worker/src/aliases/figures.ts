import { addAliasFigures, type AliasComparisonDelta, type AliasStatDelta, type Database } from "@coalesce/db";
import type { WorkerMetrics } from "../metrics.ts";
import type { OutputComparison } from "./compare-outputs.ts";

/** What a figure is about, for its metric labels: the model and the alias. */
export type FigureLabels = { model: string; alias: string };

/**
 * Counts what the worker saw of each alias's versions (rows, row errors, run time; shadow
 * comparisons), as Prometheus metrics at once and into Postgres on each flush, where the guard and
 * GET .../comparison read every worker's counts together. A flush that fails keeps its counts for
 * the next one.
 */
export class AliasFigures {
  readonly #db: Database;
  readonly #metrics: WorkerMetrics;
  #stats = new Map<string, AliasStatDelta>();
  #comparisons = new Map<string, AliasComparisonDelta>();

  constructor(db: Database, metrics: WorkerMetrics) {
    this.#db = db;
    this.#metrics = metrics;
  }

  addStat(delta: AliasStatDelta, labels: FigureLabels): void {
    if (delta.rows === 0) return;
    const key = `${delta.aliasId}|${delta.revision}|${delta.version}|${delta.role}`;
    const known = this.#stats.get(key);
    if (known) {
      known.rows += delta.rows;
      known.errors += delta.errors;
      known.runMs += delta.runMs;
    } else this.#stats.set(key, { ...delta });
    const metric = { ...labels, version: String(delta.version), role: delta.role };
    if (delta.rows > delta.errors) this.#metrics.aliasRows.inc({ ...metric, outcome: "succeeded" }, delta.rows - delta.errors);
    if (delta.errors > 0) this.#metrics.aliasRows.inc({ ...metric, outcome: "failed" }, delta.errors);
  }

  /** One row's comparison between the version that answered (`primary`) and the one beside it. */
  addComparison(at: { aliasId: string; revision: number; primaryVersion: number; shadowVersion: number }, outputs: readonly OutputComparison[], labels: FigureLabels): void {
    const pair = { ...labels, primary_version: String(at.primaryVersion), shadow_version: String(at.shadowVersion) };
    this.#metrics.shadowCompared.inc(pair);
    for (const output of outputs) {
      const key = `${at.aliasId}|${at.revision}|${at.primaryVersion}|${at.shadowVersion}|${output.output}`;
      let known = this.#comparisons.get(key);
      if (!known) {
        known = { ...at, output: output.output, compared: 0, labelled: 0, agreed: 0, values: 0, absDiffSum: 0, absDiffMax: 0 };
        this.#comparisons.set(key, known);
      }
      known.compared++;
      const metric = { ...pair, output: output.output };
      if (output.labelled) {
        known.labelled++;
        this.#metrics.shadowLabelled.inc(metric);
        if (output.agreed) {
          known.agreed++;
          this.#metrics.shadowAgreed.inc(metric);
        }
      }
      if (output.values > 0) {
        known.values += output.values;
        known.absDiffSum += output.absDiffSum;
        known.absDiffMax = Math.max(known.absDiffMax, output.absDiffMax);
        this.#metrics.shadowAbsDiff.inc(metric, output.absDiffSum);
        this.#metrics.shadowValues.inc(metric, output.values);
      }
    }
  }

  /** Adds the counts so far to Postgres. On failure they are kept (added to what comes next) and the error thrown. */
  async flush(): Promise<void> {
    if (this.#stats.size === 0 && this.#comparisons.size === 0) return;
    const stats = this.#stats;
    const comparisons = this.#comparisons;
    this.#stats = new Map();
    this.#comparisons = new Map();
    try {
      await addAliasFigures(this.#db, [...stats.values()], [...comparisons.values()]);
    } catch (error) {
      for (const delta of stats.values()) this.#mergeStat(delta);
      for (const delta of comparisons.values()) this.#mergeComparison(delta);
      throw error;
    }
  }

  #mergeStat(delta: AliasStatDelta): void {
    const key = `${delta.aliasId}|${delta.revision}|${delta.version}|${delta.role}`;
    const known = this.#stats.get(key);
    if (!known) return void this.#stats.set(key, delta);
    known.rows += delta.rows;
    known.errors += delta.errors;
    known.runMs += delta.runMs;
  }

  #mergeComparison(delta: AliasComparisonDelta): void {
    const key = `${delta.aliasId}|${delta.revision}|${delta.primaryVersion}|${delta.shadowVersion}|${delta.output}`;
    const known = this.#comparisons.get(key);
    if (!known) return void this.#comparisons.set(key, delta);
    known.compared += delta.compared;
    known.labelled += delta.labelled;
    known.agreed += delta.agreed;
    known.values += delta.values;
    known.absDiffSum += delta.absDiffSum;
    known.absDiffMax = Math.max(known.absDiffMax, delta.absDiffMax);
  }
}
