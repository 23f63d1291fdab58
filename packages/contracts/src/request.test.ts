import { describe, expect, it } from "vitest";
import { z } from "@hono/zod-openapi";
import { closestField, pgText, requestObject } from "./request.ts";
import { MAX_TENSOR_NESTING, TensorRowSchema } from "./tensor.ts";

describe("requestObject", () => {
  const schema = requestObject({ model: z.string(), webhook_url: z.string().optional() });

  it("refuses an unknown key, suggesting the field it is closest to", () => {
    const result = schema.safeParse({ model: "iris", webhook_ur1: "https://example.com/" });
    expect(result.error?.issues).toEqual([
      expect.objectContaining({ code: "unrecognized_keys", keys: ["webhook_ur1"], message: "unknown field; did you mean webhook_url?" }),
    ]);
  });

  it("lists the fields when nothing is close, or several keys are unknown", () => {
    expect(schema.safeParse({ model: "iris", zzzzzz: 1 }).error?.issues[0]?.message).toBe("unknown field; the fields are model, webhook_url");
    expect(schema.safeParse({ model: "iris", a: 1, b: 2 }).error?.issues[0]?.message).toBe("unknown field; the fields are model, webhook_url");
  });

  it("keeps the default messages for everything else", () => {
    expect(schema.safeParse([]).error?.issues[0]?.code).toBe("invalid_type");
  });
});

describe("closestField", () => {
  it.each([
    ["webhook_ur1", "webhook_url"],
    ["Model", "model"],
    ["evnets", "events"],
    ["x", undefined],
    ["k".repeat(10_000), undefined],
  ])("%s -> %s", (key, expected) => {
    expect(closestField(key, ["model", "inputs", "events", "webhook_url"])).toBe(expected);
  });
});

describe("pgText", () => {
  it("refuses a NUL anywhere in the string", () => {
    expect(pgText().safeParse("a\u0000b").error?.issues[0]?.message).toBe("must not contain the NUL character (\\u0000)");
    expect(pgText(z.string().max(3)).safeParse("abcd").success).toBe(false);
    expect(pgText().safeParse("é😀").success).toBe(true);
  });
});

describe("TensorRowSchema", () => {
  const nested = (levels: number): unknown => JSON.parse(`${"[".repeat(levels)}1${"]".repeat(levels)}`);

  it("takes scalars and nested arrays of them", () => {
    expect(TensorRowSchema.safeParse({ features: [[1, 2], [true, "9007199254740993"]], label: 3 }).success).toBe(true);
  });

  it("names the element that is not a tensor value", () => {
    const issues = TensorRowSchema.safeParse({ features: [1, [2, { a: 1 }]] }).error?.issues;
    expect(issues).toEqual([expect.objectContaining({ path: ["features", 1, 1], message: "expected a number, boolean, string or an array of them, got object" })]);
    expect(TensorRowSchema.safeParse({ features: null }).error?.issues[0]?.path).toEqual(["features"]);
  });

  it("refuses nesting past any tensor without recursing (10,000 levels)", () => {
    expect(TensorRowSchema.safeParse({ x: nested(MAX_TENSOR_NESTING) }).success).toBe(true);
    const issues = TensorRowSchema.safeParse({ x: nested(10_000) }).error?.issues;
    expect(issues?.[0]?.message).toBe(`arrays nested deeper than ${MAX_TENSOR_NESTING} levels`);
    expect(issues?.[0]?.path).toHaveLength(MAX_TENSOR_NESTING + 1);
  });
});
