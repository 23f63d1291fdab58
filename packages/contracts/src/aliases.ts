import { z } from "@hono/zod-openapi";
import { requestObject } from "./request.ts";

/** An alias name: `production`, `canary`, `eu-users`. Digits first would read as a version number. */
export const ALIAS_NAME_PATTERN = /^[a-z][a-z0-9-]{0,62}$/;

/** The alias a plain model name (no `@...`) means when the model has it; else the latest version. */
export const DEFAULT_ALIAS = "production";

export const AliasNameSchema = z
  .string()
  .regex(ALIAS_NAME_PATTERN, "an alias name is 1-63 characters: lower-case letters, digits and '-', starting with a letter")
  .openapi({ example: "production" });

const VersionNumberSchema = z.number().int().min(1).max(999_999_999);

export const AliasRouteSchema = z
  .object({
    version: VersionNumberSchema.openapi({ example: 2 }),
    weight: z.number().int().min(1).max(100).openapi({ description: "Whole percent of the alias's traffic.", example: 90 }),
  })
  .openapi("AliasRoute");
export type AliasRoute = z.infer<typeof AliasRouteSchema>;

export const AliasShadowSchema = z
  .object({
    version: VersionNumberSchema.openapi({ example: 4 }),
    sample: z.number().gt(0).max(1).openapi({ description: "Share of the alias's rows also scored by the shadow version (0 < sample <= 1).", example: 0.2 }),
  })
  .openapi("AliasShadow");
export type AliasShadow = z.infer<typeof AliasShadowSchema>;

/** Default rows a candidate must have scored before the guard judges it. */
export const DEFAULT_GUARD_MIN_ROWS = 1000;
/** Default share of a canary candidate's rows also scored by the stable version, to measure agreement. */
export const DEFAULT_GUARD_COMPARE_SAMPLE = 0.1;

export const AliasGuardSchema = z
  .object({
    max_error_rate: z.number().min(0).max(1).optional().openapi({
      description: "Roll the candidate back when more than this share of its rows fail.",
      example: 0.01,
    }),
    min_agreement: z.number().min(0).max(1).optional().openapi({
      description:
        "Roll the candidate back when fewer than this share of its compared rows agree with the stable version on the label (an " +
        "integer or string output) or the argmax (a float vector).",
      example: 0.98,
    }),
    min_rows: z.number().int().min(1).max(1_000_000_000).default(DEFAULT_GUARD_MIN_ROWS).openapi({
      description: "Rows (scored for the error rate, compared for the agreement) before a figure is judged.",
      example: 1000,
    }),
    compare_sample: z.number().gt(0).max(1).default(DEFAULT_GUARD_COMPARE_SAMPLE).openapi({
      description:
        "With a canary and `min_agreement`: the share of the candidate's rows also scored by the stable version (off the caller's path) to measure agreement.",
      example: 0.1,
    }),
  })
  .refine((guard) => guard.max_error_rate !== undefined || guard.min_agreement !== undefined, {
    message: "a guard needs max_error_rate or min_agreement (or both)",
  })
  .openapi("AliasGuard");
export type AliasGuard = z.infer<typeof AliasGuardSchema>;

/** PUT /v1/models/{name}/aliases/{alias}: one version, or a split of several. */
export const PutAliasRequestSchema = requestObject({
  version: VersionNumberSchema.optional().openapi({ description: "Send all traffic to this version (the same as one route of weight 100).", example: 3 }),
  routes: z
    .array(AliasRouteSchema)
    .min(1)
    .max(10)
    .optional()
    .openapi({
      description: "A split: weights are whole percentages summing to 100. The first route is the stable version; the others are candidates.",
      example: [
        { version: 2, weight: 90 },
        { version: 3, weight: 10 },
      ],
    }),
  shadow: AliasShadowSchema.nullable().optional(),
  guard: AliasGuardSchema.nullable().optional(),
})
  .refine((body) => (body.version === undefined) !== (body.routes === undefined), {
    message: "give either version or routes",
    path: ["version"],
  })
  .openapi("PutAliasRequest", { example: { version: 1 } });
