import type { PredictRowResult } from "@coalesce/contracts";
import type { RedisClient } from "./connection.ts";

/**
 * The synchronous predict path through Redis, with no Postgres write per request.
 *
 *   API:    SUBMIT (one Lua call for the requests arriving together: admission against the
 *           backlog, then XADD each to a stream)
 *   worker: XREADGROUP from the stream (many requests per read), rows into the batchers, then for
 *           the requests answered together one PUBLISH per requesting API process (its own
 *           channel) and one ACK (XACK + XDEL each)
 *
 * A Redis stream with one consumer group: each request goes to one worker, requests from every API
 * replica meet in the same stream (and so in the same batches), and the group's pending entries
 * list says which worker holds which request, so one held by a worker that died is claimed by a
 * live one (see claimFromDead). BullMQ carries the chunks of jobs; a predict request is not a job:
 * it lives for its timeout, needs no retries, attempts or retention, and a BullMQ job per request
 * would cost a job hash, its lock renewals and several scripts each.
 */

/** The consumer group every worker reads in. */
export const PREDICT_GROUP = "workers";

/** The stream predict requests travel in; its group's pending list says which worker holds which. */
export function predictStreamKey(prefix: string): string {
  return `${prefix}:predict:requests`;
}

/** Rows submitted and not yet answered (acknowledged), kept beside the stream by the same scripts. */
export function predictBacklogKey(prefix: string): string {
  return `${prefix}:predict:backlog`;
}

/** Where a worker answers the API process that holds the request. */
function replyChannel(prefix: string, apiId: string): string {
  return `${prefix}:predict:replies:${apiId}`;
}

/** A request as it travels to a worker. */
export type PredictMessage = {
  /** Unique per request; the answer names it. */
  id: string;
  modelVersionId: string;
  /** The alias that routed the request (and its revision), for its shadow and its guard's figures; null for a pinned version. */
  alias: { id: string; revision: number } | null;
  /** The channel of the API process waiting for the answer. */
  replyTo: string;
  /** Epoch ms past which nobody waits for the answer: a worker drops the request unrun. */
  deadline: number;
  /** Epoch ms when the API sent it (for the time it waited in Redis). */
  submittedAt: number;
  /** The rows, packed (packRows of @coalesce/models) for the model version's inputs. */
  rows: Buffer;
  rowCount: number;
};

/** A request read from the stream: the message, its stream entry id, and how often it was delivered. */
export type ReceivedPredict = PredictMessage & { entryId: string; deliveries: number };

/** What a worker sends back: one result per row, or why none could be had. */
export type PredictReply =
  | { id: string; results: PredictRowResult[]; runRows: number[] }
  | { id: string; failure: { code: "unavailable" | "failed"; message: string } };

// Admission and enqueue in one step, so two API replicas cannot both squeeze past the bound; a
// group of requests in one call, each admitted in turn. KEYS: stream, backlog. ARGV: max backlog
// rows, then per request its rows and its entry's FIELD_COUNT field/value pairs. Returns, per
// request, the backlog with it in, or minus the backlog that refused it.
const FIELD_COUNT = 8;
const SUBMIT = `
local backlog = tonumber(redis.call('GET', KEYS[2]) or '0')
local max = tonumber(ARGV[1])
local out = {}
local i = 2
while i <= #ARGV do
  local rows = tonumber(ARGV[i])
  if backlog > 0 and backlog + rows > max then
    out[#out + 1] = -backlog
  else
    backlog = backlog + rows
    redis.call('XADD', KEYS[1], '*', unpack(ARGV, i + 1, i + ${FIELD_COUNT * 2}))
    out[#out + 1] = backlog
  end
  i = i + 1 + ${FIELD_COUNT * 2}
end
redis.call('SET', KEYS[2], backlog)
return out
`;

// Requests answered (or dropped): off the pending list and out of the stream, and their rows off
// the backlog, once only (a request claimed from a worker thought dead may be answered twice).
// KEYS: stream, backlog. ARGV: group, then per request its entry id and rows.
const ACK = `
local done = 0
local acked = 0
for i = 2, #ARGV, 2 do
  if redis.call('XACK', KEYS[1], ARGV[1], ARGV[i]) == 1 then
    done = done + tonumber(ARGV[i + 1])
    acked = acked + 1
  end
  redis.call('XDEL', KEYS[1], ARGV[i])
end
if done > 0 and redis.call('DECRBY', KEYS[2], done) < 0 then redis.call('SET', KEYS[2], 0) end
return acked
`;

