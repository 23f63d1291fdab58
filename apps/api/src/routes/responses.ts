import { ProblemSchema } from "@coalesce/contracts";

/** An OpenAPI response entry for an error answered as problem+json. */
export function problem(description: string) {
  return { description, content: { "application/problem+json": { schema: ProblemSchema } } };
}
