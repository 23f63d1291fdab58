// deploy/k8s, checked without a cluster: each overlay is rendered by `kubectl kustomize` (the kubectl
// 1.20 that Debian ships embeds kustomize v2.0.3, so the manifests use only what it knows; a newer
// kubectl renders them the same), every object is validated against its kind's schema, and then the
// checks a schema cannot make: probes, resources and security on every container, selectors that
// select, ports that exist, the autoscalers' targets, and every variable a pod gets accepted by the
// app's own env.ts.
import { execFile, spawnSync } from "node:child_process";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject";
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { HorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler";
import { Ingress } from "kubernetes-models/networking.k8s.io/v1/Ingress";
import { NetworkPolicy } from "kubernetes-models/networking.k8s.io/v1/NetworkPolicy";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1/PodDisruptionBudget";
import { ConfigMap } from "kubernetes-models/v1/ConfigMap";
import { Namespace } from "kubernetes-models/v1/Namespace";
import { PersistentVolumeClaim } from "kubernetes-models/v1/PersistentVolumeClaim";
import { Secret } from "kubernetes-models/v1/Secret";
import { Service } from "kubernetes-models/v1/Service";
import type { IIoK8sApiCoreV1Container as Container } from "kubernetes-models/v1/Container";
import type { IIoK8sApiCoreV1PodSpec as PodSpec } from "kubernetes-models/v1/PodSpec";
import { beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { ApiEnvSchema, loadApiEnv } from "../../apps/api/src/env.ts";
import { WorkerEnvSchema, loadWorkerEnv } from "../../apps/worker/src/env.ts";
import { PROMETHEUS_RULE_FILE, renderPrometheusRules } from "../../deploy/k8s/prometheus-rule.ts";
import { ROOT } from "../../scripts/processes.ts";

const K8S_DIR = path.join(ROOT, "deploy", "k8s");
const OVERLAYS = ["dev", "production", "gpu"] as const;
type Overlay = (typeof OVERLAYS)[number];
const NAMESPACE = "coalesce";
/** The Secret the pods read; only the dev overlay generates it, elsewhere kubectl creates it (README.md). */
const SECRET_NAME = "coalesce-secrets";
/** Variables no env.ts reads: Node's own, and the NVIDIA Container Toolkit's and CUDA's. */
const NON_APP_VARIABLES = ["NODE_ENV", "NODE_OPTIONS", "NVIDIA_DRIVER_CAPABILITIES", "NVIDIA_VISIBLE_DEVICES", "CUDA_CACHE_PATH"];
/** apps/worker/src/main.ts: a worker still shutting down this long after SHUTDOWN_GRACE_MS exits anyway. */
const WORKER_HARD_STOP_MS = 15_000;
/** apps/api/src/routes/jobs/get.ts: the longest long-poll (`?wait=`). */
const MAX_WAIT_SECONDS = 60;

/** Set KUBECTL to try another binary (e.g. Debian's 1.20 unpacked somewhere) without touching PATH. */
const KUBECTL = process.env.KUBECTL ?? "kubectl";
const HAS_KUBECTL = spawnSync(KUBECTL, ["version", "--client"], { stdio: "ignore" }).status === 0;
// CI installs kubectl (.ci/run) and must run these checks; a developer machine without it skips them.
const SKIP = !HAS_KUBECTL && process.env.CI !== "true";
if (SKIP) console.warn(`${KUBECTL} is not installed: skipping the deploy/k8s checks (apt-get install -y kubernetes-client to run them)`);

type Meta = { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
type K8sObject = { apiVersion: string; kind: string; metadata: Meta; [field: string]: unknown };

/** Each kind the manifests may hold, by `apiVersion/kind`, with its schema. Anything else fails. */
const MODELS: Record<string, (data: never) => { validate(): void }> = {
  "v1/Namespace": (data) => new Namespace(data),
  "v1/ConfigMap": (data) => new ConfigMap(data),
  "v1/Secret": (data) => new Secret(data),
  "v1/Service": (data) => new Service(data),
  "v1/PersistentVolumeClaim": (data) => new PersistentVolumeClaim(data),
  "apps/v1/Deployment": (data) => new Deployment(data),
  "autoscaling/v2/HorizontalPodAutoscaler": (data) => new HorizontalPodAutoscaler(data),
  "policy/v1/PodDisruptionBudget": (data) => new PodDisruptionBudget(data),
  "networking.k8s.io/v1/Ingress": (data) => new Ingress(data),
  "networking.k8s.io/v1/NetworkPolicy": (data) => new NetworkPolicy(data),
  "keda.sh/v1alpha1/ScaledObject": (data) => new ScaledObject(data),
  "monitoring.coreos.com/v1/ServiceMonitor": (data) => new ServiceMonitor(data),
  "monitoring.coreos.com/v1/PrometheusRule": (data) => new PrometheusRule(data),
};

class Rendered {
  constructor(readonly objects: K8sObject[]) {}

  all<T>(kind: string): (K8sObject & T)[] {
    return this.objects.filter((object) => object.kind === kind) as (K8sObject & T)[];
  }

  one<T>(kind: string, name: string): K8sObject & T {
    const found = this.all<T>(kind).find((object) => object.metadata.name === name);
    if (!found) throw new Error(`no ${kind} '${name}' in the output`);
    return found;
  }

  deployments() {
    return this.all<{ spec: { replicas?: number; selector: { matchLabels: Record<string, string> }; template: { metadata: { labels: Record<string, string> }; spec: PodSpec } } }>("Deployment");
  }

  /** The Coalesce process a Deployment runs, from its component label. */
  app(name: "api" | "worker") {
    const found = this.deployments().find((d) => d.metadata.labels?.["app.kubernetes.io/component"] === name && d.metadata.labels["app.kubernetes.io/name"] === "coalesce");
    if (!found) throw new Error(`no Deployment for the ${name}`);
    return found;
  }

  /** A ConfigMap or Secret's data by the name a pod refers to it by (generated names carry a hash). */
  data(kind: "ConfigMap" | "Secret", name: string): Record<string, string> | undefined {
    const found = this.all<{ data?: Record<string, string> }>(kind).find((object) => object.metadata.name === name);
    if (!found) return undefined;
    const data = found.data ?? {};
    return kind === "Secret" ? Object.fromEntries(Object.entries(data).map(([key, value]) => [key, Buffer.from(value, "base64").toString("utf8")])) : data;
  }

  /** The environment a container starts with: its envFrom sources in order, then its own env. */
  async environment(container: Container): Promise<Record<string, string>> {
    const env: Record<string, string> = {};
    for (const source of container.envFrom ?? []) {
      const ref = source.configMapRef ?? source.secretRef;
      const kind = source.configMapRef ? "ConfigMap" : "Secret";
      let data = ref?.name ? this.data(kind, ref.name) : undefined;
      if (!data && kind === "Secret" && ref?.name === SECRET_NAME) data = await readExampleSecrets();
      if (!data) throw new Error(`container '${container.name}' reads ${kind} '${ref?.name}', which is not in the output`);
      Object.assign(env, data);
    }
    for (const variable of container.env ?? []) {
      const ref = variable.valueFrom?.secretKeyRef;
      if (ref) {
        const secret = ref.name ? this.data("Secret", ref.name) : undefined;
        const data = secret ?? (ref.name === SECRET_NAME ? await readExampleSecrets() : undefined);
        const value = data?.[ref.key];
        // An optional key may be missing: the variable is then left unset.
        if (value === undefined && ref.optional) continue;
        if (value === undefined) throw new Error(`${variable.name}: reads key '${ref.key}' of Secret '${ref.name}', which the output (or secrets.example.env) does not have`);
        env[variable.name] = value;
      } else if (variable.value !== undefined) {
        env[variable.name] = variable.value;
      } else {
        throw new Error(`${variable.name}: expected a value or a secretKeyRef`);
      }
    }
    return env;
  }
}

/** The documented Secret's keys with placeholder values (deploy/k8s/base/secrets.example.env). */
async function readExampleSecrets(): Promise<Record<string, string>> {
  const text = await readFile(path.join(K8S_DIR, "base", "secrets.example.env"), "utf8");
  return Object.fromEntries(
    text
      .split("\n")
      .filter((line) => line.trim() !== "" && !line.startsWith("#"))
      .map((line) => [line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1)]),
  );
}

async function render(overlay: Overlay): Promise<Rendered> {
  let stdout: string;
  try {
    ({ stdout } = await promisify(execFile)(KUBECTL, ["kustomize", path.join(K8S_DIR, "overlays", overlay)], { maxBuffer: 16 * 1024 * 1024 }));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") throw new Error(`${KUBECTL} is not on PATH: install it (apt-get install -y kubernetes-client)`);
    throw error;
  }
  const objects = parseAllDocuments(stdout)
    .map((document) => document.toJS() as K8sObject | null)
    .filter((object): object is K8sObject => object !== null);
  for (const object of objects) {
    // Newer kustomize folds long base64 values over lines (a YAML block scalar); the API server's
    // base64 decoder skips line breaks, the schema's `byte` format does not.
    if (object.kind === "Secret" && object.data) {
      object.data = Object.fromEntries(Object.entries(object.data as Record<string, string>).map(([key, value]) => [key, value.replace(/\s+/g, "")]));
    }
  }
  return new Rendered(objects);
}

function selects(selector: Record<string, string>, labels: Record<string, string> | undefined): boolean {
  return Object.entries(selector).every(([key, value]) => labels?.[key] === value);
}

function containerPorts(spec: PodSpec): { name?: string; containerPort: number }[] {
  return spec.containers.flatMap((container) => container.ports ?? []);
}

/** A `sizes` value as ingress-nginx reads it (`4096m`, `1g`, bytes). */
function parseNginxSize(text: string): number {
  const match = /^(\d+)([kmg]?)$/i.exec(text);
  if (!match) throw new Error(`'${text}' is not an nginx size`);
  return Number(match[1]) * { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[(match[2] ?? "").toLowerCase() as "" | "k" | "m" | "g"];
}

function preStopSleepSeconds(container: Container): number {
  const command = container.lifecycle?.preStop?.exec?.command ?? [];
  return command[0] === "sleep" ? Number(command[1]) : 0;
}

describe.skipIf(SKIP).each(OVERLAYS)("deploy/k8s/overlays/%s", (overlay) => {
  let rendered: Rendered;
  beforeAll(async () => {
    rendered = await render(overlay);
  });

  it("holds only known kinds, each valid against its schema, all in the coalesce namespace", () => {
    const problems: string[] = [];
    for (const object of rendered.objects) {
      const id = `${object.kind}/${object.metadata?.name}`;
      const model = MODELS[`${object.apiVersion}/${object.kind}`];
      if (!model) {
        problems.push(`${id}: ${object.apiVersion} ${object.kind} is not a kind this test knows; add its schema to MODELS`);
        continue;
      }
      try {
        model(object as never).validate();
      } catch (error) {
        problems.push(`${id}: ${(error as Error).message}`);
      }
      if (object.kind !== "Namespace" && object.metadata.namespace !== NAMESPACE) problems.push(`${id}: in namespace '${object.metadata.namespace}', expected '${NAMESPACE}'`);
    }
    expect(problems).toEqual([]);
    expect(rendered.objects.length).toBeGreaterThan(10);
  });

  it("gives every container resources, probes on its own ports, and a pinned image", () => {
    const problems: string[] = [];
    for (const deployment of rendered.deployments()) {
      const spec = deployment.spec.template.spec;
      const portNames = new Set(containerPorts(spec).map((port) => port.name));
      for (const container of spec.containers) {
        const id = `${deployment.metadata.name}/${container.name}`;
        const { requests, limits } = container.resources ?? {};
        if (!requests?.cpu || !requests.memory) problems.push(`${id}: needs CPU and memory requests`);
        if (!limits?.memory) problems.push(`${id}: needs a memory limit`);
        for (const probe of ["readinessProbe", "livenessProbe"] as const) {
          const handler = container[probe];
          if (!handler) problems.push(`${id}: has no ${probe}`);
          const port = handler?.httpGet?.port;
          if (typeof port === "string" && !portNames.has(port)) problems.push(`${id}: ${probe} names port '${port}', which no container declares`);
        }
        const image = container.image ?? "";
        const tag = /@sha256:|:([^/:]+)$/.exec(image);
        if (!tag || tag[1] === "latest") problems.push(`${id}: image '${image}' needs a tag other than latest (or a digest)`);
      }
    }
    expect(problems).toEqual([]);
  });

  it("runs Coalesce as a non-root user on a read-only root, writing only /tmp and the model store", async () => {
    for (const name of ["api", "worker"] as const) {
      const deployment = rendered.app(name);
      const pod = deployment.spec.template.spec;
      const container = pod.containers[0]!;
      expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, fsGroup: 1000 });
      expect(pod.securityContext?.runAsUser).toBeGreaterThan(0);
      expect(container.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } });
      const volume = (mountPath: string) => {
        const mount = container.volumeMounts?.find((m) => m.mountPath === mountPath);
        return { mount, volume: pod.volumes?.find((v) => v.name === mount?.name) };
      };
      expect(volume("/tmp").volume?.emptyDir, `${name}: /tmp from an emptyDir`).toBeDefined();
      const env = await rendered.environment(container);
      const store = volume(env.MODEL_STORE_DIR ?? "");
      expect(store.volume?.persistentVolumeClaim?.claimName, `${name}: MODEL_STORE_DIR on the shared claim`).toBe("coalesce-models");
      // The API writes uploaded models; workers only read them.
      expect(store.mount?.readOnly ?? false).toBe(name === "worker");
    }
    const claim = rendered.one<{ spec: { accessModes: string[] } }>("PersistentVolumeClaim", "coalesce-models");
    // Pods on many nodes share it; only the single-node dev cluster makes do with ReadWriteOnce.
    expect(claim.spec.accessModes).toEqual([overlay === "dev" ? "ReadWriteOnce" : "ReadWriteMany"]);
  });

  it("selects real pods and ports with every Deployment, Service, budget and monitor", () => {
    const problems: string[] = [];
    const pods = rendered.deployments().map((d) => ({ name: d.metadata.name, labels: d.spec.template.metadata.labels, spec: d.spec.template.spec }));
    for (const deployment of rendered.deployments()) {
      if (!selects(deployment.spec.selector.matchLabels, deployment.spec.template.metadata.labels)) problems.push(`Deployment/${deployment.metadata.name}: selector does not match its own pods`);
    }
    const services = rendered.all<{ spec: { selector: Record<string, string>; ports: { name: string; targetPort: string | number }[] } }>("Service");
    for (const service of services) {
      const targets = pods.filter((pod) => selects(service.spec.selector, pod.labels));
      if (targets.length !== 1) problems.push(`Service/${service.metadata.name}: selects ${targets.length} Deployments' pods, expected 1`);
      for (const port of service.spec.ports) {
        const found = targets.some((pod) => containerPorts(pod.spec).some((p) => (typeof port.targetPort === "number" ? p.containerPort === port.targetPort : p.name === port.targetPort)));
        if (!found) problems.push(`Service/${service.metadata.name}: port '${port.name}' targets ${port.targetPort}, which its pods do not declare`);
      }
    }
    for (const budget of rendered.all<{ spec: { selector: { matchLabels: Record<string, string> } } }>("PodDisruptionBudget")) {
      if (!pods.some((pod) => selects(budget.spec.selector.matchLabels, pod.labels))) problems.push(`PodDisruptionBudget/${budget.metadata.name}: selects no pods`);
    }
    expect(rendered.all("PodDisruptionBudget").map((b) => b.metadata.name)).toContain("coalesce-api");
    // Each NetworkPolicy selects pods, and the ports it opens are ports those pods declare.
    type Policy = { spec: { podSelector: { matchLabels: Record<string, string> }; ingress: { ports: { port: string | number }[] }[] } };
    for (const policy of rendered.all<Policy>("NetworkPolicy")) {
      const selected = pods.filter((pod) => selects(policy.spec.podSelector.matchLabels, pod.labels));
      if (selected.length === 0) problems.push(`NetworkPolicy/${policy.metadata.name}: selects no pods`);
      for (const { port } of policy.spec.ingress.flatMap((rule) => rule.ports)) {
        const declared = selected.every((pod) => containerPorts(pod.spec).some((p) => (typeof port === "number" ? p.containerPort === port : p.name === port)));
        if (!declared) problems.push(`NetworkPolicy/${policy.metadata.name}: opens port ${port}, which its pods do not all declare`);
      }
    }
    // The API trusts X-Forwarded-For (TRUST_PROXY): only the ingress controller may reach its port.
    expect(rendered.all("NetworkPolicy").map((p) => p.metadata.name).sort()).toEqual(["coalesce-api", "coalesce-worker"]);
    // The ServiceMonitor scrapes the API and the workers, by Service names that are the scrape jobs
    // deploy/prometheus/rules expect (`job="coalesce-api"`, `job="coalesce-worker"`).
    const monitor = rendered.one<{ spec: { selector: { matchLabels: Record<string, string> }; endpoints: { port: string }[] } }>("ServiceMonitor", "coalesce");
    const scraped = services.filter((service) => selects(monitor.spec.selector.matchLabels, service.metadata.labels));
    expect(scraped.map((service) => service.metadata.name).sort()).toEqual(["coalesce-api", "coalesce-worker"]);
    for (const service of scraped) {
      for (const endpoint of monitor.spec.endpoints) {
        if (!service.spec.ports.some((port) => port.name === endpoint.port)) problems.push(`Service/${service.metadata.name}: has no port '${endpoint.port}' for the ServiceMonitor`);
      }
    }
    expect(problems).toEqual([]);
  });

  it("feeds each app an environment its env.ts accepts, on the ports its Deployment declares", async () => {
    const api = rendered.app("api");
    const apiContainer = api.spec.template.spec.containers[0]!;
    const apiVariables = await rendered.environment(apiContainer);
    expect(Object.keys(apiVariables).filter((key) => !(key in ApiEnvSchema.shape) && !NON_APP_VARIABLES.includes(key))).toEqual([]);
    const apiEnv = loadApiEnv(apiVariables);
    const apiPorts = containerPorts(api.spec.template.spec);
    expect(apiPorts).toContainEqual({ name: "http", containerPort: apiEnv.PORT });
    expect(apiPorts).toContainEqual({ name: "metrics", containerPort: apiEnv.API_METRICS_PORT });
    // Probes and scrapes come from other hosts.
    expect(apiEnv.HOST).toBe("0.0.0.0");
    expect(apiEnv.METRICS_HOST).toBe("0.0.0.0");

    const worker = rendered.app("worker");
    const workerContainer = worker.spec.template.spec.containers[0]!;
    const workerVariables = await rendered.environment(workerContainer);
    expect(Object.keys(workerVariables).filter((key) => !(key in WorkerEnvSchema.shape) && !NON_APP_VARIABLES.includes(key))).toEqual([]);
    const workerEnv = loadWorkerEnv(workerVariables);
    expect(containerPorts(worker.spec.template.spec)).toContainEqual({ name: "metrics", containerPort: workerEnv.METRICS_PORT });
    expect(workerEnv.METRICS_HOST).toBe("0.0.0.0");
    // Both read the same queues and the same model store.
    expect(workerEnv.QUEUE_PREFIX).toBe(apiEnv.QUEUE_PREFIX);
    expect(workerEnv.MODEL_STORE_DIR).toBe(apiEnv.MODEL_STORE_DIR);
    // The dev overlay's development key is refused in production; elsewhere NODE_ENV says production.
    expect(apiEnv.NODE_ENV).toBe(overlay === "dev" ? "development" : "production");
  });

  it("terminates gracefully: endpoints drop before SIGTERM, and SIGKILL waits for the drain", async () => {
    const api = rendered.app("api");
    const apiContainer = api.spec.template.spec.containers[0]!;
    const preStop = preStopSleepSeconds(apiContainer);
    expect(preStop).toBeGreaterThanOrEqual(5);
    expect(api.spec.template.spec.terminationGracePeriodSeconds).toBeGreaterThan(preStop + MAX_WAIT_SECONDS);

    const worker = rendered.app("worker");
    const workerContainer = worker.spec.template.spec.containers[0]!;
    const workerEnv = loadWorkerEnv(await rendered.environment(workerContainer));
    const drainSeconds = (workerEnv.SHUTDOWN_GRACE_MS + WORKER_HARD_STOP_MS) / 1000 + preStopSleepSeconds(workerContainer);
    expect(worker.spec.template.spec.terminationGracePeriodSeconds).toBeGreaterThan(drainSeconds);
  });

  it("lets the autoscalers own the replica counts: HPA for the API on CPU, KEDA for the workers on queue depth", async () => {
    const api = rendered.app("api");
    const worker = rendered.app("worker");
    // A `replicas` field would be reset by every apply, fighting the autoscaler.
    expect(api.spec.replicas).toBeUndefined();
    expect(worker.spec.replicas).toBeUndefined();

    const hpa = rendered.one<{ spec: { scaleTargetRef: { kind: string; name: string }; minReplicas: number; metrics: { resource?: { name: string } }[] } }>("HorizontalPodAutoscaler", "coalesce-api");
    expect(hpa.spec.scaleTargetRef).toMatchObject({ kind: "Deployment", name: api.metadata.name });
    expect(hpa.spec.minReplicas).toBe(overlay === "dev" ? 1 : 3);
    expect(hpa.spec.metrics.map((metric) => metric.resource?.name)).toEqual(["cpu"]);

    const scaled = rendered.one<{ spec: { scaleTargetRef: { kind?: string; name: string }; minReplicaCount: number; triggers: { type: string; metadata: Record<string, string> }[] } }>("ScaledObject", "coalesce-worker");
    expect(scaled.spec.scaleTargetRef.name).toBe(worker.metadata.name);
    expect(scaled.spec.scaleTargetRef.kind ?? "Deployment").toBe("Deployment");
    // Predict requests need a live worker: never scaled to zero.
    expect(scaled.spec.minReplicaCount).toBeGreaterThanOrEqual(1);
    // Every chunk has a priority, so BullMQ's wait list is always empty: a Redis list scaler would read 0.
    expect(scaled.spec.triggers.map((trigger) => trigger.type)).not.toContain("redis");
    const queue = scaled.spec.triggers.find((trigger) => trigger.type === "prometheus");
    expect(queue?.metadata.query).toContain("coalesce_queue_jobs");
    expect(queue?.metadata.query).toContain("prioritized");
    expect(queue?.metadata.query).toContain(`namespace="${scaled.metadata.namespace}"`);
    const workerEnv = loadWorkerEnv(await rendered.environment(worker.spec.template.spec.containers[0]!));
    expect(Number(queue?.metadata.threshold)).toBe(workerEnv.WORKER_CONCURRENCY);
  });

  it("serves the API over TLS through ingress-nginx, with limits and timeouts that fit the API's", async () => {
    const ingress = rendered.one<{ spec: { ingressClassName: string; tls: { hosts: string[]; secretName: string }[]; rules: { host: string; http: { paths: { backend: { service: { name: string; port: { name: string } } } }[] } }[] } }>("Ingress", "coalesce-api");
    const annotation = (key: string) => ingress.metadata.annotations?.[`nginx.ingress.kubernetes.io/${key}`];
    expect(ingress.spec.ingressClassName).toBe("nginx");
    const tlsHosts = ingress.spec.tls.flatMap((tls) => tls.hosts);
    for (const rule of ingress.spec.rules) {
      expect(tlsHosts).toContain(rule.host);
      for (const { backend } of rule.http.paths) {
        const service = rendered.one<{ spec: { ports: { name: string }[] } }>("Service", backend.service.name);
        expect(service.spec.ports.map((port) => port.name)).toContain(backend.service.port.name);
      }
    }
    expect(annotation("proxy-buffering")).toBe("off");
    expect(annotation("proxy-request-buffering")).toBe("off");
    const apiEnv = loadApiEnv(await rendered.environment(rendered.app("api").spec.template.spec.containers[0]!));
    const largestBody = Math.max(apiEnv.MAX_UPLOAD_BYTES, apiEnv.MAX_BODY_BYTES, apiEnv.MAX_MODEL_BYTES);
    expect(parseNginxSize(annotation("proxy-body-size") ?? "1m")).toBeGreaterThanOrEqual(largestBody);
    expect(Number(annotation("proxy-read-timeout"))).toBeGreaterThan(Math.max(MAX_WAIT_SECONDS, apiEnv.PREDICT_TIMEOUT_MS / 1000));
  });

  it(overlay === "gpu" ? "runs the workers on GPU nodes, one GPU each, CUDA first" : "asks for no GPU", async () => {
    const worker = rendered.app("worker");
    const pod = worker.spec.template.spec;
    const container = pod.containers[0]!;
    const gpus = container.resources?.limits?.["nvidia.com/gpu"];
    if (overlay !== "gpu") {
      expect(gpus).toBeUndefined();
      return;
    }
    expect(Number(gpus)).toBe(1);
    expect(container.image).toMatch(/coalesce-worker-gpu:/);
    const env = await rendered.environment(container);
    expect(loadWorkerEnv(env).EXECUTION_PROVIDERS).toEqual(["cuda", "webgpu", "cpu"]);
    expect(env.NVIDIA_DRIVER_CAPABILITIES?.split(",")).toEqual(expect.arrayContaining(["compute", "utility", "graphics"]));
    expect(pod.nodeSelector).toMatchObject({ "nvidia.com/gpu.present": "true" });
    expect(pod.tolerations).toContainEqual(expect.objectContaining({ key: "nvidia.com/gpu", effect: "NoSchedule" }));
  });
});

