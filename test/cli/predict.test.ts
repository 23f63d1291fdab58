// `coalesce predict` as a user runs it: a child process talking to real API and worker processes
// (started as `npm start` starts them) on this test's own schema and queue prefix.
import { createClient, type CoalesceClient, type Prediction } from "@coalesce/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatPrediction } from "../../apps/cli/src/commands/predict.ts";
import { formatOutputValue } from "../../apps/cli/src/format.ts";
import { buildOnnxModel } from "../../packages/models/src/tiny-onnx.ts";
import { stopProcess, type ServiceProcess } from "../../scripts/processes.ts";
import { runCli, startCliServices, waitForPredictions, type CliRun } from "../support/cli.ts";
import { readFeatureCsv, readModel, readReference, type Reference } from "../support/fixtures.ts";
import { createTestServices, type TestServices } from "../support/services.ts";

const KEY = "csk_cli_predict_0123456789abcdef";
let services: TestServices;
let processes: ServiceProcess[] = [];
let baseUrl: string;
let client: CoalesceClient;
let features: number[][];
let reference: Reference[];
let output: () => string;

type Run = CliRun;

/** `coalesce ...args` from the repository root, with `stdin` piped in (else an empty stdin). */
function coalesce(args: string[], stdin = ""): Promise<Run> {
  return runCli(args, { COALESCE_URL: baseUrl, COALESCE_API_KEY: KEY }, stdin);
}

/** What a user sees of a failure: the exit status, one `error:` line first, never a stack trace. */
function expectFailure(run: Run, message: string, code = 1): void {
  expect(run.code, run.stderr).toBe(code);
  expect(run.stderr).toContain(`error: ${message}`);
  expect(run.stderr).not.toMatch(/\n\s+at /);
  expect(run.stdout).toBe("");
}

/** The table's data lines as cells (split on the padding), header first. */
function tableRows(stdout: string): string[][] {
  return stdout.trim().split("\n").map((line) => line.split(/ {2,}/));
}

const row = (i: number) => (features[i] as number[]).join(",");

beforeAll(async () => {
  services = await createTestServices();
  ({ baseUrl, processes, output } = await startCliServices({ ...services.env, BOOTSTRAP_API_KEY: KEY, MAX_BATCH_DELAY_MS: "5" }));
  client = createClient({ baseUrl, apiKey: KEY });
  await client.pushModel("iris", new Uint8Array(await readModel("iris")));
  ({ features } = await readFeatureCsv("iris"));
  reference = await readReference("iris");
  await waitForPredictions(client, "iris", { features: features[0] as number[] });
});

afterAll(async () => {
  await Promise.all(processes.map((service) => stopProcess(service)));
  await services?.cleanup();
});

