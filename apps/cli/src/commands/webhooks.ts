import { WEBHOOK_EVENT_TYPES, type WebhookEventType } from "@coalesce/contracts";
import { expectPositionals, parseColumnList, parseCommandArgs, parseWholeNumber, type OptionSpecs } from "../args.ts";
import type { Command } from "../command.ts";
import { EXIT_OK, UsageError } from "../errors.ts";
import { formatJson, formatTable } from "../format.ts";

const ADD = "webhooks add";
const LIST = "webhooks list";
const REMOVE = "webhooks rm";
const ROTATE = "webhooks rotate";
const SECRET = "webhooks secret";
const DELIVERIES = "webhooks deliveries";
const REDELIVER = "webhooks redeliver";

const ADD_OPTIONS = { events: { type: "string", multiple: true }, description: { type: "string" } } as const satisfies OptionSpecs;
const JSON_OPTION = { json: { type: "boolean" } } as const satisfies OptionSpecs;
const ROTATE_OPTIONS = { overlap: { type: "string" } } as const satisfies OptionSpecs;

const VERIFY_HINT =
  "Verify each delivery's webhook-signature with it (any Standard Webhooks library does: new Webhook(secret).verify(body, headers)).";

function parseEvents(name: string, values: string[] | undefined): WebhookEventType[] | undefined {
  const events = parseColumnList(values);
  if (!events) return undefined;
  for (const event of events) {
    if (!(WEBHOOK_EVENT_TYPES as readonly string[]).includes(event)) {
      throw new UsageError(`unknown event '${event}'; choose from ${WEBHOOK_EVENT_TYPES.join(", ")}`, name);
    }
  }
  return events as WebhookEventType[];
}

export const webhooksAddCommand: Command = {
  name: ADD,
  summary: "register a URL that receives your jobs' events, signed",
  options: ADD_OPTIONS,
  help: `Usage: coalesce webhooks add URL [--events EVENT,...] [--description TEXT]

Registers an https URL that receives a POST for every event of your jobs (Standard Webhooks: headers
webhook-id, webhook-timestamp, webhook-signature; body {type, timestamp, data: the job}). Prints the
endpoint's id and its signing secret, which is shown only this once. Failed deliveries are retried for
about a day; an answer of 410 Gone disables the endpoint.

Options:
  --events EVENT[,...]   ${WEBHOOK_EVENT_TYPES.join(", ")}
                         (default: every final state; job.progress is opt-in)
  --description TEXT     a note for yourself

Example:
  coalesce webhooks add https://example.com/hooks/coalesce --events job.succeeded,job.failed`,

  async run(args, context) {
    const { values, positionals } = parseCommandArgs(ADD, args, ADD_OPTIONS);
    const [url = ""] = expectPositionals(ADD, positionals, ["URL"]);
    const events = parseEvents(ADD, values.events);
    const created = await context.connect(values, ADD).createWebhook({
      url,
      ...(events ? { events } : {}),
      ...(values.description === undefined ? {} : { description: values.description }),
    });
    context.io.stdout.write(`${created.id}\nsecret: ${created.secret}\n`);
    context.io.stderr.write(`events: ${created.events.join(", ")}\nThe secret is not shown again. ${VERIFY_HINT}\n`);
    return EXIT_OK;
  },
};

export const webhooksListCommand: Command = {
  name: LIST,
  summary: "list your webhook endpoints",
  options: JSON_OPTION,
  help: `Usage: coalesce webhooks list [--json]

Lists your webhook endpoints: id, whether deliveries go out, the events and the URL.`,

  async run(args, context) {
    const { values, positionals } = parseCommandArgs(LIST, args, JSON_OPTION);
    expectPositionals(LIST, positionals, []);
    const list = await context.connect(values, LIST).listWebhooks();
    if (values.json) {
      context.io.stdout.write(formatJson(list));
      return EXIT_OK;
    }
    if (list.data.length === 0) {
      context.io.stderr.write("no webhook endpoints: add one with `coalesce webhooks add URL`\n");
      return EXIT_OK;
    }
    const rows = list.data.map((e) => [e.id, e.enabled ? "enabled" : `disabled (${e.disabled_reason ?? "paused"})`, e.events.join(","), e.url]);
    context.io.stdout.write(`${formatTable(["ID", "STATE", "EVENTS", "URL"], rows)}\n`);
    return EXIT_OK;
  },
};

export const webhooksRemoveCommand: Command = {
  name: REMOVE,
  summary: "delete a webhook endpoint",
  options: {},
  help: `Usage: coalesce webhooks rm ID

Deletes the endpoint; deliveries still waiting for it are dropped.`,

  async run(args, context) {
    const { values, positionals } = parseCommandArgs(REMOVE, args, {});
    const [id = ""] = expectPositionals(REMOVE, positionals, ["ID"]);
    await context.connect(values, REMOVE).deleteWebhook(id);
    context.io.stderr.write(`deleted ${id}\n`);
    return EXIT_OK;
  },
};

