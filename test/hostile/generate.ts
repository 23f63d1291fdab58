// Requests made from an operation's documented parameters and body: values that fit the schema,
// values at and past its bounds, and values of no sensible kind at all.
import type { ContractJudge, JsonSchema, MediaTypes, OperationRef, Parameter } from "./contract.ts";

export type Random = () => number;

/** A request to send: `url` is a path with its query; `body` is sent as is. */
export type FuzzRequest = { method: string; url: string; headers: Record<string, string>; body?: string | Uint8Array; label: string };

/** Real values the fuzzer can put where a parameter names something that exists, so not every id is a 404. */
export type KnownValues = {
  jobIds: string[];
  webhookIds: string[];
  deliveryIds: string[];
  /** Keys the fuzz may rotate and revoke: never the one it sends. */
  apiKeyIds: string[];
  modelName: string;
  modelVersion: number;
  /** A valid ONNX file (for application/octet-stream bodies). */
  model: Uint8Array;
  /** A CSV that feeds the model (for text/csv and multipart bodies). */
  csv: string;
  /** A webhook URL the test policy accepts without a DNS lookup. */
  webhookUrl: string;
};

export const HOSTILE_STRINGS: readonly string[] = [
  "",
  " ",
  "\u0000",
  "a\u0000b",
  "job_\u0000x",
  "x".repeat(65),
  "x".repeat(70_000),
  "é",
  "日本語",
  "😀",
  "\u202egnp.exe",
  "\ud800",
  "\ufeffiris",
  "../../etc/passwd",
  "%00",
  "%",
  "' OR '1'='1",
  "<script>alert(1)</script>",
  "null",
  "-1",
  "1e309",
  "NaN",
  "0x1f",
  "job_",
  "wh_01jdq3x8m7k2v9c4n5p6r7s8t9",
  "JOB_01JDQ3X8M7K2V9C4N5P6R7S8T9",
  "=cmd|' /C calc'!A0",
  "\r\nX-Injected: 1",
];

export const HOSTILE_NUMBERS: readonly number[] = [-1, 0, -0, 0.5, 1.5, 2 ** 31, 2 ** 53 + 2, 1e308, -1e308, Number.MAX_SAFE_INTEGER, 4294967296];

const WRONG_KINDS: readonly unknown[] = [null, true, false, [], {}, 0, -1, "", "string", [1, 2], { a: 1 }, [[[]]]];

export function pick<T>(random: Random, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)] as T;
}

/** A value of any hostile kind: a string, a number or a value of the wrong type. */
export function hostileValue(random: Random): unknown {
  const roll = random();
  if (roll < 0.45) return pick(random, HOSTILE_STRINGS);
  if (roll < 0.75) return pick(random, HOSTILE_NUMBERS);
  return pick(random, WRONG_KINDS);
}

const ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";

/**
 * A value that fits `schema`, as far as a generator can tell: a pattern it cannot invert falls back
 * to the schema's example. Numbers land on the bounds a third of the time.
 */
export function sampleValue(judge: ContractJudge, raw: JsonSchema, random: Random, depth = 0): unknown {
  const schema = judge.resolve(raw);
  if (schema.const !== undefined) return schema.const;
  if (schema.enum) return pick(random, schema.enum);
  const choices = schema.anyOf ?? schema.oneOf;
  if (choices) {
    // Deep in a recursive schema (TensorValue), take the first, scalar, choice so the value ends.
    return sampleValue(judge, depth > 3 ? (choices[0] as JsonSchema) : pick(random, choices), random, depth + 1);
  }
  if (schema.example !== undefined && random() < 0.5) return schema.example;
  const types = Array.isArray(schema.type) ? schema.type : schema.type ? [schema.type] : [];
  const type = types.length === 0 ? undefined : types.find((t) => t !== "null" && random() < 0.9) ?? types[0];
  switch (type) {
    case "null":
      return null;
    case "boolean":
      return random() < 0.5;
    case "integer":
    case "number": {
      const min = schema.minimum ?? (schema.exclusiveMinimum !== undefined ? schema.exclusiveMinimum + 1 : 0);
      const max = schema.maximum ?? (schema.exclusiveMaximum !== undefined ? schema.exclusiveMaximum - 1 : Math.max(min, 1000));
      const roll = random();
      if (roll < 0.15) return min;
      if (roll < 0.3) return max;
      const value = min + random() * (max - min);
      return type === "integer" ? Math.floor(value) : value;
    }
    case "string": {
      if (schema.format === "date-time") return new Date(Date.UTC(2026, 0, 1 + Math.floor(random() * 300))).toISOString();
      if (schema.pattern) return schema.example ?? "";
      const min = schema.minLength ?? 0;
      const max = Math.min(schema.maxLength ?? 24, min + 24);
      const length = min + Math.floor(random() * (max - min + 1));
      return Array.from({ length }, () => pick(random, [...ALPHABET])).join("");
    }
    case "array": {
      const min = schema.minItems ?? 0;
      const max = Math.min(schema.maxItems ?? 3, min + 3);
      const length = depth > 4 ? min : min + Math.floor(random() * (max - min + 1));
      return Array.from({ length }, () => sampleValue(judge, schema.items ?? {}, random, depth + 1));
    }
    case "object": {
      const out: Record<string, unknown> = {};
      for (const [name, property] of Object.entries(schema.properties ?? {})) {
        if (schema.required?.includes(name) || random() < 0.5) out[name] = sampleValue(judge, property, random, depth + 1);
      }
      return out;
    }
    default:
      return schema.example ?? pick(random, [1, "x", true]);
  }
}

