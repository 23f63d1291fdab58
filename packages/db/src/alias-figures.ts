import type { AliasFigures } from "./repositories/aliases.ts";

export type VersionFigures = {
  version: number;
  role: "route" | "shadow";
  rows: number;
  errors: number;
  /** Null before any row. */
  errorRate: number | null;
  /** Mean run time of the onnxruntime runs its rows were in; null before any row. */
  meanRunMs: number | null;
};

export type OutputFigures = { output: string; compared: number; agreement: number | null; meanAbsDiff: number | null; maxAbsDiff: number | null };

export type PairFigures = {
  primaryVersion: number;
  shadowVersion: number;
  /** Rows both versions scored. */
  compared: number;
  /** Rows with a label or argmax to compare (the fewest among the outputs that have one). */
  labelled: number;
  /** The lowest agreement among the outputs that have a label or argmax; null when none has. */
  agreement: number | null;
  outputs: OutputFigures[];
};

/**
 * What an alias's counters say, per version and per pair of versions that scored the same rows:
 * the figures GET .../comparison shows and the guard judges.
 */
export function summarizeFigures(figures: AliasFigures): { versions: VersionFigures[]; pairs: PairFigures[] } {
  const versions = figures.stats.map((stat) => ({
    version: stat.version,
    role: stat.role,
    rows: stat.rows,
    errors: stat.errors,
    errorRate: stat.rows > 0 ? stat.errors / stat.rows : null,
    meanRunMs: stat.rows > 0 ? stat.runMs / stat.rows : null,
  }));
  const pairs = new Map<string, PairFigures>();
  for (const row of figures.comparisons) {
    const key = `${row.primaryVersion}|${row.shadowVersion}`;
    let pair = pairs.get(key);
    if (!pair) {
      pair = { primaryVersion: row.primaryVersion, shadowVersion: row.shadowVersion, compared: 0, labelled: 0, agreement: null, outputs: [] };
      pairs.set(key, pair);
    }
    const agreement = row.labelled > 0 ? row.agreed / row.labelled : null;
    pair.compared = Math.max(pair.compared, row.compared);
    if (agreement !== null && (pair.agreement === null || agreement < pair.agreement)) pair.agreement = agreement;
    if (row.labelled > 0) pair.labelled = pair.labelled === 0 ? row.labelled : Math.min(pair.labelled, row.labelled);
    pair.outputs.push({
      output: row.output,
      compared: row.compared,
      agreement,
      meanAbsDiff: row.values > 0 ? row.absDiffSum / row.values : null,
      maxAbsDiff: row.values > 0 ? row.absDiffMax : null,
    });
  }
  return { versions, pairs: [...pairs.values()] };
}
