// Debian's nginx run as a child process in front of API processes, with docker/nginx's template rendered
// the way the official image renders it, and a self-signed certificate made by the openssl CLI. For
// test/nginx/ and bench/proxy.ts.
import { execFile, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { freePort, ROOT } from "../../scripts/processes.ts";

export const NGINX_BINARY = process.env.NGINX_BINARY ?? "/usr/sbin/nginx";
export const TEMPLATE_FILE = path.join(ROOT, "docker/nginx/coalesce.conf.template");

/** Why nginx or openssl cannot run here, or null when both can. */
export function missingTools(): string | null {
  if (!existsSync(NGINX_BINARY)) return `${NGINX_BINARY} is missing (apt-get install -y nginx, or NGINX_BINARY=...)`;
  if (spawnSync("openssl", ["version"], { stdio: "ignore" }).status !== 0) return "the openssl CLI is missing (apt-get install -y openssl)";
  return null;
}

/**
 * The official image's 20-envsubst-on-templates.sh: `${NAME}` is replaced for the names given, and
 * everything else (nginx's own `$host`) is left alone. A list value stands for a name with several
 * addresses, as Docker's DNS answers for a scaled service: the line holding it is repeated once per
 * address, which is what nginx does with such a name in an upstream block.
 */
export function renderTemplate(template: string, vars: Record<string, string | string[]>): string {
  const lines = template.split("\n").flatMap((line) => {
    const list = Object.entries(vars).find(([name, value]) => Array.isArray(value) && line.includes(`\${${name}}`));
    if (!list) return [line];
    const [name, values] = list as [string, string[]];
    return values.map((value) => line.replaceAll(`\${${name}}`, value));
  });
  const text = lines.join("\n").replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (match, name: string) => {
    const value = vars[name];
    return typeof value === "string" ? value : match;
  });
  const left = /\$\{(COALESCE_[A-Za-z0-9_]*)\}/.exec(text);
  if (left) throw new Error(`${TEMPLATE_FILE}: no value for ${left[1]}`);
  return text;
}

/** A self-signed certificate for localhost and 127.0.0.1 (the certificate is its own CA). */
export async function makeSelfSignedCert(dir: string): Promise<{ cert: string; key: string }> {
  const cert = path.join(dir, "tls.crt");
  const key = path.join(dir, "tls.key");
  await promisify(execFile)("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
    "-keyout", key, "-out", cert,
  ]);
  return { cert, key };
}

export type RunningNginx = {
  httpsUrl: string;
  httpUrl: string;
  httpsPort: number;
  /** PEM of the certificate nginx serves, to trust as a CA. */
  ca: string;
  accessLog: string;
  child: ChildProcess;
  output(): string;
  /** The access log's lines so far. */
  accessLines(): Promise<string[]>;
  stop(): Promise<void>;
};

/**
 * nginx in the foreground with its own prefix, config, pid, logs and temp directories under a temp
 * dir, on free ports, proxying to `upstreams` (host:port each) through the repository's template.
 */
export async function startNginx(upstreams: string[], options: { maxBodySize?: number } = {}): Promise<RunningNginx> {
  const dir = await mkdtemp(path.join(tmpdir(), "coalesce-nginx-"));
  await mkdir(path.join(dir, "logs"));
  await mkdir(path.join(dir, "temp"));
  const { cert, key } = await makeSelfSignedCert(dir);
  const [httpPort, httpsPort] = [await freePort(), await freePort()];
  const accessLog = path.join(dir, "logs/access.log");
  const site = renderTemplate(await readFile(TEMPLATE_FILE, "utf8"), {
    COALESCE_API_UPSTREAM: upstreams,
    COALESCE_HTTP_PORT: `127.0.0.1:${httpPort}`,
    COALESCE_HTTPS_PORT: `127.0.0.1:${httpsPort}`,
    COALESCE_PUBLIC_HTTPS_PORT: String(httpsPort),
    COALESCE_TLS_CERT: cert,
    COALESCE_TLS_KEY: key,
    COALESCE_MAX_BODY_SIZE: String(options.maxBodySize ?? 4096 * 1024 * 1024),
    COALESCE_ACCESS_LOG: accessLog,
  });
  await writeFile(path.join(dir, "coalesce.conf"), site);
  // What the official image's /etc/nginx/nginx.conf gives the site file; the temp paths are this run's,
  // since Debian's defaults under /var/lib/nginx need root.
  const temp = (name: string) => path.join(dir, "temp", name);
  await writeFile(
    path.join(dir, "nginx.conf"),
    [
      "daemon off;",
      "worker_processes 1;",
      `pid ${path.join(dir, "nginx.pid")};`,
      `error_log ${path.join(dir, "logs/error.log")} warn;`,
      "events { worker_connections 1024; }",
      "http {",
      "  default_type application/octet-stream;",
      `  client_body_temp_path ${temp("body")}; proxy_temp_path ${temp("proxy")}; fastcgi_temp_path ${temp("fastcgi")};`,
      `  uwsgi_temp_path ${temp("uwsgi")}; scgi_temp_path ${temp("scgi")};`,
      `  include ${path.join(dir, "coalesce.conf")};`,
      "}",
      "",
    ].join("\n"),
  );
  const args = ["-p", dir, "-c", path.join(dir, "nginx.conf"), "-e", path.join(dir, "logs/error.log")];
  const check = spawnSync(NGINX_BINARY, [...args, "-t"], { encoding: "utf8" });
  if (check.status !== 0) throw new Error(`nginx -t refused the rendered template:\n${check.stderr}`);
  const child = spawn(NGINX_BINARY, args, { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout?.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const httpsUrl = `https://127.0.0.1:${httpsPort}`;
  await waitForPort(httpsPort, child, () => output);
  return {
    httpsUrl,
    httpUrl: `http://127.0.0.1:${httpPort}`,
    httpsPort,
    ca: await readFile(cert, "utf8"),
    accessLog,
    child,
    output: () => output,
    async accessLines() {
      const text = await readFile(accessLog, "utf8").catch(() => "");
      return text.split("\n").filter((line) => line !== "");
    },
    async stop() {
      // SIGQUIT is nginx's graceful stop; SIGTERM its fast one, which is all a test needs.
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function waitForPort(port: number, child: ChildProcess, output: () => string): Promise<void> {
  const { connect } = await import("node:net");
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`nginx exited with code ${child.exitCode}:\n${output()}`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, "127.0.0.1", () => {
        socket.end();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`nginx did not listen on ${port} within 10 s:\n${output()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
