// The published OpenAPI document as the judge of what the API answers: every status an operation
// returns must be listed for it, and every JSON body must match the schema listed for that status.
// OpenAPI 3.1 schemas are JSON Schema 2020-12, so ajv's 2020 draft validates them as they are.
import { Ajv2020 } from "ajv/dist/2020.js";
import type { ValidateFunction } from "ajv";

export type JsonSchema = {
  $ref?: string;
  type?: string | string[];
  enum?: unknown[];
  const?: unknown;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  allOf?: JsonSchema[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  additionalProperties?: boolean | JsonSchema;
  items?: JsonSchema;
  minItems?: number;
  maxItems?: number;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  pattern?: string;
  format?: string;
  default?: unknown;
  example?: unknown;
};

export type Parameter = { name: string; in: "path" | "query" | "header" | "cookie"; required?: boolean; schema: JsonSchema };
export type MediaTypes = Record<string, { schema?: JsonSchema }>;
export type Operation = {
  operationId?: string;
  parameters?: Parameter[];
  requestBody?: { required?: boolean; content: MediaTypes };
  responses: Record<string, { description: string; content?: MediaTypes; headers?: Record<string, { required?: boolean }> }>;
  security?: Record<string, string[]>[];
};
export type OpenApiDocument = {
  openapi: string;
  servers?: { url: string }[];
  security?: Record<string, string[]>[];
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, JsonSchema>; securitySchemes?: Record<string, unknown> };
};

export type OperationRef = { method: string; path: string; operation: Operation; id: string };

export function listOperations(doc: OpenApiDocument): OperationRef[] {
  const operations: OperationRef[] = [];
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, operation] of Object.entries(methods)) {
      operations.push({ method: method.toUpperCase(), path, operation, id: operation.operationId ?? `${method} ${path}` });
    }
  }
  return operations;
}

/** What a client saw: enough to judge it against the document. */
export type Answer = { status: number; headers: Headers; body: string };

export class ContractJudge {
  private readonly ajv = new Ajv2020({ strict: false, validateFormats: false, allErrors: false });
  private readonly validators = new Map<string, ValidateFunction>();

  constructor(readonly doc: OpenApiDocument) {}

  /** Follows `#/components/schemas/...` references. */
  resolve(schema: JsonSchema): JsonSchema {
    let current = schema;
    for (let hops = 0; current.$ref && hops < 20; hops++) {
      const name = current.$ref.replace("#/components/schemas/", "");
      const next = this.doc.components.schemas[name];
      if (!next) throw new Error(`unresolved $ref ${current.$ref}`);
      current = next;
    }
    return current;
  }

  private validator(key: string, schema: JsonSchema): ValidateFunction {
    let validate = this.validators.get(key);
    if (!validate) {
      // The components ride along so that `#/components/schemas/X` resolves inside the compiled schema.
      validate = this.ajv.compile({ ...schema, components: this.doc.components });
      this.validators.set(key, validate);
    }
    return validate;
  }

  /** Every way `answer` breaks the document's promise for `operation`; empty when it keeps it. */
  judge(ref: OperationRef, answer: Answer): string[] {
    const problems: string[] = [];
    const documented = ref.operation.responses[String(answer.status)] ?? ref.operation.responses.default;
    if (!documented) return [`status ${answer.status} is not documented (documented: ${Object.keys(ref.operation.responses).join(", ")})`];
    for (const [name, header] of Object.entries(documented.headers ?? {})) {
      if (header.required && !answer.headers.has(name)) problems.push(`status ${answer.status} lacks its required ${name} header`);
    }
    const mediaType = answer.headers.get("content-type")?.split(";")[0]?.trim().toLowerCase() ?? "";
    const content = documented.content ?? {};
    if (Object.keys(content).length === 0) {
      if (answer.body.length > 0) problems.push(`status ${answer.status} documents no body, got ${answer.body.length} bytes of ${mediaType}`);
      return problems;
    }
    const media = content[mediaType];
    if (!media) return [...problems, `status ${answer.status} answered ${mediaType || "no Content-Type"}, documented: ${Object.keys(content).join(", ")}`];
    const isJson = mediaType === "application/json" || mediaType.endsWith("+json");
    if (!isJson || !media.schema) return problems;
    let body: unknown;
    try {
      body = JSON.parse(answer.body);
    } catch {
      return [`status ${answer.status}: the ${mediaType} body is not JSON: ${answer.body.slice(0, 200)}`];
    }
    const validate = this.validator(`${ref.id} ${answer.status} ${mediaType}`, media.schema);
    if (!validate(body)) {
      problems.push(`status ${answer.status}: body does not match its schema: ${this.ajv.errorsText(validate.errors)}; body: ${answer.body.slice(0, 300)}`);
    }
    if (mediaType === "application/problem+json") {
      const problem = body as { status?: unknown; errors?: unknown };
      if (problem.status !== answer.status) problems.push(`problem status ${String(problem.status)} differs from the HTTP status ${answer.status}`);
    }
    return problems;
  }
}

/** A small deterministic PRNG (mulberry32): the same seed gives the same requests on every run. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