export const webhooksRotateCommand: Command = {
  name: ROTATE,
  summary: "give a webhook endpoint a new signing secret",
  options: ROTATE_OPTIONS,
  help: `Usage: coalesce webhooks rotate ID [--overlap SECONDS]

Makes a new signing secret and prints it. For --overlap seconds (default 86400, one day) every delivery
is signed with both the old and the new secret, so your receiver can switch without missing any.`,

  async run(args, context) {
    const { values, positionals } = parseCommandArgs(ROTATE, args, ROTATE_OPTIONS);
    const [id = ""] = expectPositionals(ROTATE, positionals, ["ID"]);
    const overlap = parseWholeNumber(ROTATE, "--overlap", values.overlap);
    const rotated = await context.connect(values, ROTATE).rotateWebhookSecret(id, overlap);
    context.io.stdout.write(`secret: ${rotated.secret}\n`);
    if (rotated.previous_secret_expires_at) context.io.stderr.write(`the old secret also signs until ${rotated.previous_secret_expires_at}\n`);
    return EXIT_OK;
  },
};

export const webhooksSecretCommand: Command = {
  name: SECRET,
  summary: "print the secret that signs jobs' own --webhook-url deliveries",
  options: {},
  help: `Usage: coalesce webhooks secret

Prints your default webhook secret: it signs the deliveries to a job's own webhook URL
(coalesce submit --webhook-url URL). ${VERIFY_HINT}`,

  async run(args, context) {
    const { values, positionals } = parseCommandArgs(SECRET, args, {});
    expectPositionals(SECRET, positionals, []);
    const { secret } = await context.connect(values, SECRET).getDefaultWebhookSecret();
    context.io.stdout.write(`${secret}\n`);
    return EXIT_OK;
  },
};

export const webhooksDeliveriesCommand: Command = {
  name: DELIVERIES,
  summary: "show a job's webhook deliveries and every attempt",
  options: JSON_OPTION,
  help: `Usage: coalesce webhooks deliveries JOB [--json]

Shows each event of the job sent to each endpoint: its state and every attempt (when, the answer's
status code or the error, how long it took). Send one again with coalesce webhooks redeliver ID.`,

  async run(args, context) {
    const { values, positionals } = parseCommandArgs(DELIVERIES, args, JSON_OPTION);
    const [jobId = ""] = expectPositionals(DELIVERIES, positionals, ["JOB"]);
    const list = await context.connect(values, DELIVERIES).listDeliveries(jobId);
    if (values.json) {
      context.io.stdout.write(formatJson(list));
      return EXIT_OK;
    }
    if (list.data.length === 0) {
      context.io.stderr.write(`no webhook deliveries for ${jobId}: no endpoint was subscribed to its events\n`);
      return EXIT_OK;
    }
    const rows = list.data.flatMap((d) => {
      const head = [d.id, d.event_type, d.state + (d.next_attempt_at ? ` (next ${d.next_attempt_at})` : ""), d.url];
      const attempts = d.attempts.map((a) => [`  #${a.attempt}`, a.started_at, `${a.status_code ?? a.outcome} ${a.duration_ms} ms`, a.error ?? ""]);
      return [head, ...attempts];
    });
    context.io.stdout.write(`${formatTable(["DELIVERY", "EVENT", "STATE", "URL"], rows)}\n`);
    return EXIT_OK;
  },
};

export const webhooksRedeliverCommand: Command = {
  name: REDELIVER,
  summary: "send a webhook delivery again (same webhook-id and body)",
  options: {},
  help: `Usage: coalesce webhooks redeliver DELIVERY

Sends the delivery again now, with the same webhook-id and body, whether it failed or succeeded.
Delivery ids are listed by coalesce webhooks deliveries JOB.`,

  async run(args, context) {
    const { values, positionals } = parseCommandArgs(REDELIVER, args, {});
    const [id = ""] = expectPositionals(REDELIVER, positionals, ["DELIVERY"]);
    await context.connect(values, REDELIVER).retryDelivery(id);
    context.io.stderr.write(`${id} queued for delivery now\n`);
    return EXIT_OK;
  },
};

export const WEBHOOK_COMMANDS = [
  webhooksAddCommand,
  webhooksListCommand,
  webhooksRemoveCommand,
  webhooksRotateCommand,
  webhooksSecretCommand,
  webhooksDeliveriesCommand,
  webhooksRedeliverCommand,
];
