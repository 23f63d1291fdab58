// `npm run bench:csv`: a big CSV end to end through real API and worker processes on this
// machine's Postgres and Redis. Generates 1,000,000 rows in the iris layout and 100,000 in the
// digits layout, uploads each, waits for scoring, downloads the CSV results, and prints rows/s for
// each phase with the peak RSS of the API and worker processes. In the same run it scores each file
// with the one-process script a user would otherwise write (bench/peer-script.ts, in a child
// process of its own), prints service/peer end to end and checks that both wrote the same results.
// `--rounds N` takes medians (rounds alternate which goes first), `--workers N` starts N workers,
// `--rows` / `--digits-rows` size the files (neither the files nor the results are held in memory
// here), `--peer-parser lines` gives the peer a hand-rolled parser. Writes bench/results/csv.json.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createReadStream, createWriteStream } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import { createInterface } from "node:readline";
import { finished } from "node:stream/promises";
import { parseArgs } from "node:util";
import type { Job } from "@coalesce/contracts";
import { ROOT, startProcess, stopProcess, WORKER_MAIN, type ServiceProcess } from "../scripts/processes.ts";
import { openBench, registerModel, uploadCsvFile, type Bench } from "./harness.ts";
import type { PeerResult } from "./peer-script.ts";
import { writeResults } from "./results.ts";
import { median } from "./stats.ts";

const { values: args } = parseArgs({
  options: {
    rows: { type: "string", default: "1000000" },
    "digits-rows": { type: "string", default: "100000" },
    workers: { type: "string", default: "1" },
    rounds: { type: "string", default: "1" },
    "peer-parser": { type: "string", default: "csv-parse" },
  },
});
const ROUNDS = Math.max(1, Number(args.rounds));
const PEER_SCRIPT = path.join(ROOT, "bench/peer-script.ts");

type Dataset = { name: "iris" | "digits"; features: number; rows: number };
const DATASETS: Dataset[] = [
  { name: "iris", features: 4, rows: Number(args.rows) },
  { name: "digits", features: 64, rows: Number(args["digits-rows"]) },
];

/** Rows in the fixture layout: row_id, the features, target. Values are drawn near the real ranges. */
async function writeCsv(file: string, dataset: Dataset): Promise<number> {
  const out = createWriteStream(file);
  const header = ["row_id", ...Array.from({ length: dataset.features }, (_, i) => `f${i}`), "target"];
  out.write(`${header.join(",")}\n`);
  let buffer = "";
  for (let i = 0; i < dataset.rows; i++) {
    let line = String(i);
    for (let f = 0; f < dataset.features; f++) {
      line += dataset.name === "iris" ? `,${(1 + Math.random() * 6).toFixed(1)}` : `,${Math.floor(Math.random() * 17)}`;
    }
    buffer += `${line},0\n`;
    if (buffer.length > 1 << 20) {
      if (!out.write(buffer)) await new Promise<void>((resolve) => out.once("drain", () => resolve()));
      buffer = "";
    }
  }
  out.end(buffer);
  await finished(out);
  return (await stat(file)).size;
}

function rssMb(pid: number | undefined): Promise<number> {
  if (!pid) return Promise.resolve(0);
  return readFile(`/proc/${pid}/status`, "utf8").then(
    (text) => Number(/VmRSS:\s+(\d+)/.exec(text)?.[1] ?? 0) / 1024,
    () => 0,
  );
}


type ServiceRound = {
  upload_s: number;
  scoring_after_upload_s: number;
  download_s: number;
  end_to_end_s: number;
  api_peak_rss_mb: number;
  worker_peak_rss_mb: number;
};

type Services = { bench: Bench; processes: ServiceProcess[]; peaks: Map<string, number> };

/** Upload start -> job done -> every result downloaded as CSV into `resultsFile` (streamed to disk, as a user would save it). */
async function runService({ bench, processes, peaks }: Services, dataset: Dataset, file: string, resultsFile: string): Promise<ServiceRound> {
  const { baseUrl, headers } = bench;
  peaks.clear();
  const t0 = performance.now();
  const job = await uploadCsvFile(baseUrl, headers, `model=${dataset.name}&id_column=row_id&ignore=target`, file);
  const t1 = performance.now();
  let current = job;
  let lastShown = 0;
  while (current.status === "queued" || current.status === "running") {
    await new Promise((resolve) => setTimeout(resolve, 50));
    current = (await (await fetch(`${baseUrl}/v1/jobs/${job.id}`, { headers })).json()) as Job;
    if (performance.now() - lastShown > 2000) {
      lastShown = performance.now();
      console.log(`  scoring: ${(current.progress * 100).toFixed(0)}% (${current.counts.succeeded.toLocaleString()} rows)`);
    }
  }
  const t2 = performance.now();
  if (current.status !== "succeeded") throw new Error(`job ended ${current.status}`);
  const download = await fetch(`${baseUrl}/v1/jobs/${job.id}/results`, { headers: { ...headers, Accept: "text/csv" } });
  const sink = createWriteStream(resultsFile);
  let lines = 0;
  for await (const piece of download.body as unknown as AsyncIterable<Uint8Array>) {
    for (const byte of piece) if (byte === 10) lines++;
    if (!sink.write(piece)) await once(sink, "drain");
  }
  sink.end();
  await finished(sink);
  const t3 = performance.now();
  if (lines - 1 !== dataset.rows) throw new Error(`downloaded ${lines - 1} rows, expected ${dataset.rows}`);
  const seconds = (ms: number) => ms / 1000;
  return {
    upload_s: seconds(t1 - t0),
    scoring_after_upload_s: seconds(t2 - t1),
    download_s: seconds(t3 - t2),
    end_to_end_s: seconds(t3 - t0),
    api_peak_rss_mb: Math.round(peaks.get("api") ?? 0),
    worker_peak_rss_mb: Math.round(Math.max(...processes.filter((p) => p.name.startsWith("worker")).map((p) => peaks.get(p.name) ?? 0))),
  };
}