type ScriptedRedis = RedisClient & {
  coalescePredictSubmit(stream: string, backlog: string, ...args: (string | number | Buffer)[]): Promise<number[]>;
  coalescePredictAck(stream: string, backlog: string, group: string, ...entries: (string | number)[]): Promise<number>;
};

function scripted(redis: RedisClient): ScriptedRedis {
  const r = redis as ScriptedRedis;
  if (typeof r.coalescePredictSubmit !== "function") {
    redis.defineCommand("coalescePredictSubmit", { numberOfKeys: 2, lua: SUBMIT });
    redis.defineCommand("coalescePredictAck", { numberOfKeys: 2, lua: ACK });
  }
  return r;
}

/**
 * Queues requests, in order, each unless the rows waiting for an answer would pass `maxBacklogRows`:
 * returns per request the backlog with it in, or null when it was refused (admission control: the
 * caller answers 503 at once rather than queueing without bound). A request larger than the bound
 * is let through only into an empty backlog. One round trip for the whole group.
 */
export async function submitPredicts(redis: RedisClient, prefix: string, messages: readonly PredictMessage[], maxBacklogRows: number): Promise<(number | null)[]> {
  const args: (string | number | Buffer)[] = [maxBacklogRows];
  for (const message of messages) {
    args.push(message.rowCount, "id", message.id, "m", message.modelVersionId, "r", message.replyTo, "d", message.deadline);
    args.push("t", message.submittedAt, "n", message.rowCount, "a", message.alias ? `${message.alias.id}:${message.alias.revision}` : "", "x", message.rows);
  }
  const results = await scripted(redis).coalescePredictSubmit(predictStreamKey(prefix), predictBacklogKey(prefix), ...args);
  return results.map((result) => (result < 0 ? null : result));
}

/**
 * Answers requests and acknowledges them, in one round trip: the answers to each API process in one
 * message on its channel (a JSON array), then every request off the stream and the backlog. An
 * answer goes before its acknowledgement: a worker that dies between the two leaves a request that
 * another worker runs again, and its second answer is dropped by the API. A null reply only
 * acknowledges (a request dropped past its deadline).
 */
export async function answerPredicts(
  redis: RedisClient,
  prefix: string,
  answers: readonly { request: Pick<ReceivedPredict, "entryId" | "rowCount" | "replyTo">; reply: PredictReply | null }[],
): Promise<void> {
  const byChannel = new Map<string, PredictReply[]>();
  const acks: (string | number)[] = [];
  for (const { request, reply } of answers) {
    if (reply) {
      const replies = byChannel.get(request.replyTo);
      if (replies) replies.push(reply);
      else byChannel.set(request.replyTo, [reply]);
    }
    acks.push(request.entryId, request.rowCount);
  }
  const pipeline = scripted(redis).pipeline() as unknown as ScriptedPipeline;
  for (const [channel, replies] of byChannel) pipeline.publish(channel, JSON.stringify(replies));
  pipeline.coalescePredictAck(predictStreamKey(prefix), predictBacklogKey(prefix), PREDICT_GROUP, ...acks);
  const results = (await pipeline.exec()) ?? [];
  const failed = results.find(([error]) => error);
  if (failed) throw failed[0];
}

type ScriptedPipeline = ReturnType<RedisClient["pipeline"]> & {
  coalescePredictAck(stream: string, backlog: string, group: string, ...entries: (string | number)[]): ScriptedPipeline;
};

/** Creates the stream and its group if they are not there (first start, or Redis emptied). */
export async function ensurePredictGroup(redis: RedisClient, prefix: string): Promise<void> {
  try {
    // From the stream's start: requests queued before the first worker ever started are served too.
    await redis.xgroup("CREATE", predictStreamKey(prefix), PREDICT_GROUP, "0", "MKSTREAM");
  } catch (error) {
    if (!String((error as Error).message).startsWith("BUSYGROUP")) throw error;
  }
}

const isMissingGroup = (error: unknown) => String((error as Error)?.message).startsWith("NOGROUP");

/**
 * Reads up to `count` requests for `consumer`, waiting up to `blockMs` for the first. On a
 * connection of its own (the read blocks it). Recreates the group if Redis lost it.
 */