/** Values named by the API's own vocabulary: ids that exist, the model, a webhook URL that needs no DNS. */
function knownValue(name: string, path: string, known: KnownValues, random: Random): unknown {
  if (name === "id") {
    if (path.startsWith("/v1/webhooks/")) return pick(random, known.webhookIds);
    if (path.startsWith("/v1/deliveries/")) return pick(random, known.deliveryIds);
    if (path.startsWith("/v1/api-keys/")) return pick(random, known.apiKeyIds);
    return pick(random, known.jobIds);
  }
  if (name === "name") return known.modelName;
  if (name === "version") return known.modelVersion;
  if (name === "model") return random() < 0.5 ? known.modelName : `${known.modelName}@${known.modelVersion}`;
  if (name === "url" || name === "webhook_url") return known.webhookUrl;
  if (name === "wait") return 0;
  return undefined;
}

function encodeSegment(value: unknown): string {
  const text = String(value);
  try {
    return encodeURIComponent(text);
  } catch {
    // A lone surrogate cannot be encoded: send the bytes of one (invalid UTF-8) instead.
    return "%ED%A0%80";
  }
}

/** Only what a Headers object accepts: no NUL, CR or LF, nothing past U+00FF. */
function headerSafe(value: unknown): string | undefined {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text !== undefined && /^[\t\x20-\x7e\x80-\xff]*$/.test(text) ? text.trim() : undefined;
}

type BodyChoice = { contentType: string; body?: string | Uint8Array; label: string };

function validBody(judge: ContractJudge, content: MediaTypes, known: KnownValues, random: Random, path: string): BodyChoice {
  const types = Object.keys(content);
  const contentType = pick(random, types);
  if (contentType === "application/octet-stream") return { contentType, body: known.model, label: "model file" };
  if (contentType === "text/csv") return { contentType, body: known.csv, label: "csv" };
  if (contentType === "multipart/form-data") {
    const boundary = "fuzzboundary";
    const body = `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="rows.csv"\r\nContent-Type: text/csv\r\n\r\n${known.csv}\r\n--${boundary}--\r\n`;
    return { contentType: `multipart/form-data; boundary=${boundary}`, body, label: "multipart csv" };
  }
  const value = sampleValue(judge, content[contentType]?.schema ?? {}, random);
  if (value && typeof value === "object" && !Array.isArray(value)) {
    const record = value as Record<string, unknown>;
    for (const key of Object.keys(record)) {
      const replacement = knownValue(key, path, known, random);
      if (replacement !== undefined) record[key] = replacement;
    }
  }
  return { contentType, body: JSON.stringify(value), label: "valid json" };
}

/** A body broken one way: a field missing, unknown, hostile; the wrong type; not JSON; the wrong media type. */
function brokenBody(judge: ContractJudge, content: MediaTypes, known: KnownValues, random: Random, path: string): BodyChoice {
  const valid = validBody(judge, content, known, random, path);
  const isJson = valid.contentType === "application/json";
  const roll = random();
  if (!isJson) {
    if (roll < 0.3) return { contentType: valid.contentType, body: new Uint8Array(0), label: "empty body" };
    if (roll < 0.6) return { contentType: valid.contentType, body: Uint8Array.from({ length: 64 }, () => Math.floor(random() * 256)), label: "random bytes" };
    if (roll < 0.8) return { contentType: "application/json", body: "{}", label: "json instead" };
    return { contentType: "text/plain", body: "hello", label: "text/plain" };
  }
  const value = JSON.parse(valid.body as string) as unknown;
  const record = value && typeof value === "object" && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
  const keys = record ? Object.keys(record) : [];
  if (roll < 0.2 && record && keys.length > 0) {
    record[pick(random, keys)] = hostileValue(random);
    return { contentType: "application/json", body: JSON.stringify(record), label: "hostile field" };
  }
  if (roll < 0.3 && record && keys.length > 0) {
    delete record[pick(random, keys)];
    return { contentType: "application/json", body: JSON.stringify(record), label: "missing field" };
  }
  if (roll < 0.42 && record) {
    record[pick(random, ["webhook_ur1", "extra", "__proto__", "constructor", "Model", "inputs "])] = hostileValue(random);
    return { contentType: "application/json", body: JSON.stringify(record), label: "unknown field" };
  }
  if (roll < 0.52) return { contentType: "application/json", body: JSON.stringify(pick(random, WRONG_KINDS)), label: "wrong body type" };
  if (roll < 0.68) {
    const text = pick(random, ['{"model":', "{", "nul", "\ufeff{}", "{}}", '{"a":1,"a":2}', "[".repeat(5000) + "]".repeat(5000), "1".repeat(400), '{"x":1e99999}']);
    return { contentType: "application/json", body: text, label: "malformed json" };
  }
  if (roll < 0.78) return { contentType: pick(random, ["text/plain", "application/x-www-form-urlencoded", "application/xml"]), body: valid.body, label: "wrong content-type" };
  if (roll < 0.84) return { contentType: "application/json", body: "", label: "empty json body" };
  if (roll < 0.92 && record) {
    // Rows nested past any tensor, or strings at the size limit of nothing in particular.
    record[pick(random, keys.length > 0 ? keys : ["inputs"])] = JSON.parse("[".repeat(2000) + "1" + "]".repeat(2000)) as unknown;
    return { contentType: "application/json", body: JSON.stringify(record), label: "deep nesting" };
  }
  return { contentType: "application/json; charset=utf-16", body: valid.body, label: "odd charset" };
}

