// Writing benchmark results, in a module of its own so that benchmarks without services
// (bench:providers) load no database code.
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { ROOT } from "../scripts/processes.ts";

/** Writes `bench/results/NAME.json` (gitignored) with the date; returns its path. */
export async function writeResults(name: string, results: unknown): Promise<string> {
  const file = path.join(ROOT, "bench/results", `${name}.json`);
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, `${JSON.stringify({ date: new Date().toISOString(), results }, null, 2)}\n`);
  return file;
}
