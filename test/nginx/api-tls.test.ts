// The API's own TLS (TLS_CERT_FILE, TLS_KEY_FILE), for a deployment without a proxy in front: the real
// process serves HTTPS with a certificate made here by openssl, and refuses to start with a bad pair.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Agent, fetch } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { API_MAIN, freePort, startProcess, stopProcess, type ServiceProcess } from "../../scripts/processes.ts";
import { createTestServices, type TestServices } from "../support/services.ts";
import { makeSelfSignedCert, missingTools } from "./nginx.ts";

const NO_OPENSSL = missingTools()?.includes("openssl") ? "the openssl CLI is missing (apt-get install -y openssl)" : null;
if (NO_OPENSSL) console.warn(`skipping the API's TLS tests: ${NO_OPENSSL}`);

describe.skipIf(NO_OPENSSL !== null)("the API serving HTTPS itself", () => {
  let services: TestServices;
  let dir: string;
  let pair: { cert: string; key: string };
  const processes: ServiceProcess[] = [];

  function start(env: Record<string, string>): { api: ServiceProcess; output: () => string } {
    const api = startProcess("api", API_MAIN, { ...services.env, HOST: "127.0.0.1", MIGRATE_ON_START: "false", LOG_LEVEL: "info", ...env }, "pipe");
    processes.push(api);
    let output = "";
    api.child.stdout?.on("data", (chunk: Buffer) => (output += chunk.toString()));
    api.child.stderr?.on("data", (chunk: Buffer) => (output += chunk.toString()));
    return { api, output: () => output };
  }

  beforeAll(async () => {
    services = await createTestServices();
    dir = await mkdtemp(path.join(tmpdir(), "coalesce-api-tls-"));
    pair = await makeSelfSignedCert(dir);
  }, 60_000);

  afterAll(async () => {
    await Promise.all(processes.map((service) => stopProcess(service)));
    await services?.cleanup();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("answers over HTTPS with the certificate it was given, and not over plain HTTP", async () => {
    const port = await freePort();
    const { api, output } = start({ PORT: String(port), TLS_CERT_FILE: pair.cert, TLS_KEY_FILE: pair.key });
    const { readFile } = await import("node:fs/promises");
    const agent = new Agent({ connect: { ca: await readFile(pair.cert, "utf8") } });
    try {
      const deadline = Date.now() + 60_000;
      let ready: { status: number; body: unknown } | null = null;
      while (!ready) {
        if (api.child.exitCode !== null) throw new Error(`api exited: ${output()}`);
        try {
          const response = await fetch(`https://localhost:${port}/readyz`, { dispatcher: agent });
          ready = { status: response.status, body: await response.json() };
        } catch {
          if (Date.now() > deadline) throw new Error(`no HTTPS answer within 60 s: ${output()}`);
          await new Promise((resolve) => setTimeout(resolve, 200));
        }
      }
      expect(ready.status).toBe(200);
      expect(output()).toContain(`api listening on https://127.0.0.1:${port}`);
      // The certificate is checked (it names localhost and 127.0.0.1): a client that does not trust it is refused.
      await expect(fetch(`https://localhost:${port}/healthz`)).rejects.toThrow();
      await expect(fetch(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow();
    } finally {
      await agent.close();
    }
  }, 90_000);

  it("refuses to start with a key file it cannot read, naming the variable and the file", async () => {
    const missing = path.join(dir, "missing.key");
    const { api, output } = start({ PORT: String(await freePort()), TLS_CERT_FILE: pair.cert, TLS_KEY_FILE: missing });
    expect(await api.exited).toBe(1);
    expect(output()).toContain(`TLS_KEY_FILE: cannot read ${missing} (ENOENT)`);
  }, 60_000);
});
