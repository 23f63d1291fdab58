import { describe, expect, it } from "vitest";
import { parseColumnList, parseCommandArgs, parseMapOptions, parseWholeNumber, resolveFormat } from "./args.ts";
import { splitCommand } from "./cli.ts";
import { UsageError } from "./errors.ts";

describe("splitCommand", () => {
  it("finds the command's words wherever the options are, without taking an option's value for one", () => {
    expect(splitCommand(["--url", "http://x", "models", "push", "iris", "m.onnx"])).toEqual({
      words: ["models", "push"],
      rest: ["--url", "http://x", "iris", "m.onnx"],
      help: false,
    });
    expect(splitCommand(["-m", "iris", "submit", "data.csv", "--wait"]).words).toEqual(["submit"]);
    expect(splitCommand(["submit", "--help"])).toMatchObject({ words: ["submit"], help: true });
    expect(splitCommand(["status", "--", "--odd-id"])).toMatchObject({ words: ["status"], rest: ["--", "--odd-id"] });
  });
});

describe("option values", () => {
  it("--map takes INPUT=COLUMNS, once per input", () => {
    expect(parseMapOptions("submit", ["features=a,b, c", "mask=m"])).toEqual({ features: ["a", "b", "c"], mask: ["m"] });
    expect(() => parseMapOptions("submit", ["features"])).toThrow(UsageError);
    expect(() => parseMapOptions("submit", ["features="])).toThrow("--map takes INPUT=COLUMN");
    expect(() => parseMapOptions("submit", ["f=a", "f=b"])).toThrow("twice");
  });

  it("--ignore may repeat and hold commas", () => {
    expect(parseColumnList(["target,split", "note"])).toEqual(["target", "split", "note"]);
  });

  it("whole numbers only", () => {
    expect(parseWholeNumber("submit", "--max-errors", "0")).toBe(0);
    expect(() => parseWholeNumber("submit", "--max-errors", "-1")).toThrow("takes a whole number");
    expect(() => parseWholeNumber("jobs list", "--limit", "0", 1)).toThrow("of at least 1");
  });

  it("the format comes from --format, else the file's extension, else csv", () => {
    expect(resolveFormat("results", "ndjson", "x.csv")).toBe("ndjson");
    expect(resolveFormat("results", undefined, "out.jsonl")).toBe("ndjson");
    expect(resolveFormat("results", undefined, undefined)).toBe("csv");
    expect(() => resolveFormat("results", "xml", undefined)).toThrow("--format takes csv or ndjson");
  });

  it("an unknown or incomplete option is a usage error in a few words", () => {
    expect(() => parseCommandArgs("status", ["--bogus"], {})).toThrow(new UsageError("unknown option --bogus", "status"));
    expect(() => parseCommandArgs("status", ["--url"], {})).toThrow("--url needs a value");
  });
});
