import type { PutAliasRequest } from "@coalesce/client";
import type { Alias, AliasComparison, AliasGuard, AliasHistoryEntry, AliasRouting } from "@coalesce/contracts";
import { expectPositionals, parseCommandArgs, parseVersionPair, parseWholeNumber, type OptionSpecs } from "../args.ts";
import type { Command } from "../command.ts";
import { EXIT_OK, UsageError } from "../errors.ts";
import { formatCount, formatJson, formatTable } from "../format.ts";

const SET = "models alias set";
const LIST = "models alias ls";
const GET = "models alias get";
const REMOVE = "models alias rm";
const ROLLBACK = "models alias rollback";
const HISTORY = "models alias history";
const COMPARISON = "models alias comparison";

const JSON_OPTION = { json: { type: "boolean" } } as const satisfies OptionSpecs;
const SET_OPTIONS = {
  canary: { type: "string", multiple: true },
  shadow: { type: "string" },
  guard: { type: "string", multiple: true },
  json: { type: "boolean" },
} as const satisfies OptionSpecs;
const HISTORY_OPTIONS = { limit: { type: "string" }, before: { type: "string" }, json: { type: "boolean" } } as const satisfies OptionSpecs;

const GUARD_KEYS = ["max_error_rate", "min_agreement", "min_rows", "compare_sample"] as const;
const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
const SET_EXAMPLE = "coalesce models alias set iris production 2 --canary 3=10";

/** `iris production` or `iris@production`, then the command's other positionals. */
function parseTarget(command: string, positionals: string[], rest: string[]): { name: string; alias: string; rest: string[] } {
  const [first = ""] = positionals;
  const at = first.indexOf("@");
  if (at > 0) {
    return { name: first.slice(0, at), alias: first.slice(at + 1), rest: expectPositionals(command, positionals.slice(1), rest) };
  }
  const [name = "", alias = "", ...others] = expectPositionals(command, positionals, ["NAME", "ALIAS", ...rest]);
  return { name, alias, rest: others };
}

/** A share from 0 to 1, written as one (`0.2`) or as a percentage (`20%`). */
function parseShare(command: string, option: string, text: string, example: string): number {
  const percent = text.endsWith("%");
  const number = percent ? text.slice(0, -1) : text;
  if (!NUMBER.test(number)) throw new UsageError(`${option}: '${text}' is not a number; e.g. ${option} ${example}`, command);
  return percent ? Number(number) / 100 : Number(number);
}

/** `--canary 3=10 --canary 4=5` with base 2 -> 2 at 85%, 3 at 10%, 4 at 5%. */
function buildRoutes(base: number, canaries: string[]): NonNullable<PutAliasRequest["routes"]> {
  const candidates = canaries.map((canary) => {
    const { version, value } = parseVersionPair(SET, "--canary", canary, "PERCENT", "3=10");
    if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > 99) {
      throw new UsageError(`--canary ${canary}: the weight is a whole percentage from 1 to 99, got '${value}'`, SET);
    }
    return { version, weight: Number(value) };
  });
  const taken = candidates.reduce((sum, route) => sum + route.weight, 0);
  if (taken >= 100) throw new UsageError(`the canaries take ${taken}% of the traffic, leaving none for version ${base}; give them less than 100% together`, SET);
  return [{ version: base, weight: 100 - taken }, ...candidates];
}

/** `--guard max_error_rate=0.01,min_agreement=0.98 --guard min_rows=1000` -> one guard. */
function buildGuard(values: string[]): NonNullable<PutAliasRequest["guard"]> {
  const guard: Record<string, number> = {};
  for (const item of values.flatMap((value) => value.split(",")).map((item) => item.trim()).filter((item) => item !== "")) {
    const match = /^([a-z_]+)=(.+)$/.exec(item);
    const key = match?.[1] ?? "";
    if (!match || !(GUARD_KEYS as readonly string[]).includes(key)) {
      throw new UsageError(`--guard takes KEY=VALUE with KEY one of ${GUARD_KEYS.join(", ")}, got '${item}'`, SET);
    }
    guard[key] = parseShare(SET, "--guard", match[2] ?? "", "max_error_rate=0.01");
  }
  return guard;
}

