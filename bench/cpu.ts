// Where the CPU goes during a benchmark run: per-process CPU time read from /proc (Linux), so a run
// can say how many milliseconds of CPU each part of the service spent per job. On a machine
// without /proc the accounting is skipped.
import { readdir, readFile } from "node:fs/promises";

/**
 * The parts of a run, each a set of processes (or threads): the worker is split into its event
 * loop (queue, Postgres and Redis I/O, the batcher) and its other threads (onnxruntime's, which run
 * the batches, and V8's and libuv's helpers).
 */
export type CpuPart = "api" | "worker_loop" | "worker_threads" | "postgres" | "redis" | "client";

/** Clock ticks per second of /proc's utime/stime: 100 on every Linux this runs on (USER_HZ). */
const TICKS_PER_SECOND = 100;

/** utime + stime of a process (all its threads, ended ones included) or, with `thread`, of one thread. */
async function processTicks(pid: number, thread?: number): Promise<number | null> {
  try {
    const stat = await readFile(thread === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${thread}/stat`, "utf8");
    // Fields after the command name (which may hold spaces) start at state; utime and stime are 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return null;
  }
}

/** Every process whose command name is `comm` (postgres backends, redis-server). */
async function pidsNamed(comm: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir("/proc").catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry)) continue;
    const name = await readFile(`/proc/${entry}/comm`, "utf8").catch(() => "");
    if (name.trim() === comm) pids.push(Number(entry));
  }
  return pids;
}

/** CPU seconds so far, per process, of each part. */
export type CpuSnapshot = Map<CpuPart, Map<number, number>>;

/** CPU seconds used so far by each part's processes; null without /proc. */
export async function snapshotCpu(pids: { api: number | undefined; worker: number | undefined }): Promise<CpuSnapshot | null> {
  if ((await processTicks(process.pid)) === null) return null;
  /** CPU seconds by pid, of the processes (or threads) whose ticks could be read. */
  const seconds = (ticks: [number | undefined, number | null][]) => {
    const byPid = new Map<number, number>();
    for (const [pid, value] of ticks) if (pid !== undefined && value !== null) byPid.set(pid, value / TICKS_PER_SECOND);
    return byPid;
  };
  const ofProcesses = async (list: (number | undefined)[]) =>
    seconds(await Promise.all(list.map(async (pid) => [pid, pid === undefined ? null : await processTicks(pid)] as [number | undefined, number | null])));
  const usage = process.cpuUsage();
  const worker = pids.worker === undefined ? null : await processTicks(pids.worker);
  // A Linux process's main thread has the process's id.
  const workerLoop = pids.worker === undefined ? null : await processTicks(pids.worker, pids.worker);
  return new Map<CpuPart, Map<number, number>>([
    ["api", await ofProcesses([pids.api])],
    ["worker_loop", seconds([[pids.worker, workerLoop]])],
    ["worker_threads", seconds([[pids.worker, worker === null || workerLoop === null ? null : worker - workerLoop]])],
    ["postgres", await ofProcesses(await pidsNamed("postgres"))],
    ["redis", await ofProcesses(await pidsNamed("redis-server"))],
    // The load generator (this process): its HTTP client shares the cores with the service.
    ["client", new Map([[process.pid, (usage.user + usage.system) / 1e6]])],
  ]);
}

/**
 * Milliseconds of CPU per job (or row) for each part between two snapshots, e.g. { api_cpu_ms: 1.1, ... }.
 * Per process: one that started meanwhile counts from zero; one that ended meanwhile (a Postgres
 * autovacuum worker, a closed connection) is left out, as its last figures cannot be read.
 */
export function cpuPerJob(before: CpuSnapshot | null, after: CpuSnapshot | null, jobs: number): Record<string, number> {
  if (!before || !after) return {};
  const out: Record<string, number> = {};
  for (const [part, byPid] of after) {
    let seconds = 0;
    for (const [pid, now] of byPid) seconds += now - (before.get(part)?.get(pid) ?? 0);
    out[`${part}_cpu_ms`] = Math.round((seconds * 1000 * 100) / jobs) / 100;
  }
  return out;
}