export async function readPredicts(redis: RedisClient, prefix: string, consumer: string, count: number, blockMs: number): Promise<ReceivedPredict[]> {
  let reply: unknown;
  try {
    reply = await redis.callBuffer("XREADGROUP", "GROUP", PREDICT_GROUP, consumer, "COUNT", count, "BLOCK", blockMs, "STREAMS", predictStreamKey(prefix), ">");
  } catch (error) {
    if (!isMissingGroup(error)) throw error;
    await ensurePredictGroup(redis, prefix);
    return [];
  }
  if (!Array.isArray(reply) || reply.length === 0) return [];
  const [, entries] = reply[0] as [Buffer, [Buffer, Buffer[]][]];
  return entries.flatMap(([entryId, fields]) => parseEntry(entryId, fields, 1));
}

/** `als_...:3` as submitPredicts writes it; empty (or a message from before aliases) is none. */
function parseAlias(text: string): PredictMessage["alias"] {
  const colon = text.lastIndexOf(":");
  if (colon <= 0) return null;
  return { id: text.slice(0, colon), revision: Number(text.slice(colon + 1)) };
}

function parseEntry(entryId: Buffer, fields: Buffer[] | null, deliveries: number): ReceivedPredict[] {
  // An entry deleted after it was delivered (answered by another worker meanwhile) has no fields.
  if (!fields) return [];
  const values = new Map<string, Buffer>();
  for (let i = 0; i + 1 < fields.length; i += 2) values.set(fields[i]!.toString(), fields[i + 1]!);
  const text = (name: string) => values.get(name)?.toString() ?? "";
  return [
    {
      entryId: entryId.toString(),
      id: text("id"),
      modelVersionId: text("m"),
      alias: parseAlias(text("a")),
      replyTo: text("r"),
      deadline: Number(text("d")),
      submittedAt: Number(text("t")),
      rowCount: Number(text("n")),
      rows: values.get("x") ?? Buffer.alloc(0),
      deliveries,
    },
  ];
}

/** Most requests claimed from one consumer per pass; the next pass takes more. */
const CLAIM_BATCH = 256;

export type ClaimOptions = {
  /** Workers alive now (their heartbeat ids): their requests are theirs. */
  live: ReadonlySet<string>;
  /** Only entries idle this long are claimed: two live workers claiming at once do not take the same requests from each other (a claim resets an entry's idle time). */
  minIdleMs: number;
  /** A dead consumer holding nothing is forgotten once it has been idle this long (not a worker that has just started, before its heartbeat was read). */
  forgetIdleMs: number;
  /** The entries `consumer` holds in hand now: its other pending entries were lost to it (a read whose reply never arrived, an answer that failed) and are claimed back. */
  held: { has(entryId: string): boolean };
};

/**
 * Takes over, for `consumer`, the requests no live worker is running: those held by consumers not
 * among `live` (their workers died before answering), and its own pending entries that it does not
 * hold (see ClaimOptions.held). Forgets dead consumers that hold nothing. Returns the requests
 * claimed, with how often each has been delivered (this claim included).
 */
export async function claimStranded(redis: RedisClient, prefix: string, consumer: string, options: ClaimOptions): Promise<ReceivedPredict[]> {
  let consumers: unknown[];
  try {
    consumers = (await redis.xinfo("CONSUMERS", predictStreamKey(prefix), PREDICT_GROUP)) as unknown[];
  } catch (error) {
    if (isMissingGroup(error) || /no such key/i.test(String((error as Error).message))) return [];
    throw error;
  }
  const claimed: ReceivedPredict[] = [];
  for (const entry of consumers) {
    const info = fieldsOf(entry as unknown[]);
    const name = String(info.get("name"));
    const own = name === consumer;
    if (!own && options.live.has(name)) continue;
    if (Number(info.get("pending")) === 0) {
      if (!own && Number(info.get("idle")) > options.forgetIdleMs) await redis.xgroup("DELCONSUMER", predictStreamKey(prefix), PREDICT_GROUP, name);
      continue;
    }
    const pending = (await redis.xpending(predictStreamKey(prefix), PREDICT_GROUP, "IDLE", options.minIdleMs, "-", "+", CLAIM_BATCH, name)) as [string, string, number, number][];
    const stranded = own ? pending.filter(([id]) => !options.held.has(id)) : pending;
    if (stranded.length === 0) continue;
    const deliveries = new Map(stranded.map(([id, , , count]) => [id, Number(count) + 1]));
    const reply = (await redis.callBuffer("XCLAIM", predictStreamKey(prefix), PREDICT_GROUP, consumer, options.minIdleMs, ...stranded.map(([id]) => id))) as [Buffer, Buffer[] | null][];
    for (const [entryId, fields] of reply ?? []) claimed.push(...parseEntry(entryId, fields, deliveries.get(entryId.toString()) ?? 1));
  }
  return claimed;
}