export const aliasSetCommand: Command = {
  name: SET,
  summary: "point an alias at a version, or split it: --canary, --shadow, --guard",
  options: SET_OPTIONS,
  help: `Usage: coalesce models alias set NAME ALIAS VERSION [--canary VERSION=PERCENT]... [--shadow VERSION=SAMPLE]
                                   [--guard KEY=VALUE[,KEY=VALUE...]] [--json]

Creates or changes the alias ALIAS of model NAME (jobs and predict requests name it as NAME@ALIAS; a
plain NAME means its production alias when it has one). VERSION alone takes all its traffic; each
--canary sends a whole percentage of it to another version, and VERSION keeps the rest. A job goes
whole to one version, a predict request per request; --routing-key on submit and predict sends the
same key to the same version.

Each set replaces the alias's whole routing: a shadow or guard not given again is removed. Every
version named must exist and take the same inputs and give the same outputs. The history keeps
every change (coalesce models alias history), and rollback steps back through it.

Options:
  --canary VERSION=PERCENT   send PERCENT (1-99) of the traffic to VERSION (repeatable)
  --shadow VERSION=SAMPLE    also score SAMPLE (0 < SAMPLE <= 1, or a percentage: 20%) of the rows
                             on VERSION, off the caller's path, and compare (models alias comparison)
  --guard KEY=VALUE,...      roll a candidate back by itself when it crosses a limit; keys:
                               max_error_rate   more than this share of its rows fail
                               min_agreement    fewer than this share agree with the stable version
                               min_rows         rows measured before judging (default 1000)
                               compare_sample   share of a canary's rows also scored on the stable
                                                version to measure agreement (default 0.1)
  --json                     print the alias as the API returns it

Examples:
  coalesce models alias set iris production 3
  ${SET_EXAMPLE}
  coalesce models alias set iris production 2 --canary 3=10 --guard max_error_rate=0.01,min_agreement=0.98,min_rows=1000
  coalesce models alias set iris production 2 --shadow 5=0.2`,

  async run(args, context) {
    const { values, positionals } = parseCommandArgs(SET, args, SET_OPTIONS);
    const [first = ""] = positionals;
    const given = first.includes("@") ? positionals.length - 1 : positionals.length - 2;
    if (given < 1 && values.canary) {
      throw new UsageError(`--canary splits the alias between a base VERSION and candidates: give the base first, e.g. ${SET_EXAMPLE}`, SET);
    }
    const { name, alias, rest } = parseTarget(SET, positionals, ["VERSION"]);
    const base = parseWholeNumber(SET, "VERSION", rest[0], 1) as number;
    const request: PutAliasRequest = values.canary ? { routes: buildRoutes(base, values.canary) } : { version: base };
    if (values.shadow !== undefined) {
      const { version, value } = parseVersionPair(SET, "--shadow", values.shadow, "SAMPLE", "5=0.2");
      request.shadow = { version, sample: parseShare(SET, "--shadow", value, "5=0.2") };
    }
    // The server fills in the guard's defaults and checks its ranges, naming the field.
    if (values.guard) request.guard = buildGuard(values.guard);
    const answer = await context.connect(values, SET).putAlias(name, alias, request);
    context.io.stdout.write(values.json ? formatJson(answer) : `${describeAlias(answer)}\n`);
    return EXIT_OK;
  },
};

