// The `coalesce` command as a user runs it: a child process talking to real API and worker
// processes (started as `npm start` starts them) on this test's own schema and queue prefix.
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { createClient, type CoalesceClient } from "@coalesce/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, stopProcess, type ServiceProcess } from "../../scripts/processes.ts";
import { runCli, startCliServices, type CliRun } from "../support/cli.ts";
import { readReference } from "../support/fixtures.ts";
import { irisRows } from "../support/http.ts";
import { createTestServices, TEST_WEBHOOK_ENV, type TestServices } from "../support/services.ts";
import { verifyWebhook, WebhookReceiver } from "../support/webhook-receiver.ts";

const KEY = "csk_cli_0123456789abcdef";
let services: TestServices;
let processes: ServiceProcess[] = [];
let baseUrl: string;
let client: CoalesceClient;
let tmp: string;
let output: () => string;

type Run = CliRun;

/** `coalesce ...args` from the repository root, pointed at the test's API unless `env` says otherwise. */
function coalesce(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return runCli(args, { COALESCE_URL: baseUrl, COALESCE_API_KEY: KEY, ...env });
}

/** What a user sees of a failure: exit 1, one `error:` line first, never a stack trace. */
function expectFailure(run: Run, message: string): void {
  expect(run.code, run.stderr).toBe(1);
  expect(run.stderr).toContain(`error: ${message}`);
  expect(run.stderr).not.toMatch(/\n\s+at /);
}

beforeAll(async () => {
  services = await createTestServices();
  tmp = await mkdtemp(path.join(tmpdir(), "coalesce-cli-"));
  ({ baseUrl, processes, output } = await startCliServices({ ...services.env, ...TEST_WEBHOOK_ENV, BOOTSTRAP_API_KEY: KEY, MAX_BATCH_DELAY_MS: "20" }));
  client = createClient({ baseUrl, apiKey: KEY });
});