describe("coalesce predict", () => {
  it("--row: one table line per row with the reference's labels, the summary on stderr; again from the cache, --no-cache runs anew", async () => {
    const run = await coalesce(["predict", "iris", "--row", row(0), "--row", row(100)]);
    expect(run.code, `${run.stderr}\n${output()}`).toBe(0);
    const [header, ...lines] = tableRows(run.stdout);
    expect(header).toEqual(["ROW", "probabilities", "label"]);
    expect(lines.map((cells) => cells[0])).toEqual(["0", "1"]);
    expect(lines.map((cells) => Number(cells[2]))).toEqual([reference[0]?.label, reference[100]?.label]);
    // Probabilities to 4 significant digits, the vector whole (3 values).
    const shown = JSON.parse(lines[0]?.[1] ?? "") as number[];
    shown.forEach((p, j) => expect(p).toBeCloseTo(reference[0]?.probabilities[j] ?? Number.NaN, 3));
    expect(run.stderr).toBe("2 rows, cache miss, model iris@1\n");

    const again = await coalesce(["predict", "iris", "--row", row(0), "--row", row(100)]);
    expect(again.stdout).toBe(run.stdout);
    expect(again.stderr).toBe("2 rows, cache hit, model iris@1\n");
    const fresh = await coalesce(["predict", "iris@1", "--row", row(0), "--row", row(100), "--no-cache"]);
    expect(fresh.stderr).toBe("2 rows, cache miss, model iris@1\n");
  });

  it("--json prints the API's answer as it is", async () => {
    const run = await coalesce(["predict", "iris", "--version", "1", "--row", row(50), "--json"]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toBe("");
    const answer = JSON.parse(run.stdout) as Omit<Prediction, "cache">;
    expect(Object.keys(answer)).toEqual(["model", "outputs"]);
    expect(answer.model).toEqual({ name: "iris", version: 1, alias: null });
    expect(answer.outputs).toHaveLength(1);
    expect(answer.outputs[0]).toMatchObject({ index: 0, outputs: { label: reference[50]?.label } });
    (answer.outputs[0]?.outputs?.probabilities as number[]).forEach((p, j) => expect(p).toBeCloseTo(reference[50]?.probabilities[j] ?? Number.NaN, 5));
  });

  it("stdin JSON: an array of rows, one row object, or NDJSON", async () => {
    const rows = [10, 60, 120].map((i) => ({ features: features[i] }));
    const labels = [10, 60, 120].map((i) => reference[i]?.label);
    const labelsOf = (run: Run) => (JSON.parse(run.stdout) as Prediction).outputs.map((r) => r.outputs?.label);

    const array = await coalesce(["predict", "iris", "--json"], JSON.stringify(rows));
    expect(array.code, array.stderr).toBe(0);
    expect(labelsOf(array)).toEqual(labels);
    const ndjson = await coalesce(["predict", "iris", "--json"], `${rows.map((r) => JSON.stringify(r)).join("\n")}\n`);
    expect(ndjson.code, ndjson.stderr).toBe(0);
    expect(labelsOf(ndjson)).toEqual(labels);
    const one = await coalesce(["predict", "iris"], JSON.stringify(rows[0]));
    expect(one.code, one.stderr).toBe(0);
    expect(Number(tableRows(one.stdout)[1]?.[2])).toBe(labels[0]);
    expect(one.stderr).toMatch(/^1 row, cache (hit|miss), model iris@1\n$/);
  });

  it("stdin CSV, with or without a header line", async () => {
    const indices = [3, 77, 149];
    const body = indices.map(row).join("\n");
    for (const csv of [`sepal_length,sepal_width,petal_length,petal_width\n${body}\n`, `${body}\r\n`]) {
      const run = await coalesce(["predict", "iris"], csv);
      expect(run.code, run.stderr).toBe(0);
      const [, ...lines] = tableRows(run.stdout);
      expect(lines.map((cells) => Number(cells[2]))).toEqual(indices.map((i) => reference[i]?.label));
      expect(run.stderr).toMatch(/^3 rows, cache (hit|miss), model iris@1\n$/);
    }
    expectFailure(await coalesce(["predict", "iris"], `${row(0)}\n1,2,x,4\n`), "stdin line 2: 'x' is not a number; CSV rows hold numbers only");
  });

  it("a row that does not fit the model: the server's 422 names the row and field", async () => {
    expectFailure(await coalesce(["predict", "iris", "--row", row(0), "--row", "1,2,3"]), "inputs[1].features: expected 4 values, got 3");
    expectFailure(await coalesce(["predict", "iris"], JSON.stringify({ features: [1, 2, 3, 4], extra: 1 })), "inputs[0]");
  });

  it("an unknown model or version, by --row or by JSON", async () => {
    expectFailure(await coalesce(["predict", "nope", "--row", row(0)]), "no model named 'nope'");
    expectFailure(await coalesce(["predict", "nope"], JSON.stringify({ features: features[0] })), "no model named 'nope'");
    expectFailure(await coalesce(["predict", "iris@9", "--row", row(0)]), "model 'iris' has no version 9 (the latest is 1)");
    expectFailure(await coalesce(["predict", "iris", "--version", "9"], JSON.stringify({ features: features[0] })), "model 'iris' has no version 9");
  });

  it("a model with two inputs takes JSON rows, and --row says so", async () => {
    const pair = buildOnnxModel({
      inputs: [
        { name: "a", type: "float32", shape: ["batch", 2] },
        { name: "b", type: "float32", shape: ["batch", 2] },
      ],
      outputs: [{ name: "sum", type: "float32", shape: ["batch", 2] }],
      nodes: [{ opType: "Add", inputs: ["a", "b"], outputs: ["sum"] }],
    });
    await client.pushModel("pair", pair);
    expectFailure(
      await coalesce(["predict", "pair", "--row", "1,2"]),
      `pair@1 has 2 inputs (a float32[batch,2], b float32[batch,2]), and --row and CSV rows feed a single one; pipe JSON rows on stdin instead, e.g. echo '{"a": ..., "b": ...}' | coalesce predict pair@1`,
    );
    const run = await coalesce(["predict", "pair"], JSON.stringify({ a: [1, 2], b: [10, 20] }));
    expect(run.code, run.stderr).toBe(0);
    expect(tableRows(run.stdout)).toEqual([["ROW", "sum"], ["0", "[11, 22]"]]);
  });

  it("a long output vector is shown by its ends", async () => {
    await client.pushModel("digits", new Uint8Array(await readModel("digits")));
    const digits = (await readFeatureCsv("digits")).features[0] as number[];
    const run = await coalesce(["predict", "digits", "--row", digits.join(",")]);
    expect(run.code, run.stderr).toBe(0);
    expect(tableRows(run.stdout)[1]?.[1]).toMatch(/^\[\S+, \S+, \S+, …, \S+, \S+\] \(10 values\)$/);
  });

  it("mistakes on the command line exit 2 and point at the help", async () => {
    const negative = await coalesce(["predict", "iris", "--row", "-1,2,3,4"]);
    expect(negative.code).toBe(2);
    expect(negative.stderr).toContain("error: write a value that starts with '-' as --row=VALUE, e.g. --row=-1.5,2");
    expect(negative.stderr).toContain("coalesce predict --help");
    expect((await coalesce(["predict", "iris", "--row=-1,2,3,4"])).code).toBe(0);

    const notNumber = await coalesce(["predict", "iris", "--row", "1,two,3,4"]);
    expect(notNumber.code).toBe(2);
    expect(notNumber.stderr).toContain("error: --row 1 (1,two,3,4): 'two' is not a number");
    const twice = await coalesce(["predict", "iris@1", "--version", "1", "--row", row(0)]);
    expect(twice.code).toBe(2);
    expect(twice.stderr).toContain("error: give the version once: iris@1 or --version 1");
    const noModel = await coalesce(["predict"]);
    expect(noModel.code).toBe(2);
    expect(noModel.stderr).toContain("error: missing MODEL");

    expectFailure(await coalesce(["predict", "iris"], ""), "no rows on stdin");
    const help = await coalesce(["predict", "--help"]);
    expect(help.stdout).toMatch(/^Usage: coalesce predict MODEL/);
  });
});

describe("predict's table", () => {
  it("shortens numbers, vectors and tensors, and shows NaN (null) and each row's error", () => {
    expect(formatOutputValue(0.981234567)).toBe("0.9812");
    expect(formatOutputValue(3)).toBe("3");
    expect(formatOutputValue("9007199254740993")).toBe("9007199254740993");
    expect(formatOutputValue(null)).toBe("null");
    expect(formatOutputValue([1, 2, 3, 4, 5, 6])).toBe("[1, 2, 3, 4, 5, 6]");
    expect(formatOutputValue(Array.from({ length: 1000 }, (_, i) => i / 10))).toBe("[0, 0.1, 0.2, …, 99.8, 99.9] (1,000 values)");
    expect(formatOutputValue([[1, 2], [3, 4], [5, 6]])).toBe("3x2 [1, 2, 3, 4, …]");
    expect(formatOutputValue("x".repeat(100))).toBe(`${"x".repeat(59)}…`);
    expect(
      formatPrediction({
        model: { name: "m", version: 1, alias: null },
        cache: "miss",
        outputs: [
          { index: 0, outputs: { y: [0.5, null] } },
          { index: 1, error: { code: "inference_failed", message: "the model could not run this row" } },
        ],
      }),
    ).toBe(["ROW  y            ERROR", "0    [0.5, null]", "1                 inference_failed: the model could not run this row"].join("\n"));
  });
});