/** A consumer leaving for good, once it holds nothing (a consumer's pending requests die with it). */
export async function leavePredictGroup(redis: RedisClient, prefix: string, consumer: string): Promise<void> {
  const pending = (await redis.xpending(predictStreamKey(prefix), PREDICT_GROUP, "-", "+", 1, consumer).catch(() => [])) as unknown[];
  if (pending.length === 0) await redis.xgroup("DELCONSUMER", predictStreamKey(prefix), PREDICT_GROUP, consumer).catch(() => 0);
}

function fieldsOf(flat: unknown[]): Map<string, unknown> {
  const map = new Map<string, unknown>();
  for (let i = 0; i + 1 < flat.length; i += 2) map.set(String(flat[i]), flat[i + 1]);
  return map;
}

type Waiter = { resolve: (reply: PredictReply | null) => void; timer: NodeJS.Timeout };

/**
 * The answers to one API process' requests: one subscription to its own channel, and a waiter per
 * request in flight. A reply for a request nobody waits for any more (it timed out) is dropped.
 */
export class PredictReplies {
  readonly channel: string;
  readonly #subscriber: RedisClient;
  readonly #waiters = new Map<string, Waiter>();
  #subscribed: Promise<void> | undefined;
  #confirmed = false;

  constructor(redis: RedisClient, prefix: string, apiId: string) {
    this.channel = replyChannel(prefix, apiId);
    // A subscribed connection can do nothing else.
    this.#subscriber = redis.duplicate();
    this.#subscriber.on("message", (_channel: string, text: string) => {
      let replies: unknown;
      try {
        replies = JSON.parse(text);
      } catch {
        return;
      }
      for (const reply of Array.isArray(replies) ? (replies as PredictReply[]) : []) {
        const waiter = this.#waiters.get(reply.id);
        if (!waiter) continue;
        this.#waiters.delete(reply.id);
        clearTimeout(waiter.timer);
        waiter.resolve(reply);
      }
    });
    // ioredis renews subscriptions it had on a reconnect; one refused while Redis was down is tried again.
    this.#subscriber.on("ready", () => {
      if (this.#subscribed === undefined) this.subscribe().catch(() => {});
    });
  }

  /** Subscribes (once); rejects while Redis is unreachable, and a later call tries again. */
  subscribe(): Promise<void> {
    this.#subscribed ??= this.#subscriber.subscribe(this.channel).then(
      () => {
        this.#confirmed = true;
      },
      (error: unknown) => {
        this.#subscribed = undefined;
        throw error;
      },
    );
    return this.#subscribed;
  }

  /** True while answers can arrive: subscribed on a connection that is up. */
  get listening(): boolean {
    return this.#subscriber.status === "ready" && this.#confirmed;
  }

  /** Requests waiting for their answer in this process. */
  get waiting(): number {
    return this.#waiters.size;
  }

  /**
   * Resolves with the answer to request `id`, or null after `timeoutMs`. Call before submitting the
   * request, so an answer faster than the submit's own reply is not missed.
   */
  wait(id: string, timeoutMs: number): { answer: Promise<PredictReply | null>; cancel: () => void } {
    let waiter!: Waiter;
    const answer = new Promise<PredictReply | null>((resolve) => {
      waiter = {
        resolve,
        timer: setTimeout(() => {
          this.#waiters.delete(id);
          resolve(null);
        }, timeoutMs),
      };
    });
    this.#waiters.set(id, waiter);
    const cancel = () => {
      if (this.#waiters.get(id) !== waiter) return;
      this.#waiters.delete(id);
      clearTimeout(waiter.timer);
      waiter.resolve(null);
    };
    return { answer, cancel };
  }

  close(): void {
    for (const [id, waiter] of this.#waiters) {
      clearTimeout(waiter.timer);
      waiter.resolve(null);
      this.#waiters.delete(id);
    }
    this.#subscriber.disconnect();
  }
}
