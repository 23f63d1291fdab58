import type { TensorSpec, TensorRow, TensorValue } from "@coalesce/contracts";

/** How one output of one row compared between two versions. */
export type OutputComparison = {
  output: string;
  /** The output has a label to agree on: an integer, string or boolean value, or the argmax of a float vector. */
  labelled: boolean;
  agreed: boolean;
  /** Float values compared (their absolute differences are summed). */
  values: number;
  absDiffSum: number;
  absDiffMax: number;
};

const FLOAT_TYPES = new Set(["float16", "float32", "float64", "float", "double", "bfloat16"]);

/**
 * Compares two versions' outputs for the same row, output by output. A float output is compared
 * value by value (absolute differences), and when it is a vector its argmax is its label (a
 * classifier's probabilities); an integer, string or boolean output is a label, agreed when every
 * element is equal. Outputs missing on either side are skipped; a different number of elements
 * is a disagreement.
 */
export function compareOutputs(a: TensorRow, b: TensorRow, outputs: readonly TensorSpec[]): OutputComparison[] {
  const comparisons: OutputComparison[] = [];
  for (const spec of outputs) {
    const left = a[spec.name];
    const right = b[spec.name];
    if (left === undefined || right === undefined) continue;
    const x = flatten(left);
    const y = flatten(right);
    const comparison: OutputComparison = { output: spec.name, labelled: false, agreed: false, values: 0, absDiffSum: 0, absDiffMax: 0 };
    if (x.length !== y.length) {
      comparison.labelled = true;
      comparisons.push(comparison);
      continue;
    }
    if (FLOAT_TYPES.has(spec.type)) {
      for (let i = 0; i < x.length; i++) {
        const p = x[i];
        const q = y[i];
        // A NaN or an infinity (a run's raw outputs; stored, they become null) has no difference to
        // add, and one in the sum would reach Postgres as null and fail every later flush of the counts.
        if (typeof p !== "number" || typeof q !== "number" || !Number.isFinite(p) || !Number.isFinite(q)) continue;
        const diff = Math.abs(p - q);
        comparison.values++;
        comparison.absDiffSum += diff;
        if (diff > comparison.absDiffMax) comparison.absDiffMax = diff;
      }
      if (x.length >= 2) {
        comparison.labelled = true;
        comparison.agreed = argmax(x) === argmax(y);
      }
    } else {
      comparison.labelled = true;
      comparison.agreed = x.every((value, i) => String(value) === String(y[i]));
    }
    comparisons.push(comparison);
  }
  return comparisons;
}

function flatten(value: TensorValue | null): (TensorValue | null)[] {
  if (!Array.isArray(value)) return [value];
  return (value as TensorValue[]).flat(Infinity as 1) as (TensorValue | null)[];
}

function argmax(values: readonly (TensorValue | null)[]): number {
  let best = -1;
  let bestValue = -Infinity;
  values.forEach((value, i) => {
    if (typeof value === "number" && value > bestValue) {
      best = i;
      bestValue = value;
    }
  });
  return best;
}
