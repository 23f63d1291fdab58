// The script a user with a big CSV would write instead of running Coalesce: one plain Node
// process, no service. It is the peer `npm run bench:csv` measures the service against (issue 18),
// so it is written the way such a user would write it, neither tuned nor handicapped:
// - csv-parse's streaming API (`for await` over records), because a user reaches for the usual
//   CSV library rather than splitting lines by hand (quoting, CRLF and BOMs are its problem), and
//   it is the parser the API uses too, so the ratio measures the service's architecture, not a
//   parser swap. `--parser lines` (readline + split(",")) is the hand-rolled alternative, kept to
//   show how much the parser alone is worth.
// - Float32Array batches of 1024 rows, one onnxruntime-node run per batch (CPU, ORT's default
//   threads), awaited before the next rows are read: parsing, scoring and writing take turns.
// - Results written as the service's CSV download lays them out (id column, each output flattened as
//   `probabilities_0..`, `label`, an empty `error`); numbers with String(), as a user would, so a
//   float32 prints with float64 digits. Compare with the service's file through Math.fround.
//
// Run alone: `npx tsx bench/peer-script.ts FILE.csv MODEL.onnx OUT.csv [--parser csv-parse|lines]`;
// it prints the timing as one JSON line. Its time runs from opening the model to the output file
// closed (Node and module start-up are left out, as the service's are).
import { once } from "node:events";
import { createReadStream, createWriteStream } from "node:fs";
import { readFile } from "node:fs/promises";
import { createInterface } from "node:readline";
import { finished } from "node:stream/promises";
import { parseArgs } from "node:util";
import { parse } from "csv-parse";
import * as ort from "onnxruntime-node";

/** Rows per onnxruntime run, as the pandas script used. */
const BATCH_ROWS = 1024;

export type PeerParser = "csv-parse" | "lines";

export type PeerOptions = {
  /** @defaultValue "row_id" (the bench's `id_column`) */
  idColumn?: string;
  /** Columns that feed no input. @defaultValue ["target"] (the bench's `ignore`) */
  ignore?: string[];
  /** @defaultValue "csv-parse" */
  parser?: PeerParser;
};

export type PeerResult = {
  seconds: number;
  rows: number;
  /** This process's peak RSS (VmHWM), in MB. */
  peakRssMb: number;
  /** The result columns that hold float32 values (they compare through Math.fround). */
  floatColumns: string[];
};

function records(csvFile: string, parser: PeerParser): AsyncIterable<string[]> {
  if (parser === "csv-parse") return createReadStream(csvFile).pipe(parse({ relax_column_count: false }));
  return (async function* () {
    for await (const line of createInterface({ input: createReadStream(csvFile), crlfDelay: Infinity })) {
      if (line !== "") yield line.split(",");
    }
  })();
}

export async function peakRssMb(): Promise<number> {
  const status = await readFile("/proc/self/status", "utf8").catch(() => "");
  return Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
}

export async function runPeer(csvFile: string, modelFile: string, outFile: string, options: PeerOptions = {}): Promise<PeerResult> {
  const { idColumn = "row_id", ignore = ["target"], parser = "csv-parse" } = options;
  const started = performance.now();
  const session = await ort.InferenceSession.create(modelFile, { executionProviders: ["cpu"] });
  const inputMeta = session.inputMetadata[0];
  if (session.inputMetadata.length !== 1 || !inputMeta?.isTensor) throw new Error("the peer feeds models with one tensor input");
  const inputName = inputMeta.name;
  const outputs = session.outputMetadata.map((meta) => {
    if (!meta.isTensor) throw new Error(`output ${meta.name} is not a tensor`);
    const dims = meta.shape.slice(1);
    return { name: meta.name, width: dims.reduce<number>((product, dim) => product * Number(dim), 1), scalar: dims.length === 0, float: meta.type === "float32" };
  });
  const columnsOf = (o: (typeof outputs)[number]) => (o.scalar ? [o.name] : Array.from({ length: o.width }, (_, i) => `${o.name}_${i}`));
  const columns = outputs.flatMap(columnsOf);
  const floatColumns = outputs.filter((o) => o.float).flatMap(columnsOf);

  const out = createWriteStream(outFile);
  const write = async (text: string) => {
    if (!out.write(text)) await once(out, "drain");
  };

  let idIndex = -1;
  let featureIndexes: number[] = [];
  let width = 0;
  let data = new Float32Array(0);
  let ids: string[] = [];
  let rows = 0;

  const flush = async () => {
    const n = ids.length;
    if (n === 0) return;
    const feeds = { [inputName]: new ort.Tensor("float32", data.subarray(0, n * width), [n, width]) };
    const results = await session.run(feeds);
    let text = "";
    for (let r = 0; r < n; r++) {
      let line = ids[r] as string;
      for (const output of outputs) {
        const values = results[output.name]?.data as ArrayLike<number | bigint>;
        for (let i = 0; i < output.width; i++) line += `,${String(values[r * output.width + i])}`;
      }
      text += `${line},\n`;
    }
    ids = [];
    await write(text);
  };

  for await (const record of records(csvFile, parser)) {
    if (width === 0) {
      idIndex = record.indexOf(idColumn);
      if (idIndex < 0) throw new Error(`no column '${idColumn}' in ${csvFile}`);
      featureIndexes = record.map((_, i) => i).filter((i) => i !== idIndex && !ignore.includes(record[i] as string));
      width = featureIndexes.length;
      const wanted = Number(inputMeta.shape[1]);
      if (width !== wanted) throw new Error(`the model takes ${wanted} features, the file has ${width}`);
      data = new Float32Array(BATCH_ROWS * width);
      await write(`${[idColumn, ...columns, "error"].join(",")}\n`);
      continue;
    }
    const offset = ids.length * width;
    for (let f = 0; f < width; f++) data[offset + f] = Number(record[featureIndexes[f] as number]);
    ids.push(record[idIndex] as string);
    rows++;
    if (ids.length === BATCH_ROWS) await flush();
  }
  await flush();
  out.end();
  await finished(out);
  await session.release();
  return { seconds: (performance.now() - started) / 1000, rows, peakRssMb: await peakRssMb(), floatColumns };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { parser: { type: "string", default: "csv-parse" } } });
  const [csvFile, modelFile, outFile] = positionals;
  if (!csvFile || !modelFile || !outFile || (values.parser !== "csv-parse" && values.parser !== "lines")) {
    console.error("usage: tsx bench/peer-script.ts FILE.csv MODEL.onnx OUT.csv [--parser csv-parse|lines]");
    process.exit(2);
  }
  runPeer(csvFile, modelFile, outFile, { parser: values.parser }).then(
    (result) => console.log(JSON.stringify(result)),
    (error: unknown) => {
      console.error(`peer failed: ${(error as Error).message}`);
      process.exit(1);
    },
  );
}