export const aliasListCommand: Command = {
  name: LIST,
  summary: "list a model's aliases with their versions, weights, shadow and guard",
  options: JSON_OPTION,
  help: `Usage: coalesce models alias ls NAME [--json]

Lists the model's aliases: the versions each routes to with their weights, its shadow, its guard,
its revision (it grows with every change) and when it last changed.

Example:
  coalesce models alias ls iris`,

  async run(args, context) {
    const { values, positionals } = parseCommandArgs(LIST, args, JSON_OPTION);
    const [name = ""] = expectPositionals(LIST, positionals, ["NAME"]);
    const list = await context.connect(values, LIST).listAliases(name);
    if (values.json) {
      context.io.stdout.write(formatJson(list));
    } else if (list.data.length === 0) {
      context.io.stderr.write(`${name} has no aliases: make one with \`coalesce models alias set ${name} production VERSION\`\n`);
    } else {
      const rows = list.data.map((a) => [a.name, formatRoutes(a.routes), a.shadow ? formatShadow(a.shadow) : "-", a.guard ? formatGuard(a.guard) : "-", String(a.revision), a.updated_at]);
      context.io.stdout.write(`${formatTable(["ALIAS", "VERSIONS", "SHADOW", "GUARD", "REVISION", "UPDATED"], rows)}\n`);
    }
    return EXIT_OK;
  },
};

export const aliasGetCommand: Command = {
  name: GET,
  summary: "show an alias: its versions and weights, shadow and guard",
  options: JSON_OPTION,
  help: `Usage: coalesce models alias get NAME ALIAS [--json]

Shows the alias: each version it routes to with its role and share of the traffic (the first is the
stable version, the others candidates), its shadow, its guard and its revision.

Example:
  coalesce models alias get iris production`,

  async run(args, context) {
    const { values, positionals } = parseCommandArgs(GET, args, JSON_OPTION);
    const { name, alias } = parseTarget(GET, positionals, []);
    const answer = await context.connect(values, GET).getAlias(name, alias);
    context.io.stdout.write(values.json ? formatJson(answer) : `${describeAlias(answer)}\n`);
    return EXIT_OK;
  },
};

export const aliasRemoveCommand: Command = {
  name: REMOVE,
  summary: "delete an alias (its history stays)",
  options: {},
  help: `Usage: coalesce models alias rm NAME ALIAS

Deletes the alias: NAME@ALIAS is refused from now on (a plain NAME falls back to the latest version
when production is deleted). Its history stays, and coalesce models alias rollback brings it back.

Example:
  coalesce models alias rm iris canary`,

  async run(args, context) {
    const { values, positionals } = parseCommandArgs(REMOVE, args, {});
    const { name, alias } = parseTarget(REMOVE, positionals, []);
    await context.connect(values, REMOVE).deleteAlias(name, alias);
    context.io.stderr.write(`deleted ${name}@${alias} (coalesce models alias rollback ${name} ${alias} brings it back)\n`);
    return EXIT_OK;
  },
};

export const aliasRollbackCommand: Command = {
  name: ROLLBACK,
  summary: "put an alias back as it was before its last change",
  options: JSON_OPTION,
  help: `Usage: coalesce models alias rollback NAME ALIAS [--json]

Puts back the routing from before the alias's newest change not rolled back yet; each rollback steps
one change further back through the history (after rm, it brings the alias back). Prints the alias
as it now is.

Example:
  coalesce models alias rollback iris production`,

  async run(args, context) {
    const { values, positionals } = parseCommandArgs(ROLLBACK, args, JSON_OPTION);
    const { name, alias } = parseTarget(ROLLBACK, positionals, []);
    const answer = await context.connect(values, ROLLBACK).rollbackAlias(name, alias);
    context.io.stdout.write(values.json ? formatJson(answer) : `${describeAlias(answer)}\n`);
    return EXIT_OK;
  },
};