/**
 * `count` requests for one operation: about a third valid, the rest broken in one place (a parameter,
 * the body, the Authorization header).
 */
export function requestsFor(
  judge: ContractJudge,
  ref: OperationRef,
  known: KnownValues,
  auth: string,
  random: Random,
  count: number,
): FuzzRequest[] {
  const requests: FuzzRequest[] = [];
  const parameters: Parameter[] = ref.operation.parameters ?? [];
  for (let i = 0; i < count; i++) {
    const broken = i === 0 ? "none" : random() < 0.3 ? "none" : pick(random, ["param", "param", "body", "body", "body", "auth", "query-extra"] as const);
    const target = broken === "param" && parameters.length > 0 ? pick(random, parameters) : undefined;
    let url = ref.path;
    const query = new URLSearchParams();
    const headers: Record<string, string> = { Authorization: auth };
    const labels: string[] = [];
    for (const parameter of parameters) {
      let value: unknown;
      if (parameter === target) {
        // An empty path segment is another URL (`/v1/jobs//cancel`), not this operation with a bad id.
        // Bytes Postgres refuses get a larger share than chance would give them: they were the 500s.
        do value = random() < 0.35 ? pick(random, ["\u0000", "a\u0000b", "job_\u0000x", "%00"]) : hostileValue(random);
        while (parameter.in === "path" && String(value) === "");
        labels.push(`${parameter.in} ${parameter.name}=${JSON.stringify(value)?.slice(0, 40)}`);
      } else {
        const knownOne = knownValue(parameter.name, ref.path, known, random);
        if (!parameter.required && random() < 0.5) continue;
        value = knownOne ?? sampleValue(judge, parameter.schema, random);
      }
      if (parameter.in === "path") url = url.replace(`{${parameter.name}}`, encodeSegment(value));
      else if (parameter.in === "query") query.set(parameter.name, typeof value === "string" ? value : JSON.stringify(value));
      else if (parameter.in === "header") {
        const safe = headerSafe(value);
        if (safe !== undefined && safe !== "") headers[parameter.name] = safe;
      }
    }
    if (broken === "query-extra") {
      query.set(pick(random, ["limit", "cursor", "format", "zzz", "model"]), String(hostileValue(random)));
      labels.push("extra query");
    }
    if (broken === "auth") {
      const bad = pick(random, ["", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer " + "k".repeat(20_000), "Bearer a b", "bearer csk_nope", "Bearer \u00ff\u00fe"]);
      if (bad === "") delete headers.Authorization;
      else headers.Authorization = bad;
      labels.push("bad auth");
    }
    let body: string | Uint8Array | undefined;
    const content = ref.operation.requestBody?.content;
    if (content) {
      const choice = broken === "body" ? brokenBody(judge, content, known, random, ref.path) : validBody(judge, content, known, random, ref.path);
      // An optional body may also be left out entirely.
      if (!(ref.operation.requestBody?.required !== true && broken === "none" && random() < 0.3)) {
        headers["Content-Type"] = choice.contentType;
        body = choice.body;
      }
      labels.push(choice.label);
    } else if (broken === "body" && ref.method !== "GET") {
      headers["Content-Type"] = "application/json";
      body = '{"unexpected": true}';
      labels.push("body where none is taken");
    }
    const search = query.toString();
    requests.push({ method: ref.method, url: search ? `${url}?${search}` : url, headers, body, label: labels.join(", ") || "valid" });
  }
  return requests;
}
