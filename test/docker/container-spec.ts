// What a container of a docker/compose.yaml service would run, read from the compose file and the
// Dockerfile, so tests can run the same command with the same environment without a Docker engine.
import { readFile } from "node:fs/promises";
import path from "node:path";
import { parse } from "yaml";
import { ROOT } from "../../scripts/processes.ts";

export const COMPOSE_FILE = path.join(ROOT, "docker/compose.yaml");

export type ComposeService = {
  build?: { context?: string; dockerfile?: string; target?: string };
  healthcheck?: { test?: string[] };
  command?: string[] | string;
  environment?: Record<string, string | number | boolean | null>;
  ports?: unknown[];
  container_name?: string;
  deploy?: unknown;
};
export type ComposeFile = { services: Record<string, ComposeService> };

/**
 * Compose's variable substitution with nothing set in the environment, i.e. the defaults a plain
 * `docker compose up` uses: `${VAR:-default}`, `${VAR-default}`, `${VAR}` (empty) and `$$`.
 */
export function interpolateDefaults(text: string): string {
  return text.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}|\$[A-Za-z_{]/g, (match, _name, operator, fallback) => {
    if (match === "$$") return "$";
    if (operator === undefined && match.startsWith("${")) return "";
    if (operator !== undefined) return fallback as string;
    throw new Error(`compose.yaml: unsupported substitution near ${match}`);
  });
}

/** docker/compose.yaml as compose reads it with no variables set (anchors and `<<` merges resolved). */
export async function readComposeFile(): Promise<ComposeFile> {
  return parse(interpolateDefaults(await readFile(COMPOSE_FILE, "utf8")), { merge: true }) as ComposeFile;
}

type Stage = { name: string | undefined; from: string; env: Record<string, string>; workdir?: string; cmd?: string[] };

/** The Dockerfile's stages with the instructions a container inherits: ENV, WORKDIR, CMD. */
export function parseDockerfile(text: string): Stage[] {
  const instructions = text
    .replace(/\\\r?\n(?:\s*#.*\r?\n)*/g, " ") // continuation lines (comment lines inside them are dropped)
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"));
  const stages: Stage[] = [];
  for (const line of instructions) {
    const [, keyword = "", rest = ""] = /^(\S+)\s*(.*)$/.exec(line) ?? [];
    const stage = stages.at(-1);
    switch (keyword.toUpperCase()) {
      case "FROM": {
        const [from = "", as, name] = rest.split(/\s+/);
        stages.push({ name: as?.toUpperCase() === "AS" ? name : undefined, from, env: {} });
        break;
      }
      case "ENV":
        for (const [, key = "", quoted, bare] of rest.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=(?:"([^"]*)"|(\S*))/g)) {
          stage!.env[key] = quoted ?? bare ?? "";
        }
        break;
      case "WORKDIR":
        stage!.workdir = rest;
        break;
      case "CMD":
        if (!rest.startsWith("[")) throw new Error(`Dockerfile: write CMD in exec form (JSON), not \`${line}\``);
        stage!.cmd = JSON.parse(rest) as string[];
        break;
    }
  }
  return stages;
}

export type ContainerSpec = { argv: string[]; env: Record<string, string>; workdir: string };

/** Follows a target stage back through the stages it is built FROM, as the image inherits them. */
export function resolveTarget(stages: Stage[], target: string): ContainerSpec {
  const chain: Stage[] = [];
  for (let name: string | undefined = target; name !== undefined; ) {
    const stage = stages.find((candidate) => candidate.name === name);
    if (!stage) break;
    chain.unshift(stage);
    name = stage.from;
  }
  if (chain.length === 0) throw new Error(`Dockerfile has no stage named ${target}`);
  const spec: Partial<ContainerSpec> & { env: Record<string, string> } = { env: {} };
  for (const stage of chain) {
    Object.assign(spec.env, stage.env);
    if (stage.workdir) spec.workdir = stage.workdir;
    if (stage.cmd) spec.argv = stage.cmd;
  }
  if (!spec.argv || !spec.workdir) throw new Error(`Dockerfile target ${target} has no CMD or no WORKDIR`);
  return { argv: spec.argv, env: spec.env, workdir: spec.workdir };
}

/** What a container of `service` runs: compose's command, else its image's CMD; image ENV under compose's. */
export async function readContainerSpec(compose: ComposeFile, service: string): Promise<ContainerSpec> {
  const definition = compose.services[service];
  if (!definition?.build?.target) throw new Error(`compose.yaml: ${service} has no build target`);
  const dockerfile = path.resolve(path.dirname(COMPOSE_FILE), definition.build.context ?? ".", definition.build.dockerfile ?? "Dockerfile");
  const image = resolveTarget(parseDockerfile(await readFile(dockerfile, "utf8")), definition.build.target);
  const environment = Object.fromEntries(Object.entries(definition.environment ?? {}).map(([key, value]) => [key, String(value ?? "")]));
  const command = definition.command;
  if (typeof command === "string") throw new Error(`compose.yaml: write ${service}'s command as a list`);
  return { argv: command ?? image.argv, env: { ...image.env, ...environment }, workdir: image.workdir };
}
