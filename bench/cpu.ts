// Where the CPU goes during a benchmark run: per-process CPU time read from /proc (Linux), so a run
// can say how many milliseconds of CPU each part of the service spent per job. On a machine
// without /proc the accounting is skipped.
import { readdir, readFile } from "node:fs/promises";

/** The parts of a run, each a set of processes. */
export type CpuPart = "api" | "worker" | "postgres" | "redis" | "client";

/** Clock ticks per second of /proc's utime/stime: 100 on every Linux this runs on (USER_HZ). */
const TICKS_PER_SECOND = 100;

async function processTicks(pid: number): Promise<number | null> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
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

export type CpuSnapshot = Map<CpuPart, number>;

/** CPU seconds used so far by each part; null without /proc. */
export async function snapshotCpu(pids: { api: number | undefined; worker: number | undefined }): Promise<CpuSnapshot | null> {
  if ((await processTicks(process.pid)) === null) return null;
  const sum = async (list: (number | undefined)[]) => {
    let ticks = 0;
    for (const pid of list) if (pid !== undefined) ticks += (await processTicks(pid)) ?? 0;
    return ticks / TICKS_PER_SECOND;
  };
  const usage = process.cpuUsage();
  return new Map<CpuPart, number>([
    ["api", await sum([pids.api])],
    ["worker", await sum([pids.worker])],
    ["postgres", await sum(await pidsNamed("postgres"))],
    ["redis", await sum(await pidsNamed("redis-server"))],
    // The load generator (this process): its HTTP client shares the cores with the service.
    ["client", (usage.user + usage.system) / 1e6],
  ]);
}

/** Milliseconds of CPU per job for each part between two snapshots, e.g. { api_cpu_ms: 1.1, ... }. */
export function cpuPerJob(before: CpuSnapshot | null, after: CpuSnapshot | null, jobs: number): Record<string, number> {
  if (!before || !after) return {};
  const out: Record<string, number> = {};
  for (const [part, seconds] of after) {
    out[`${part}_cpu_ms`] = Math.round(((seconds - (before.get(part) ?? 0)) * 1000 * 100) / jobs) / 100;
  }
  return out;
}
