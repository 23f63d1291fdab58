// `npm run bench:csv`: a big CSV end to end through real API and worker processes on this
// machine's Postgres and Redis. Generates 1,000,000 rows in the iris layout and 100,000 in the
// digits layout, uploads each, waits for scoring, downloads the CSV results, and prints rows/s for
// each phase with the peak RSS of the API and worker processes. Writes bench/results/csv.json.
import { createReadStream, createWriteStream } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import { finished } from "node:stream/promises";
import { parseArgs } from "node:util";
import type { Job } from "@coalesce/contracts";
import { ROOT, startProcess, stopProcess, WORKER_MAIN, type ServiceProcess } from "../scripts/processes.ts";
import { openBench, registerModel } from "./harness.ts";
import { writeResults } from "./results.ts";

const { values: args } = parseArgs({
  options: {
    rows: { type: "string", default: "1000000" },
    "digits-rows": { type: "string", default: "100000" },
    workers: { type: "string", default: "1" },
  },
});

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

async function main(): Promise<void> {
  const bench = await openBench();
  const { baseUrl, headers, env, dir } = bench;
  const processes: ServiceProcess[] = [bench.api];
  for (let i = 0; i < Number(args.workers); i++) processes.push(startProcess(i === 0 ? "worker" : `worker-${i + 1}`, WORKER_MAIN, env));
  const results: Record<string, unknown>[] = [];
  try {
    const peaks = new Map<string, number>();
    const sampler = setInterval(() => {
      for (const p of processes) void rssMb(p.child.pid).then((mb) => peaks.set(p.name, Math.max(peaks.get(p.name) ?? 0, mb)));
    }, 100);

    for (const dataset of DATASETS) {
      if (dataset.rows <= 0) continue;
      const file = path.join(dir, `${dataset.name}.csv`);
      console.log(`generating ${dataset.rows.toLocaleString()} ${dataset.name} rows ...`);
      const bytes = await writeCsv(file, dataset);
      await registerModel(bench, dataset.name, await readFile(path.join(ROOT, "fixtures", `${dataset.name}.onnx`)));
      peaks.clear();

      const t0 = performance.now();
      const upload = await fetch(`${baseUrl}/v1/jobs?model=${dataset.name}&id_column=row_id&ignore=target`, {
        method: "POST",
        headers: { ...headers, "Content-Type": "text/csv" },
        body: Readable.toWeb(createReadStream(file)) as ReadableStream,
        duplex: "half",
      } as RequestInit);
      const job = (await upload.json()) as Job;
      if (upload.status !== 202) throw new Error(`upload failed: ${upload.status} ${JSON.stringify(job)}`);
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
      let lines = 0;
      for await (const piece of download.body as unknown as AsyncIterable<Uint8Array>) {
        for (const byte of piece) if (byte === 10) lines++;
      }
      const t3 = performance.now();
      if (lines - 1 !== dataset.rows) throw new Error(`downloaded ${lines - 1} rows, expected ${dataset.rows}`);
      const rate = (ms: number) => Math.round(dataset.rows / (ms / 1000));
      const row = {
        dataset: dataset.name,
        rows: dataset.rows,
        mb: Math.round(bytes / 1e5) / 10,
        workers: Number(args.workers),
        upload_s: +((t1 - t0) / 1000).toFixed(2),
        upload_rows_s: rate(t1 - t0),
        scoring_after_upload_s: +((t2 - t1) / 1000).toFixed(2),
        scoring_rows_s: rate(t2 - t0),
        download_s: +((t3 - t2) / 1000).toFixed(2),
        download_rows_s: rate(t3 - t2),
        end_to_end_s: +((t3 - t0) / 1000).toFixed(2),
        end_to_end_rows_s: rate(t3 - t0),
        api_peak_rss_mb: Math.round(peaks.get("api") ?? 0),
        worker_peak_rss_mb: Math.round(Math.max(...processes.filter((p) => p.name.startsWith("worker")).map((p) => peaks.get(p.name) ?? 0))),
      };
      results.push(row);
      console.log(row);
    }
    clearInterval(sampler);
    console.log("");
    console.table(results);
    console.log("scoring_rows_s counts from the start of the upload: scoring overlaps it.");
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
