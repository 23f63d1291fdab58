// Private Postgres and Redis instances for the fault suite: Debian's binaries on ports picked here,
// in a directory of our own, so a fault can stop, kill and restart them without touching the shared
// services on 5432/6379 that the other tests use.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { access, chmod, chown, mkdir, open } from "node:fs/promises";
import { connect } from "node:net";
import path from "node:path";
import { promisify } from "node:util";
import { freePort } from "../../scripts/processes.ts";
import { GiveUp, until } from "./wait.ts";

const run = promisify(execFile);
const PG_BIN = process.env.CHAOS_PG_BIN ?? "/usr/lib/postgresql/15/bin";

/** initdb and postgres refuse to run as root: as root, run them as this user (Debian's `postgres`). */
const PG_USER = "postgres";
const IS_ROOT = process.getuid?.() === 0;

async function pgCommand(binary: string, args: string[]): Promise<void> {
  const file = path.join(PG_BIN, binary);
  const [command, argv] = IS_ROOT ? ["runuser", ["-u", PG_USER, "--", file, ...args]] : [file, args];
  try {
    await run(command, argv, { timeout: 60_000 });
  } catch (error) {
    const { stderr, stdout } = error as { stderr?: string; stdout?: string };
    throw new Error(`${binary} ${args.join(" ")} failed: ${(stderr || stdout || (error as Error).message).trim()}`);
  }
}

async function userIds(user: string): Promise<{ uid: number; gid: number }> {
  const [uid, gid] = await Promise.all([run("id", ["-u", user]), run("id", ["-g", user])]);
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/** A directory the Postgres user owns (initdb wants its data directory at mode 0700). */
async function postgresDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  if (!IS_ROOT) return;
  const { uid, gid } = await userIds(PG_USER);
  await chown(dir, uid, gid);
}

export type PostgresInstance = {
  port: number;
  /** A connection URL for `database` (created by the services' migrations). */
  url(database: string): string;
  logFile: string;
  /** `pg_ctl stop -m immediate`: every backend gone at once, as a crash would leave it. */
  crash(): Promise<void>;
  /** Starts again on the same port and data directory (crash recovery runs). */
  start(): Promise<void>;
  /** Stops it for good; safe to call twice and after a crash. */
  close(): Promise<void>;
};

/**
 * initdb + pg_ctl start in `root/postgres` on a free port. fsync is off: the suite injects crashes of
 * processes, not of the machine, and WAL that was written reaches the OS whether or not it is
 * fsynced. synchronous_commit stays on: with it off, `stop -m immediate` would lose commits the
 * services were told had happened, a loss that is Postgres' and not the service's.
 */
export async function startPostgres(root: string): Promise<PostgresInstance> {
  // The Postgres user must reach its directory through `root` (mkdtemp makes it 0700).
  if (IS_ROOT) await chmod(root, 0o755);
  const dir = path.join(root, "postgres");
  const dataDir = path.join(dir, "data");
  const logFile = path.join(dir, "postgres.log");
  await postgresDir(dir);
  await pgCommand("initdb", ["-D", dataDir, "-U", "postgres", "--auth=trust", "--no-sync"]);
  const port = await freePort();
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off`;
  let running = false;
  // Once closed (the run ends or is interrupted) a fault still under way must not start it again.
  let closed = false;
  let starting: Promise<void> = Promise.resolve();
  const start = async () => {
    if (closed) throw new GiveUp("Postgres is closed: the run is stopping");
    starting = pgCommand("pg_ctl", ["-D", dataDir, "-o", options, "-l", logFile, "-w", "-t", "60", "start"]);
    await starting;
    running = true;
  };
  const stop = async (mode: "immediate" | "fast") => {
    if (!running) return;
    running = false;
    await pgCommand("pg_ctl", ["-D", dataDir, "-m", mode, "-w", "-t", "60", "stop"]);
  };
  await start();
  return {
    port,
    url: (database) => `postgresql://postgres@127.0.0.1:${port}/${database}`,
    logFile,
    crash: () => stop("immediate"),
    start,
    async close() {
      closed = true;
      await starting.catch(() => {});
      if (await access(path.join(dataDir, "postmaster.pid")).then(() => true, () => false)) running = true;
      // On Ctrl-C the terminal's SIGINT may have stopped the postmaster already: only a running one is an error.
      await stop("immediate").catch(async (error: unknown) => {
        if (await access(path.join(dataDir, "postmaster.pid")).then(() => true, () => false)) throw error;
      });
    },
  };
}

export type RedisInstance = {
  port: number;
  url: string;
  logFile: string;
  /** kill -9: Redis here keeps nothing on disk, so what it held is gone (a flush as well as an outage). */
  kill(): Promise<void>;
  /** Starts an empty Redis again on the same port. */
  start(): Promise<void>;
  close(): Promise<void>;
};

/** Answers true once a Redis on `port` replies to PING. */
function pingRedis(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.once("error", () => done(false));
    socket.once("connect", () => socket.write("PING\r\n"));
    socket.once("data", (data: Buffer) => done(data.toString().startsWith("+PONG")));
  });
}

/**
 * redis-server as a child of this process (not daemonized), so a fault can kill -9 it and start it
 * again on the same port; no RDB, no AOF.
 */
export async function startRedis(root: string): Promise<RedisInstance> {
  const dir = path.join(root, "redis");
  await mkdir(dir, { recursive: true });
  const logFile = path.join(dir, "redis.log");
  const port = await freePort();
  let child: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();
  let closed = false;

  const start = async () => {
    if (closed) throw new GiveUp("Redis is closed: the run is stopping");
    const log = await open(logFile, "a");
    const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir];
    const started = spawn("redis-server", args, { stdio: ["ignore", log.fd, log.fd] });
    child = started;
    exited = new Promise((resolve) => started.once("exit", () => resolve()));
    void exited.then(() => log.close());
    await until(`redis-server on port ${port} to answer PING`, 20_000, async () => {
      if (started.exitCode !== null) throw new GiveUp(`redis-server exited with code ${started.exitCode}; see ${logFile}`);
      return pingRedis(port);
    });
  };
  const kill = async () => {
    const current = child;
    child = null;
    if (!current || current.exitCode !== null || current.signalCode !== null) return;
    current.kill("SIGKILL");
    await exited;
  };
  await start();
  const close = async () => {
    closed = true;
    await kill();
  };
  return { port, url: `redis://127.0.0.1:${port}`, logFile, kill, start, close };
}
