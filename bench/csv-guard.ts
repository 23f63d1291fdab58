// `npm run bench:csv-guard`: what the CSV guard (apps/api/src/ingest/csv-guard.ts) costs the upload
// path. Side by side in one run, on the same generated buffer (1M rows of the iris layout, as a client
// would send it, cut into 64 KiB pieces like a socket's): csv-parse alone with the options ingestCsv
// uses, and the guard in front of it, as ingestCsv runs them. The two take turns over `--rounds`
// rounds (a slow spell of a shared machine hits both alike); rows/s is the median of the rounds.
// `--quoted` makes every cell a quoted field, the guard's slow path.
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { parseArgs } from "node:util";
import { parse } from "csv-parse";
import { DEFAULT_CSV_LIMITS, guardCsv } from "../apps/api/src/ingest/csv-guard.ts";
import { median } from "./stats.ts";

const { values: args } = parseArgs({
  options: {
    rows: { type: "string", default: "1000000" },
    rounds: { type: "string", default: "5" },
    quoted: { type: "boolean", default: false },
  },
});
const ROWS = Number(args.rows);
const ROUNDS = Number(args.rounds);
const PIECE = 64 * 1024;

function irisCsv(rows: number, quoted: boolean): Buffer {
  const cell = (value: string) => (quoted ? `"${value}"` : value);
  const lines = ["sepal_length,sepal_width,petal_length,petal_width".split(",").map(cell).join(",")];
  for (let i = 0; i < rows; i++) {
    lines.push([5 + (i % 30) / 10, 3 + (i % 13) / 10, 1.4 + (i % 7) / 10, 0.2 + (i % 5) / 10].map((v) => cell(v.toFixed(1))).join(","));
  }
  return Buffer.from(`${lines.join("\n")}\n`);
}

function pieces(buffer: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < buffer.length; at += PIECE) out.push(buffer.subarray(at, at + PIECE));
  return out;
}

/** Rows/s of parsing `parts`, with or without the guard in front. */
async function run(parts: Buffer[], guarded: boolean): Promise<number> {
  const limits = DEFAULT_CSV_LIMITS;
  const parser = parse({ bom: true, relax_column_count: true, relax_quotes: true });
  const started = process.hrtime.bigint();
  let records = 0;
  const count = async (source: AsyncIterable<string[]>) => {
    for await (const _ of source) records++;
  };
  const stages = guarded ? [Readable.from(parts), guardCsv(limits), parser] : [Readable.from(parts), parser];
  await Promise.all([pipeline(stages as [Readable, ...NodeJS.ReadWriteStream[]]), count(parser)]);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (records !== ROWS + 1) throw new Error(`read ${records} records, expected ${ROWS + 1}`);
  return ROWS / seconds;
}

/** Bytes/s of the guard alone (its output thrown away). */
async function runGuardAlone(parts: Buffer[], bytes: number): Promise<number> {
  const started = process.hrtime.bigint();
  const guard = guardCsv(DEFAULT_CSV_LIMITS);
  await pipeline(Readable.from(parts), guard, async (source: AsyncIterable<Buffer>) => {
    for await (const _ of source);
  });
  return bytes / (Number(process.hrtime.bigint() - started) / 1e9);
}


const buffer = irisCsv(ROWS, args.quoted);
const parts = pieces(buffer);
console.log(`${ROWS} rows, ${(buffer.length / 1024 / 1024).toFixed(1)} MiB${args.quoted ? ", every cell quoted" : ""}, ${parts.length} pieces of 64 KiB, ${ROUNDS} rounds`);
// One untimed pass each, so both are measured warm.
await run(parts, false);
await run(parts, true);
const alone: number[] = [];
const guarded: number[] = [];
const guardOnly: number[] = [];
for (let round = 0; round < ROUNDS; round++) {
  alone.push(await run(parts, false));
  guarded.push(await run(parts, true));
  guardOnly.push(await runGuardAlone(parts, buffer.length));
}
const a = median(alone);
const g = median(guarded);
console.table([
  { run: "csv-parse alone", "rows/s": Math.round(a) },
  { run: "guard + csv-parse", "rows/s": Math.round(g) },
]);
console.log(`guard + csv-parse / csv-parse alone: ${(g / a).toFixed(3)} (the guard costs ${((a / g - 1) * 100).toFixed(1)} % more time)`);
console.log(`guard alone: ${(median(guardOnly) / 1024 / 1024).toFixed(0)} MiB/s`);