export const aliasHistoryCommand: Command = {
  name: HISTORY,
  summary: "every change of an alias: when, who, before -> after, why",
  options: HISTORY_OPTIONS,
  help: `Usage: coalesce models alias history NAME ALIAS [--limit N] [--before ID] [--json]

Lists the alias's changes, newest first: when, the action (set, delete, rollback, guard_rollback; a
change a later rollback stepped back over is marked undone), the API key that made it ("guard" for
the guard), the routing before -> after, and for a guard_rollback which figure crossed which limit.

Options:
  --limit N     changes per page (default 50, at most 200)
  --before ID   the page after the change with this ID (the last ID of the previous page)
  --json        print the page as the API returns it

Example:
  coalesce models alias history iris production`,

  async run(args, context) {
    const { values, positionals } = parseCommandArgs(HISTORY, args, HISTORY_OPTIONS);
    const { name, alias } = parseTarget(HISTORY, positionals, []);
    const limit = parseWholeNumber(HISTORY, "--limit", values.limit, 1);
    const page = await context.connect(values, HISTORY).aliasHistory(name, alias, {
      ...(limit === undefined ? {} : { limit }),
      ...(values.before === undefined ? {} : { before: values.before }),
    });
    if (values.json) {
      context.io.stdout.write(formatJson(page));
      return EXIT_OK;
    }
    if (page.data.length === 0) {
      context.io.stderr.write(values.before ? "no earlier changes\n" : `${name}@${alias} has no history: it was never set\n`);
      return EXIT_OK;
    }
    context.io.stdout.write(`${formatHistory(page.data)}\n`);
    const last = page.data.at(-1);
    if (last && page.data.length === (limit ?? 50)) context.io.stderr.write(`older changes: --before ${last.id}\n`);
    return EXIT_OK;
  },
};

export const aliasComparisonCommand: Command = {
  name: COMPARISON,
  summary: "how an alias's versions compare: rows, errors, run time, agreement",
  options: JSON_OPTION,
  help: `Usage: coalesce models alias comparison NAME ALIAS [--json]

Since the alias last changed: per version, the rows it scored for the alias (as a route or as the
shadow), their errors and mean run time per row; per pair of versions that scored the same rows (the
shadow beside the version that answered, or with a guarded canary the stable version beside the
candidate), the rows compared, the share that agree on the label or argmax, and each numeric
output's mean and largest absolute difference. Workers add their counts every second or so.

Example:
  coalesce models alias comparison iris production`,

  async run(args, context) {
    const { values, positionals } = parseCommandArgs(COMPARISON, args, JSON_OPTION);
    const { name, alias } = parseTarget(COMPARISON, positionals, []);
    const answer = await context.connect(values, COMPARISON).aliasComparison(name, alias);
    if (values.json) {
      context.io.stdout.write(formatJson(answer));
    } else if (answer.versions.length === 0) {
      context.io.stderr.write(`no rows scored through ${name}@${alias} since revision ${answer.revision} (workers add their counts every second or so)\n`);
    } else {
      context.io.stdout.write(`${formatComparison(answer)}\n`);
    }
    return EXIT_OK;
  },
};

export const ALIAS_COMMANDS = [
  aliasSetCommand,
  aliasListCommand,
  aliasGetCommand,
  aliasRemoveCommand,
  aliasRollbackCommand,
  aliasHistoryCommand,
  aliasComparisonCommand,
];

/** `1%`, `98.5%`, `0.25%`: a share as a percentage, to 3 significant digits. */
export function formatShare(share: number): string {
  return `${Number((share * 100).toPrecision(3))}%`;
}

/** `v3`, or `v2 90%, v3 10%` for a split. */
export function formatRoutes(routes: AliasRouting["routes"]): string {
  if (routes.length === 1 && routes[0]) return `v${routes[0].version}`;
  return routes.map((route) => `v${route.version} ${route.weight}%`).join(", ");
}

export function formatShadow(shadow: NonNullable<AliasRouting["shadow"]>): string {
  return `v${shadow.version} ${formatShare(shadow.sample)}`;
}

/** `error<=1%, agreement>=98%, min 1,000 rows` */
export function formatGuard(guard: AliasGuard): string {
  return [
    ...(guard.max_error_rate === undefined ? [] : [`error<=${formatShare(guard.max_error_rate)}`]),
    ...(guard.min_agreement === undefined ? [] : [`agreement>=${formatShare(guard.min_agreement)}`]),
    `min ${formatCount(guard.min_rows)} rows`,
  ].join(", ");
}

/** One routing in a few words: `v2 90%, v3 10% + shadow v5 20% + guard`; `none` before a creation or after a delete. */
export function formatRouting(routing: AliasRouting | null): string {
  if (!routing) return "none";
  return [formatRoutes(routing.routes), ...(routing.shadow ? [`shadow ${formatShadow(routing.shadow)}`] : []), ...(routing.guard ? ["guard"] : [])].join(" + ");
}