/**
 * The peer in a child process of its own, so that its RSS is its own and it shares no event loop
 * with this bench. Its peak is the larger of what this side samples from /proc (as for the
 * services) and the child's own high-water mark (VmHWM), which no sampling interval can miss.
 */
async function runPeerProcess(file: string, model: string, outFile: string): Promise<PeerResult> {
  const child = spawn(process.execPath, ["--import", "tsx", PEER_SCRIPT, file, model, outFile, "--parser", String(args["peer-parser"])], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "inherit"],
  });
  let sampled = 0;
  const sampler = setInterval(() => void rssMb(child.pid).then((mb) => (sampled = Math.max(sampled, mb))), 100);
  let stdout = "";
  child.stdout.setEncoding("utf8").on("data", (text: string) => (stdout += text));
  const [code] = (await once(child, "exit")) as [number | null];
  clearInterval(sampler);
  if (code !== 0) throw new Error(`the peer script exited with code ${code}`);
  const result = JSON.parse(stdout.trim().split("\n").at(-1) ?? "") as PeerResult;
  return { ...result, peakRssMb: Math.max(result.peakRssMb, sampled) };
}

/**
 * Compares the service's CSV download with the peer's file line by line, streaming both: the same
 * header, row ids in the same order, float32 columns equal once both texts are read back as float32
 * (the two may print a float32 with different digits), every other cell equal as text.
 */
async function compareOutputs(serviceFile: string, peerFile: string, floatColumns: readonly string[]): Promise<string> {
  const service = createInterface({ input: createReadStream(serviceFile), crlfDelay: Infinity })[Symbol.asyncIterator]();
  const peer = createInterface({ input: createReadStream(peerFile), crlfDelay: Infinity })[Symbol.asyncIterator]();
  let header: string[] = [];
  let floats = new Set<number>();
  try {
    for (let line = 1; ; line++) {
      const [a, b] = await Promise.all([service.next(), peer.next()]);
      if (a.done || b.done) {
        if (a.done && b.done) return "identical";
        return `${a.done ? "service" : "peer"} file ends at line ${line}, the other goes on`;
      }
      const left = a.value.split(",");
      const right = b.value.split(",");
      if (line === 1) {
        if (a.value !== b.value) return `headers differ: service "${a.value}", peer "${b.value}"`;
        header = left;
        floats = new Set(floatColumns.map((name) => header.indexOf(name)).filter((i) => i >= 0));
        continue;
      }
      if (left.length !== right.length) return `line ${line}: service has ${left.length} cells, peer ${right.length}`;
      for (let c = 0; c < left.length; c++) {
        const x = left[c] as string;
        const y = right[c] as string;
        if (x === y) continue;
        if (floats.has(c) && x !== "" && y !== "" && Math.fround(Number(x)) === Math.fround(Number(y))) continue;
        return `line ${line}, column ${header[c]}: service ${JSON.stringify(x)}, peer ${JSON.stringify(y)}`;
      }
    }
  } finally {
    await service.return?.();
    await peer.return?.();
  }
}