afterAll(async () => {
  await Promise.all(processes.map((service) => stopProcess(service)));
  await services?.cleanup();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe("coalesce against running API and worker processes", () => {
  it("models push registers a model and prints its signature", async () => {
    const run = await coalesce(["models", "push", "iris", "fixtures/iris.onnx"]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain("iris version 1");
    expect(run.stdout).toContain("features float32[batch,4]");
    expect(run.stdout).toMatch(/probabilities float32\[batch,3\], label int64\[batch\]/);
  });

  it("models list shows it", async () => {
    const run = await coalesce(["models", "list"]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout.split("\n")[0]).toMatch(/^NAME\s+LATEST\s+ALIASES\s+INPUTS\s+OUTPUTS$/);
    expect(run.stdout).toMatch(/^iris\s+1\s+-\s+features float32\[batch,4\]/m);
  });

  it("models batching sets a version's limits, and --default puts them back", async () => {
    const set = await coalesce(["models", "batching", "iris@1", "--max-rows", "64", "--max-delay-ms", "2"]);
    expect(set.code, set.stderr).toBe(0);
    expect(set.stdout.trim()).toBe("iris version 1: max rows 64, max delay 2 ms, max bytes worker default");
    const reset = await coalesce(["models", "batching", "iris@1", "--default"]);
    expect(reset.stdout.trim()).toBe("iris version 1: max rows worker default, max delay worker default, max bytes worker default");
    const noVersion = await coalesce(["models", "batching", "iris", "--max-rows", "8"]);
    expect(noVersion.code).toBe(2);
    expect(noVersion.stderr).toContain("NAME@VERSION");
  });

  it("status and results of a job submitted as JSON through the client", async () => {
    const submitted = await client.createJob({ model: "iris", inputs: irisRows(10) });
    const job = await client.waitForJob(submitted.id, { intervalMs: 100, timeoutMs: 60_000 });
    expect(job.status, output()).toBe("succeeded");

    const status = await coalesce(["status", job.id]);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toMatch(new RegExp(`^job\\s+${job.id}$`, "m"));
    expect(status.stdout).toMatch(/^status\s+succeeded$/m);
    expect(status.stdout).toMatch(/^rows\s+10: 10 scored, 0 failed$/m);
    expect(status.stdout).toMatch(/^ran on\s+cpu, in onnxruntime runs of \d+-\d+ rows/m);

    const json = await coalesce(["status", job.id, "--json"]);
    expect(JSON.parse(json.stdout)).toMatchObject({ id: job.id, status: "succeeded", counts: { total: 10, succeeded: 10, failed: 0 } });

    const results = await coalesce(["results", job.id, "--format", "ndjson"]);
    expect(results.code, results.stderr).toBe(0);
    expect(results.stderr).toBe("");
    const rows = results.stdout.trim().split("\n").map((line) => JSON.parse(line) as { index: number; outputs: { label: number } });
    const reference = await readReference("iris");
    expect(rows.map((row) => row.index)).toEqual([...Array(10).keys()]);
    expect(rows.map((row) => row.outputs.label)).toEqual(reference.slice(0, 10).map((row) => row.label));

    const list = await coalesce(["jobs", "list"]);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(new RegExp(`^${job.id}\\s+succeeded\\s+iris@1\\s+10\\s+0\\s+100%`, "m"));

    // A finished job cannot be cancelled: the API's 409 comes through as one line.
    const cancel = await coalesce(["cancel", job.id]);
    expect(cancel.code).toBe(1);
    expect(cancel.stderr).toContain("has already finished");
  });

  it("submit uploads a CSV, waits with progress and writes the results file", async () => {
    const out = path.join(tmp, "results.csv");
    const run = await coalesce(["submit", "fixtures/iris.csv", "--model", "iris", "--id-column", "row_id", "--ignore", "target", "--wait", "--out", out]);
    expect(run.code, `${run.stderr}\n${output()}`).toBe(0);
    const jobId = run.stdout.trim();
    expect(jobId).toMatch(/^job_\w+$/);
    expect(run.stderr).toMatch(/uploaded .* job job_\w+ \w+, 150 rows for iris@1/);
    expect(run.stderr).toContain(`job ${jobId} succeeded: 150 rows (150 scored, 0 failed)`);
    expect(run.stderr).toContain(`results: ${out} (csv,`);

    const [header, ...lines] = (await readFile(out, "utf8")).trim().split("\n");
    expect(header).toBe("row_id,probabilities_0,probabilities_1,probabilities_2,label,error");
    const reference = await readReference("iris");
    expect(lines).toHaveLength(reference.length);
    lines.forEach((line, i) => {
      const cells = line.split(",");
      expect(cells[0]).toBe(String(reference[i]?.row_id));
      expect(Number(cells[4])).toBe(reference[i]?.label);
      expect(cells[5]).toBe("");
    });
    await expect(stat(`${out}.part`)).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("webhooks: add an endpoint, receive a signed event, list deliveries, redeliver, remove", async () => {
    const receiver = await WebhookReceiver.start();
    try {
      const added = await coalesce(["webhooks", "add", receiver.url, "--events", "job.succeeded"]);
      expect(added.code, added.stderr).toBe(0);
      const [id = "", secretLine = ""] = added.stdout.trim().split("\n");
      expect(id).toMatch(/^wh_\w+$/);
      const secret = secretLine.replace(/^secret: /, "");
      expect((await coalesce(["webhooks", "list"])).stdout).toContain(receiver.url);

      const submitted = await coalesce(["submit", "fixtures/iris.csv", "--model", "iris", "--ignore", "row_id,target", "--wait", "--webhook-url", receiver.url]);
      expect(submitted.code, submitted.stderr).toBe(0);
      const jobId = submitted.stdout.trim();
      // One delivery to the endpoint (its secret), one to the job's own URL (the default secret).
      const received = await receiver.waitFor((r) => r.length >= 2);
      const defaultSecret = (await coalesce(["webhooks", "secret"])).stdout.trim();
      const bySecret = received.map((r) => {
        try {
          return (verifyWebhook(secret, r), "endpoint");
        } catch {
          return (verifyWebhook(defaultSecret, r), "job");
        }
      });
      expect(bySecret.sort()).toEqual(["endpoint", "job"]);

      let deliveries = await coalesce(["webhooks", "deliveries", jobId]);
      for (let i = 0; i < 100 && (deliveries.stdout.match(/succeeded/g) ?? []).length < 2; i++) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        deliveries = await coalesce(["webhooks", "deliveries", jobId]);
      }
      expect(deliveries.stdout).toMatch(/dlv_\w+ +job\.succeeded +succeeded/);
      expect(deliveries.stdout).toMatch(/#1 .* 200 \d+ ms/);
      const deliveryId = /dlv_\w+/.exec(deliveries.stdout)?.[0] ?? "";
      expect((await coalesce(["webhooks", "redeliver", deliveryId])).code).toBe(0);
      await receiver.waitFor((r) => r.length >= 3);

      expect((await coalesce(["webhooks", "rm", id])).code).toBe(0);
      expect((await coalesce(["webhooks", "list"])).stderr).toContain("no webhook endpoints");
    } finally {
      await receiver.down();
    }
  });
});

describe("coalesce says what is wrong", () => {
  it("when nothing listens at COALESCE_URL", async () => {
    const url = `http://127.0.0.1:${await freePort()}`;
    const run = await coalesce(["models", "list"], { COALESCE_URL: url });
    expectFailure(run, `cannot reach Coalesce at ${url}: is it running? Start it with \`npm start\`, or set COALESCE_URL`);
  });

  it("when the API key is wrong or missing, from the environment or --api-key", async () => {
    const refused = "the API key was refused (401): set COALESCE_API_KEY or pass --api-key";
    expectFailure(await coalesce(["models", "list"], { COALESCE_API_KEY: "csk_not_a_real_key" }), refused);
    expectFailure(await coalesce(["jobs", "list"], { COALESCE_API_KEY: "" }), refused);
    expectFailure(await coalesce(["models", "list", "--api-key", "csk_wrong"]), refused);
  });

  it("when the model does not exist", async () => {
    const run = await coalesce(["submit", "fixtures/iris.csv", "--model", "nope", "--ignore", "target"]);
    expectFailure(run, "no model named 'nope'");
    expect(run.stdout).toBe("");
  });

  it("when the CSV's header cannot feed the model (422), with the fields", async () => {
    const unknownColumn = await coalesce(["submit", "fixtures/iris.csv", "--model", "iris", "--map", "features=row_id,nope"]);
    expectFailure(unknownColumn, "map.features: no column 'nope' in the header");
    // Two mistakes: the detail, then one line per field.
    const twoMistakes = await coalesce(["submit", "fixtures/iris.csv", "--model", "iris", "--map", "features=nope", "--map", "mask=gone"]);
    expect(twoMistakes.code, twoMistakes.stderr).toBe(1);
    const lines = twoMistakes.stderr.trim().split("\n");
    expect(lines[0]).toMatch(/^error: \S/);
    expect(lines.slice(1).length, twoMistakes.stderr).toBeGreaterThanOrEqual(2);
    expect(lines.slice(1).every((line) => /^ {2}\S+: \S/.test(line))).toBe(true);
  });

  it("when the input file is missing", async () => {
    expectFailure(await coalesce(["submit", "no-such.csv", "--model", "iris"]), "cannot read no-such.csv: no such file");
    expectFailure(await coalesce(["models", "push", "iris", "no-such.onnx"]), "cannot read no-such.onnx: no such file");
  });

  it("usage mistakes exit 2 and point at the help", async () => {
    const noModel = await coalesce(["submit", "fixtures/iris.csv"]);
    expect(noModel.code).toBe(2);
    expect(noModel.stderr).toContain("error: --model is required");
    expect(noModel.stderr).toContain("coalesce submit --help");
    const unknown = await coalesce(["frobnicate"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("unknown command 'frobnicate'");
    const badFormat = await coalesce(["results", "job_x", "--format", "xml"]);
    expect(badFormat.code).toBe(2);
  });

  it("--help lists the commands, and each command has its own", async () => {
    const help = await coalesce(["--help"]);
    expect(help.code).toBe(0);
    for (const command of ["submit", "status", "results", "predict", "models push", "models list", "models batching", "jobs list"]) {
      expect(help.stdout).toContain(`  ${command} `);
    }
    const submitHelp = await coalesce(["submit", "--help"]);
    expect(submitHelp.code).toBe(0);
    expect(submitHelp.stdout).toMatch(/^Usage: coalesce submit FILE --model/);
  });
});
