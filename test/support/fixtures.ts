import { readFile } from "node:fs/promises";
import path from "node:path";
import { FIXTURES } from "./services.ts";

export type Reference = { row_id: number; probabilities: number[]; label: number };

/** A fixture CSV's feature rows (the columns between row_id and target) and its targets. */
export async function readFeatureCsv(name: "iris" | "digits"): Promise<{ features: number[][]; targets: number[] }> {
  const [header = "", ...lines] = (await readFile(path.join(FIXTURES, `${name}.csv`), "utf8")).trim().split(/\r?\n/);
  const target = header.split(",").indexOf("target");
  const features: number[][] = [];
  const targets: number[] = [];
  for (const line of lines) {
    const cells = line.split(",").map(Number);
    features.push(cells.slice(1, target));
    targets.push(cells[target] as number);
  }
  return { features, targets };
}

export async function readReference(name: "iris" | "digits"): Promise<Reference[]> {
  const text = await readFile(path.join(FIXTURES, `${name}.reference.jsonl`), "utf8");
  return text.trim().split("\n").map((line) => JSON.parse(line) as Reference);
}

export function readModel(name: string): Promise<Buffer> {
  return readFile(path.join(FIXTURES, `${name}.onnx`));
}