describe.skipIf(SKIP)("deploy/k8s checks", () => {
  it("refuses a ConfigMap value the app rejects", async () => {
    // The environment check above is only as good as env.ts is strict: show that it bites.
    const rendered = await render("production");
    const container = rendered.app("worker").spec.template.spec.containers[0]!;
    const env = await rendered.environment(container);
    expect(() => loadWorkerEnv({ ...env, EXECUTION_PROVIDERS: "cuda,tpu" })).toThrow(/EXECUTION_PROVIDERS/);
    expect(() => loadWorkerEnv({ ...env, WORKER_CONCURRENCY: "0" })).toThrow(/WORKER_CONCURRENCY/);
  });
});

describe("deploy/k8s/base/prometheus-rule.yaml", () => {
  it("holds the current deploy/prometheus/rules (else run: npx tsx deploy/k8s/prometheus-rule.ts)", async () => {
    const committed = await readFile(PROMETHEUS_RULE_FILE, "utf8");
    expect(committed).toBe(await renderPrometheusRules());
    for (const document of parseAllDocuments(committed)) {
      const rule = new PrometheusRule(document.toJS());
      rule.validate();
      expect(rule.spec?.groups?.length).toBeGreaterThan(0);
    }
  });

  it("documents every key of the Secret the pods read", async () => {
    const keys = Object.keys(await readExampleSecrets()).sort();
    expect(keys).toEqual(["BOOTSTRAP_API_KEY", "DATABASE_URL", "REDIS_URL"]);
    // The README's create-secret command names the same Secret the pods read.
    const readme = await readFile(path.join(K8S_DIR, "README.md"), "utf8");
    expect(readme).toContain(`create secret generic ${SECRET_NAME}`);
  });
});