/** The alias, then a table of its versions with their role and traffic, then its guard. */
export function describeAlias(alias: Alias): string {
  const rows = alias.routes.map((route, i) => [
    String(route.version),
    alias.routes.length === 1 ? "all traffic" : i === 0 ? "stable" : "candidate",
    `${route.weight}%`,
  ]);
  if (alias.shadow) rows.push([String(alias.shadow.version), "shadow", `${formatShare(alias.shadow.sample)} of rows, also scored`]);
  const lines = [`${alias.model}@${alias.name}  revision ${alias.revision}, updated ${alias.updated_at}`, formatTable(["VERSION", "ROLE", "TRAFFIC"], rows)];
  if (alias.guard) {
    const compare = alias.routes.length > 1 && alias.guard.min_agreement !== undefined ? ` (comparing ${formatShare(alias.guard.compare_sample)} of candidate rows)` : "";
    lines.push(`guard: rolls a candidate back at ${formatGuard(alias.guard)}${compare}`);
  }
  return lines.join("\n");
}

/** `error rate 5% > 1% for v3 (route) over 1,200 rows` */
function formatReason(reason: NonNullable<AliasHistoryEntry["reason"]>): string {
  const figure = reason.figure === "error_rate" ? `error rate ${formatShare(reason.value)} > ${formatShare(reason.limit)}` : `agreement ${formatShare(reason.value)} < ${formatShare(reason.limit)}`;
  return `${figure} for v${reason.version} (${reason.role}) over ${formatCount(reason.rows)} rows`;
}

/** TIME, ACTION, BY, CHANGE (before -> after), REASON; the reason column only when some entry has one. */
export function formatHistory(entries: AliasHistoryEntry[]): string {
  const anyReason = entries.some((entry) => entry.reason);
  const rows = entries.map((entry) => [
    entry.at,
    entry.undone ? `${entry.action} (undone)` : entry.action,
    entry.key_id ?? "guard",
    `${formatRouting(entry.before)} -> ${formatRouting(entry.after)}`,
    ...(anyReason ? [entry.reason ? formatReason(entry.reason) : ""] : []),
  ]);
  return formatTable(["TIME", "ACTION", "BY", "CHANGE", ...(anyReason ? ["REASON"] : [])], rows);
}

function figure(value: number | null, unit = ""): string {
  return value === null ? "-" : `${Number(value.toPrecision(4))}${unit}`;
}

/** A table of versions, then one of the pairs that scored the same rows, output by output. */
export function formatComparison(comparison: AliasComparison): string {
  const versions = comparison.versions.map((v) => [
    String(v.version),
    v.role,
    formatCount(v.rows),
    formatCount(v.errors),
    v.error_rate === null ? "-" : formatShare(v.error_rate),
    figure(v.mean_run_ms, " ms"),
  ]);
  const parts = [
    `${comparison.model}@${comparison.alias} since revision ${comparison.revision}`,
    formatTable(["VERSION", "ROLE", "ROWS", "ERRORS", "ERROR RATE", "MEAN RUN/ROW"], versions),
  ];
  if (comparison.pairs.length > 0) {
    const pairs = comparison.pairs.flatMap((pair) => {
      const name = `v${pair.primary_version} vs v${pair.shadow_version}`;
      const agreement = (value: number | null) => (value === null ? "-" : formatShare(value));
      return [
        [name, "(all)", formatCount(pair.compared), agreement(pair.agreement), "", ""],
        ...pair.outputs.map((o) => [name, o.output, formatCount(o.compared), agreement(o.agreement), figure(o.mean_abs_diff), figure(o.max_abs_diff)]),
      ];
    });
    parts.push("", formatTable(["PAIR", "OUTPUT", "COMPARED", "AGREEMENT", "MEAN ABS DIFF", "MAX ABS DIFF"], pairs));
  }
  return parts.join("\n");
}
