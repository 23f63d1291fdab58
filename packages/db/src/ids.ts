import { monotonicFactory } from "ulid";

// Monotonic within a process, so ids made in the same millisecond still sort in creation order.
const ulid = monotonicFactory();

export const ID_PREFIXES = {
  tenant: "ten",
  apiKey: "key",
  model: "mdl",
  modelVersion: "mv",
  job: "job",
  chunk: "chk",
  queueJob: "qj",
  webhook: "wh",
  alias: "als",
} as const;

/**
 * A prefixed, time-ordered id (`job_01jd...`): the prefix tells a reader of logs what it names,
 * and the ULID sorts by creation time, so "newest first" is an index scan on the primary key.
 */
export function newId(kind: keyof typeof ID_PREFIXES): string {
  return `${ID_PREFIXES[kind]}_${ulid().toLowerCase()}`;
}
