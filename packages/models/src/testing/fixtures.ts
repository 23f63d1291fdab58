// Test support only: reads the iris and digits fixtures at the repository root.
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";

export type FixtureName = "iris" | "digits";

export type ReferenceRow = { row_id: number; probabilities: number[]; label: number };

export type Fixture = {
  modelPath: string;
  /** row_id of each CSV row, in file order. */
  rowIds: number[];
  /** One feature vector per CSV row, in file order (row_id and target dropped). */
  features: number[][];
  reference: ReferenceRow[];
};

const FIXTURES_DIR = new URL("../../../../fixtures/", import.meta.url);

export async function loadFixture(name: FixtureName): Promise<Fixture> {
  const csv = await readFile(new URL(`${name}.csv`, FIXTURES_DIR), "utf8");
  const [header, ...lines] = csv.trim().split("\n");
  const columns = header!.split(",");
  if (columns[0] !== "row_id" || columns.at(-1) !== "target") throw new Error(`unexpected ${name}.csv header`);
  const cells = lines.map((line) => line.split(",").map(Number));
  const rowIds = cells.map((row) => row[0]!);
  const features = cells.map((row) => row.slice(1, -1));

  const jsonl = await readFile(new URL(`${name}.reference.jsonl`, FIXTURES_DIR), "utf8");
  const reference = jsonl
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line) as ReferenceRow);

  return { modelPath: fileURLToPath(new URL(`${name}.onnx`, FIXTURES_DIR)), rowIds, features, reference };
}