export type PutAliasRequest = z.infer<typeof PutAliasRequestSchema>;

/** An alias's routing as stored and shown (history entries carry it too). */
export const AliasRoutingSchema = z
  .object({
    routes: z.array(AliasRouteSchema),
    shadow: AliasShadowSchema.nullable(),
    guard: AliasGuardSchema.nullable(),
  })
  .openapi("AliasRouting");
export type AliasRouting = z.infer<typeof AliasRoutingSchema>;

export const AliasSchema = z
  .object({
    model: z.string().openapi({ example: "iris" }),
    name: z.string().openapi({ example: "production" }),
    ...AliasRoutingSchema.shape,
    revision: z.number().int().openapi({ description: "Grows with every change; the guard's figures count from the current revision." }),
    created_at: z.iso.datetime(),
    updated_at: z.iso.datetime(),
  })
  .openapi("Alias");
export type Alias = z.infer<typeof AliasSchema>;

export const AliasListSchema = z.object({ data: z.array(AliasSchema) }).openapi("AliasList");

export const ALIAS_ACTIONS = ["set", "delete", "rollback", "guard_rollback"] as const;

export const AliasGuardReasonSchema = z
  .object({
    figure: z.enum(["error_rate", "agreement"]),
    value: z.number(),
    limit: z.number(),
    version: z.number().int().openapi({ description: "The candidate version that crossed the limit." }),
    role: z.enum(["route", "shadow"]),
    rows: z.number().int().openapi({ description: "Rows the figure was measured over." }),
  })
  .openapi("AliasGuardReason");
export type AliasGuardReason = z.infer<typeof AliasGuardReasonSchema>;

export const AliasHistoryEntrySchema = z
  .object({
    id: z.string().openapi({ example: "42" }),
    at: z.iso.datetime(),
    action: z.enum(ALIAS_ACTIONS),
    key_id: z.string().nullable().openapi({ description: "The API key that made the change; null for the guard." }),
    before: AliasRoutingSchema.nullable(),
    after: AliasRoutingSchema.nullable(),
    reason: AliasGuardReasonSchema.nullable().openapi({ description: "guard_rollback: which figure crossed which limit." }),
    undone: z.boolean().openapi({ description: "A later rollback stepped back over this change." }),
  })
  .openapi("AliasHistoryEntry");
export type AliasHistoryEntry = z.infer<typeof AliasHistoryEntrySchema>;

export const AliasHistorySchema = z.object({ data: z.array(AliasHistoryEntrySchema) }).openapi("AliasHistory");

const VersionFiguresSchema = z
  .object({
    version: z.number().int(),
    role: z.enum(["route", "shadow"]),
    rows: z.number().int(),
    errors: z.number().int(),
    error_rate: z.number().nullable(),
    mean_run_ms: z.number().nullable().openapi({ description: "Mean onnxruntime run time of the batches its rows were in, per row." }),
  })
  .openapi("AliasVersionFigures");

const OutputComparisonSchema = z
  .object({
    output: z.string(),
    compared: z.number().int(),
    agreement: z.number().nullable().openapi({ description: "Share of compared rows with the same label / argmax; null for outputs without one." }),
    mean_abs_diff: z.number().nullable(),
    max_abs_diff: z.number().nullable(),
  })
  .openapi("AliasOutputComparison");

export const AliasComparisonSchema = z
  .object({
    model: z.string(),
    alias: z.string(),
    revision: z.number().int(),
    versions: z.array(VersionFiguresSchema),
    pairs: z.array(
      z.object({
        primary_version: z.number().int().openapi({ description: "The version that answered the caller." }),
        shadow_version: z.number().int().openapi({ description: "The version that scored the same rows beside it." }),
        compared: z.number().int(),
        agreement: z.number().nullable(),
        outputs: z.array(OutputComparisonSchema),
      }),
    ),
  })
  .openapi("AliasComparison");
export type AliasComparison = z.infer<typeof AliasComparisonSchema>;
