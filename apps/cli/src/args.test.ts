import { describe, expect, it } from "vitest";
import { parseColumnList, parseCommandArgs, parseMapOptions, parseVersionPair, parseVersionRef, parseWholeNumber, resolveFormat } from "./args.ts";
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
    // Groups nest: `models alias set` is three words, and what follows a command is its arguments.
    expect(splitCommand(["models", "alias", "set", "iris", "production", "2", "--canary", "3=10"])).toMatchObject({
      words: ["models", "alias", "set"],
      rest: ["iris", "production", "2", "--canary", "3=10"],
    });
    expect(splitCommand(["models", "rm", "iris@2"]).words).toEqual(["models", "rm"]);
    expect(splitCommand(["models", "label", "iris@2", "--description", "x", "stage=prod"])).toMatchObject({ words: ["models", "label"], rest: ["iris@2", "--description", "x", "stage=prod"] });
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

  it("NAME@VERSION and VERSION=VALUE", () => {
    expect(parseVersionRef("models rm", "iris@2")).toEqual({ name: "iris", version: 2 });
    expect(() => parseVersionRef("models rm", "iris")).toThrow("NAME@VERSION");
    expect(() => parseVersionRef("models rm", "iris@canary")).toThrow("NAME@VERSION");
    expect(parseVersionPair("x", "--canary", "3=10", "PERCENT", "3=10")).toEqual({ version: 3, value: "10" });
    expect(() => parseVersionPair("x", "--canary", "3", "PERCENT", "3=10")).toThrow("--canary takes VERSION=PERCENT, e.g. --canary 3=10; got '3'");
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
