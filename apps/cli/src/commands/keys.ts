import { parseDurationSeconds, SCOPES, type ApiKey, type Scope } from "@coalesce/contracts";
import { expectPositionals, parseColumnList, parseCommandArgs, type OptionSpecs } from "../args.ts";
import type { Command } from "../command.ts";
import { EXIT_OK, UsageError } from "../errors.ts";
import { formatJson, formatTable } from "../format.ts";

const CREATE = "keys create";
const LIST = "keys list";
const REVOKE = "keys revoke";
const ROTATE = "keys rotate";

const CREATE_OPTIONS = {
  scopes: { type: "string", multiple: true },
  "expires-in": { type: "string" },
  tenant: { type: "string" },
  json: { type: "boolean" },
} as const satisfies OptionSpecs;
const LIST_OPTIONS = { all: { type: "boolean" }, json: { type: "boolean" } } as const satisfies OptionSpecs;
const ROTATE_OPTIONS = { overlap: { type: "string" }, json: { type: "boolean" } } as const satisfies OptionSpecs;

/** Least privilege for the common case, a program that submits jobs and reads their results. */
const DEFAULT_SCOPES: Scope[] = ["jobs:write", "jobs:read"];
const DURATIONS = "30d, 12h, 90m, 2w or seconds";

function parseScopes(command: string, values: string[] | undefined): Scope[] {
  const scopes = parseColumnList(values);
  if (!scopes) return DEFAULT_SCOPES;
  if (scopes.length === 0) throw new UsageError("--scopes names no scope", command);
  for (const scope of scopes) {
    if (!(SCOPES as readonly string[]).includes(scope)) throw new UsageError(`unknown scope '${scope}'; choose from ${SCOPES.join(", ")}`, command);
  }
  return scopes as Scope[];
}

function parseDuration(command: string, option: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const seconds = parseDurationSeconds(value);
  if (seconds === undefined) throw new UsageError(`${option} takes a duration (${DURATIONS}), got '${value}'`, command);
  return seconds;
}

function describeState(key: ApiKey, now = Date.now()): string {
  if (key.revoked_at) return `revoked ${key.revoked_at}`;
  if (key.expires_at && Date.parse(key.expires_at) <= now) return `expired ${key.expires_at}`;
  return key.expires_at ? `until ${key.expires_at}` : "active";
}

export const keysCreateCommand: Command = {
  name: CREATE,
  summary: "create an API key with the scopes it needs (admin)",
  options: CREATE_OPTIONS,
  help: `Usage: coalesce keys create NAME [--scopes SCOPE,...] [--expires-in DURATION] [--tenant TENANT] [--json]

Creates an API key and prints its id and the key itself, which is shown only this once (only its
hash is stored). Needs an admin key.

Options:
  --scopes SCOPE[,...]   ${SCOPES.join(", ")}
                         (default: ${DEFAULT_SCOPES.join(",")}: submit jobs, read them and their results)
  --expires-in DURATION  the key stops working after it: ${DURATIONS} (default: never)
  --tenant TENANT        platform admins only: create the key for this tenant (made if new)
  --json                 print the whole answer as JSON

Example:
  coalesce keys create nightly-batch --scopes jobs:write,jobs:read --expires-in 30d`,

  async run(args, context) {
    const { values, positionals } = parseCommandArgs(CREATE, args, CREATE_OPTIONS);
    const [name = ""] = expectPositionals(CREATE, positionals, ["NAME"]);
    const scopes = parseScopes(CREATE, values.scopes);
    const expiresIn = parseDuration(CREATE, "--expires-in", values["expires-in"]);
    if (expiresIn === 0) throw new UsageError("--expires-in 0 would make a key that never works", CREATE);
    const created = await context.connect(values, CREATE).createApiKey({
      name,
      scopes,
      ...(expiresIn === undefined ? {} : { expires_at: new Date(Date.now() + expiresIn * 1000).toISOString() }),
      ...(values.tenant === undefined ? {} : { tenant: values.tenant }),
    });
    if (values.json) {
      context.io.stdout.write(formatJson(created));
      return EXIT_OK;
    }
    context.io.stdout.write(`${created.id}\nsecret: ${created.secret}\n`);
    context.io.stderr.write(`scopes: ${created.scopes.join(", ")}; ${describeState(created)}\nThe secret is not shown again: store it now.\n`);
    return EXIT_OK;
  },
};

