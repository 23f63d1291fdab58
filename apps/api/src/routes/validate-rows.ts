import type { FieldError, TensorRow, TensorSpec } from "@coalesce/contracts";
import { validateRow } from "@coalesce/models";
import { validationError } from "../errors.ts";

/** Enough to fix a request without answering megabytes of errors for a wholly wrong one. */
const MAX_REPORTED_ERRORS = 100;

/**
 * Checks every row against the model's inputs (`inputs[17].features: expected 4 values, got 3`),
 * and throws one 422 naming the places (the first MAX_REPORTED_ERRORS) if any row is wrong.
 */
export function assertValidRows(rows: readonly unknown[], inputs: readonly TensorSpec[], field = "inputs"): asserts rows is TensorRow[] {
  const errors: FieldError[] = [];
  let errorCount = 0;
  rows.forEach((row, index) => {
    const issues = validateRow(row, inputs, `${field}[${index}]`);
    errorCount += issues.length;
    for (const issue of issues) {
      if (errors.length < MAX_REPORTED_ERRORS) errors.push({ field: issue.path, message: issue.message });
    }
  });
  if (errorCount > 0) throw validationError(errors, errorCount);
}