async function main(): Promise<void> {
  const bench = await openBench();
  const { env, dir } = bench;
  const processes: ServiceProcess[] = [bench.api];
  for (let i = 0; i < Number(args.workers); i++) processes.push(startProcess(i === 0 ? "worker" : `worker-${i + 1}`, WORKER_MAIN, env));
  const services: Services = { bench, processes, peaks: new Map() };
  const results: Record<string, unknown>[] = [];
  try {
    const { peaks } = services;
    const sampler = setInterval(() => {
      for (const p of processes) void rssMb(p.child.pid).then((mb) => peaks.set(p.name, Math.max(peaks.get(p.name) ?? 0, mb)));
    }, 100);

    for (const dataset of DATASETS) {
      if (dataset.rows <= 0) continue;
      const file = path.join(dir, `${dataset.name}.csv`);
      const model = path.join(ROOT, "fixtures", `${dataset.name}.onnx`);
      const serviceOut = path.join(dir, `${dataset.name}.service-results.csv`);
      const peerOut = path.join(dir, `${dataset.name}.peer-results.csv`);
      console.log(`generating ${dataset.rows.toLocaleString()} ${dataset.name} rows ...`);
      const bytes = await writeCsv(file, dataset);
      await registerModel(bench, dataset.name, await readFile(model));

      const serviceRounds: ServiceRound[] = [];
      const peerRounds: PeerResult[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        // Alternating who goes first keeps page cache, Postgres autovacuum and CPU boost from favouring one side.
        const order = round % 2 === 0 ? (["service", "peer"] as const) : (["peer", "service"] as const);
        for (const side of order) {
          if (side === "service") {
            const r = await runService(services, dataset, file, serviceOut);
            serviceRounds.push(r);
            console.log(`  round ${round + 1} service: ${r.end_to_end_s.toFixed(2)} s end to end, ${Math.round(dataset.rows / r.end_to_end_s).toLocaleString()} rows/s`);
          } else {
            const r = await runPeerProcess(file, model, peerOut);
            if (r.rows !== dataset.rows) throw new Error(`the peer scored ${r.rows} rows, expected ${dataset.rows}`);
            peerRounds.push(r);
            console.log(`  round ${round + 1} peer:    ${r.seconds.toFixed(2)} s, ${Math.round(dataset.rows / r.seconds).toLocaleString()} rows/s`);
          }
        }
      }
      const outputs = await compareOutputs(serviceOut, peerOut, peerRounds[0]?.floatColumns ?? []);
      console.log(`  outputs: ${outputs}`);

      const med = (pick: (r: ServiceRound) => number) => median(serviceRounds.map(pick));
      const rate = (s: number) => Math.round(dataset.rows / s);
      const uploadS = med((r) => r.upload_s);
      const afterUploadS = med((r) => r.scoring_after_upload_s);
      const downloadS = med((r) => r.download_s);
      const endToEndS = med((r) => r.end_to_end_s);
      const peerS = median(peerRounds.map((r) => r.seconds));
      const row = {
        dataset: dataset.name,
        rows: dataset.rows,
        mb: Math.round(bytes / 1e5) / 10,
        workers: Number(args.workers),
        rounds: ROUNDS,
        upload_s: +uploadS.toFixed(2),
        upload_rows_s: rate(uploadS),
        scoring_after_upload_s: +afterUploadS.toFixed(2),
        scoring_rows_s: rate(med((r) => r.upload_s + r.scoring_after_upload_s)),
        download_s: +downloadS.toFixed(2),
        download_rows_s: rate(downloadS),
        end_to_end_s: +endToEndS.toFixed(2),
        end_to_end_rows_s: rate(endToEndS),
        // Peaks are the highest over the rounds, not a median.
        api_peak_rss_mb: Math.max(...serviceRounds.map((r) => r.api_peak_rss_mb)),
        worker_peak_rss_mb: Math.max(...serviceRounds.map((r) => r.worker_peak_rss_mb)),
        peer_parser: String(args["peer-parser"]),
        peer_s: +peerS.toFixed(2),
        peer_rows_s: rate(peerS),
        peer_peak_rss_mb: Math.round(Math.max(...peerRounds.map((r) => r.peakRssMb))),
        service_vs_peer: +(peerS / endToEndS).toFixed(2),
        end_to_end_rows_s_rounds: serviceRounds.map((r) => rate(r.end_to_end_s)),
        peer_rows_s_rounds: peerRounds.map((r) => rate(r.seconds)),
        outputs,
      };
      results.push(row);
      console.log(row);
    }
    clearInterval(sampler);
    console.log("");
    console.table(
      results.map((r) => ({
        dataset: r.dataset,
        rows: r.rows,
        workers: r.workers,
        upload_rows_s: r.upload_rows_s,
        scoring_rows_s: r.scoring_rows_s,
        download_rows_s: r.download_rows_s,
        api_peak_rss_mb: r.api_peak_rss_mb,
        worker_peak_rss_mb: r.worker_peak_rss_mb,
      })),
    );
    console.log("scoring_rows_s counts from the start of the upload: scoring overlaps it.");
    console.log("");
    console.table(
      results.map((r) => ({
        dataset: r.dataset,
        rows: r.rows,
        "service rows/s (end to end)": r.end_to_end_rows_s,
        "peer rows/s": r.peer_rows_s,
        "service/peer": `${r.service_vs_peer}x`,
        "peer peak MB": r.peer_peak_rss_mb,
        outputs: r.outputs,
      })),
    );
    console.log(`median of ${ROUNDS} round(s); service: upload start -> every result downloaded as CSV; peer: bench/peer-script.ts (${args["peer-parser"]}).`);
    console.log(`written to ${await writeResults("csv", results)}`);
  } finally {
    await Promise.all(processes.slice(1).map((p) => stopProcess(p)));
    await bench.close();
  }
}

main().catch((error: unknown) => {
  console.error(`bench failed: ${(error as Error).message}`);
  process.exit(1);
});