export const keysListCommand: Command = {
  name: LIST,
  summary: "list your tenant's API keys (admin)",
  options: LIST_OPTIONS,
  help: `Usage: coalesce keys list [--all] [--json]

Lists the tenant's API keys, newest first: id, name, prefix (the key's first characters), scopes,
state and when each was last used. Never a secret. --all includes revoked keys.`,

  async run(args, context) {
    const { values, positionals } = parseCommandArgs(LIST, args, LIST_OPTIONS);
    expectPositionals(LIST, positionals, []);
    const list = await context.connect(values, LIST).listApiKeys({ includeRevoked: values.all === true });
    if (values.json) {
      context.io.stdout.write(formatJson(list));
      return EXIT_OK;
    }
    if (list.data.length === 0) {
      context.io.stderr.write("no API keys: create one with `coalesce keys create NAME`\n");
      return EXIT_OK;
    }
    const now = Date.now();
    const rows = list.data.map((k) => [k.id, k.name, k.prefix, k.scopes.join(","), describeState(k, now), k.last_used_at ?? "never"]);
    context.io.stdout.write(`${formatTable(["ID", "NAME", "PREFIX", "SCOPES", "STATE", "LAST USED"], rows)}\n`);
    return EXIT_OK;
  },
};

export const keysRevokeCommand: Command = {
  name: REVOKE,
  summary: "revoke an API key (admin)",
  options: {},
  help: `Usage: coalesce keys revoke ID

Revokes the key: every API replica refuses it within a second. A key may revoke itself.`,

  async run(args, context) {
    const { values, positionals } = parseCommandArgs(REVOKE, args, {});
    const [id = ""] = expectPositionals(REVOKE, positionals, ["ID"]);
    await context.connect(values, REVOKE).revokeApiKey(id);
    context.io.stderr.write(`revoked ${id}\n`);
    return EXIT_OK;
  },
};

export const keysRotateCommand: Command = {
  name: ROTATE,
  summary: "give an API key a new secret, the old one working for a while (admin)",
  options: ROTATE_OPTIONS,
  help: `Usage: coalesce keys rotate ID [--overlap DURATION] [--json]

Makes a new secret for the key and prints it (shown only this once). The old secret keeps working
for --overlap (${DURATIONS}; default 1d, at most 7d, 0 to stop it at once), so whoever uses the key
can switch without an outage. Scopes, expiry and limits stay.

Example:
  coalesce keys rotate key_01jdq3x8m7k2v9c4n5p6r7s8t9 --overlap 1h`,

  async run(args, context) {
    const { values, positionals } = parseCommandArgs(ROTATE, args, ROTATE_OPTIONS);
    const [id = ""] = expectPositionals(ROTATE, positionals, ["ID"]);
    const overlap = parseDuration(ROTATE, "--overlap", values.overlap);
    const rotated = await context.connect(values, ROTATE).rotateApiKey(id, overlap);
    if (values.json) {
      context.io.stdout.write(formatJson(rotated));
      return EXIT_OK;
    }
    context.io.stdout.write(`secret: ${rotated.secret}\n`);
    const old = rotated.previous_secret_expires_at ? `the old secret works until ${rotated.previous_secret_expires_at}` : "the old secret no longer works";
    context.io.stderr.write(`${old}. The new one is not shown again: store it now.\n`);
    return EXIT_OK;
  },
};

export const KEY_COMMANDS = [keysCreateCommand, keysListCommand, keysRevokeCommand, keysRotateCommand];
