import { z } from "@hono/zod-openapi";

/**
 * Postgres text refuses the NUL character (0x00) outright, so a string with one that reaches a column
 * would fail the query. Every request string stored as text goes through this, and is refused at the
 * edge with a 422 naming its field instead.
 */
export function pgText(schema: z.ZodString = z.string()): z.ZodString {
  return schema.refine((value) => !value.includes("\u0000"), "must not contain the NUL character (\\u0000)");
}

/** The known field nearest to `key` (a typo, a case slip), if one is close enough to be what was meant. */
export function closestField(key: string, known: readonly string[]): string | undefined {
  let best: { name: string; distance: number } | undefined;
  for (const name of known) {
    const distance = editDistance(key.toLowerCase(), name.toLowerCase());
    if (!best || distance < best.distance) best = { name, distance };
  }
  return best && best.distance <= Math.max(1, Math.floor(best.name.length / 3)) ? best.name : undefined;
}

function editDistance(a: string, b: string): number {
  // Unknown keys are attacker-sized: past a length no field has, no suggestion is worth the work.
  if (a.length > 64 || b.length > 64) return Number.POSITIVE_INFINITY;
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

/**
 * A JSON request body: an object that refuses keys it does not know (a misspelt `webhook_ur1` would
 * otherwise be dropped silently and the job run without its webhook). The API answers 422 with one
 * entry per unknown key, and suggests the field that was probably meant.
 */
export function requestObject<Shape extends z.ZodRawShape>(shape: Shape) {
  const known = Object.keys(shape);
  return z.strictObject(shape, {
    error: (issue) => {
      if (issue.code !== "unrecognized_keys") return undefined;
      const [only] = issue.keys;
      const suggestion = issue.keys.length === 1 && only !== undefined ? closestField(only, known) : undefined;
      return suggestion ? `unknown field; did you mean ${suggestion}?` : `unknown field; the fields are ${known.join(", ")}`;
    },
  });
}
