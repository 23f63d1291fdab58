import { describe, expect, it } from "vitest";
import { parseCell } from "./csv-row.ts";

describe("parseCell", () => {
  it("reads the small integer types exactly, within their ranges", () => {
    expect(parseCell("-128", "int8")).toEqual({ value: -128 });
    expect(parseCell(" 127 ", "int8")).toEqual({ value: 127 });
    expect(parseCell("255", "uint8")).toEqual({ value: 255 });
    expect(parseCell("-32768", "int16")).toEqual({ value: -32768 });
    expect(parseCell("65535", "uint16")).toEqual({ value: 65535 });
    expect(parseCell("200", "int8")).toEqual({ problem: "200 is out of int8 range" });
    expect(parseCell("-1", "uint8")).toEqual({ problem: "-1 is out of uint8 range" });
    expect(parseCell("65536", "uint16")).toEqual({ problem: "65536 is out of uint16 range" });
    expect(parseCell("1.5", "uint16")).toEqual({ problem: "'1.5' is not an integer" });
    expect(parseCell("", "int16")).toEqual({ problem: "the cell is empty" });
    expect(parseCell("2147483648", "int32")).toEqual({ problem: "2147483648 is out of int32 range" });
  });

  it("reads float16 cells as numbers within ±65504 (rounded when the rows are packed)", () => {
    expect(parseCell("65504", "float16")).toEqual({ value: 65504 });
    expect(parseCell("-0.1", "float16")).toEqual({ value: -0.1 });
    expect(parseCell("65505", "float16")).toEqual({ problem: "65505 is out of float16 range" });
    expect(parseCell("1e5", "float16")).toEqual({ problem: "1e5 is out of float16 range" });
    expect(parseCell("abc", "float16")).toEqual({ problem: "'abc' is not a number" });
  });

  it("takes a string cell as it is, empty and spaced ones too, up to 64 KiB of UTF-8", () => {
    expect(parseCell("  hello, world ", "string")).toEqual({ value: "  hello, world " });
    expect(parseCell("", "string")).toEqual({ value: "" });
    expect(parseCell("5.1", "string")).toEqual({ value: "5.1" });
    const most = "é".repeat(32 * 1024);
    expect(parseCell(most, "string")).toEqual({ value: most });
    expect(parseCell(`${most}!`, "string")).toEqual({ problem: "the cell holds 65537 bytes of text, more than the 65536 a string may have" });
    expect(parseCell("a\0b", "string")).toEqual({ problem: "the cell holds a NUL character, which onnxruntime cannot take inside a string" });
  });

  it("still refuses types it cannot read", () => {
    expect(parseCell("1", "uint32")).toEqual({ problem: "input type uint32 cannot be read from CSV" });
  });
});
