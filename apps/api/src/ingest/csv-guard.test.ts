import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { describe, expect, it } from "vitest";
import { ApiError } from "../errors.ts";
import { DEFAULT_CSV_LIMITS, guardCsv, type CsvLimits } from "./csv-guard.ts";

/** Runs `text` through the guard in pieces of `piece` bytes: null when it passes, else the refusal. */
async function guard(text: string, limits: Partial<CsvLimits> = {}, piece = 64 * 1024): Promise<string | null> {
  const bytes = Buffer.from(text);
  const parts: Buffer[] = [];
  for (let at = 0; at < bytes.length; at += piece) parts.push(bytes.subarray(at, at + piece));
  let out = 0;
  try {
    await pipeline(Readable.from(parts), guardCsv({ ...DEFAULT_CSV_LIMITS, ...limits }), async (source: AsyncIterable<Buffer>) => {
      for await (const part of source) out += part.length;
    });
  } catch (error) {
    if (error instanceof ApiError) return error.message;
    throw error;
  }
  // It passes the bytes through unchanged.
  expect(out).toBe(bytes.length);
  return null;
}

const HEADER = "a,b,c,d\n";
const row = (fields: number, line = "x") => `${Array(fields).fill(line).join(",")}\n`;

describe("guardCsv", () => {
  it("takes a lone \"\" line for blank, as the parser and ingest do, not for the header", async () => {
    const wideHeader = `${Array.from({ length: 10 }, (_, i) => `c${i}`).join(",")}\n`;
    expect(await guard(`""\n${wideHeader}${row(10)}`, { maxExtraFields: 1 })).toBeNull();
    expect(await guard(`""\r\n\n${wideHeader}${row(10)}`, { maxExtraFields: 1 })).toBeNull();
    // Not blank: two fields, or a quoted space.
    expect(await guard(`"",""\n${wideHeader}`, { maxExtraFields: 1 })).toMatch(/line 2 has more than 3 fields/);
    expect(await guard(`" "\n${wideHeader}`, { maxExtraFields: 1 })).toMatch(/line 2 has more than 2 fields/);
  });

  it("refuses a row with too many fields at the same line whatever the chunking, with or without quotes in the chunk", async () => {
    // 30 short rows, then one of 2,000 fields (longer than the bound in bytes, so counted byte by byte).
    const body = `${HEADER}${row(4).repeat(30)}${row(2_000)}${row(4)}`;
    for (const piece of [1, 2, 3, 7, 16, 64, 1000, 64 * 1024]) {
      expect(await guard(body, {}, piece), `pieces of ${piece}`).toMatch(/line 32 has more than 1004 fields \(the header has 4\)/);
      expect(await guard(`${HEADER}"q",x,x,x\n${body.slice(HEADER.length)}`, {}, piece), `pieces of ${piece}, quoted`).toMatch(/line 33 has more than 1004 fields/);
    }
    // Just at the bound passes.
    expect(await guard(`${HEADER}${row(4).repeat(30)}${row(1_004)}`, {}, 100)).toBeNull();
  });

  it("counts lines through CRLF, lone CR and quoted line breaks alike on both paths", async () => {
    const body = `${HEADER}x,x\r\nx,"a\nb",x\n${row(4).repeat(5)}x\rx,x\n${row(20)}`;
    for (const piece of [1, 5, 64 * 1024]) expect(await guard(body, { maxExtraFields: 2 }, piece), `pieces of ${piece}`).toMatch(/line 11 has more than 6 fields/);
    const unquoted = `${HEADER}x,x\r\n${row(4).repeat(5)}x,x\n${row(20)}`;
    for (const piece of [1, 5, 64 * 1024]) expect(await guard(unquoted, { maxExtraFields: 2 }, piece), `pieces of ${piece}`).toMatch(/line 9 has more than 6 fields/);
  });

  it("bounds a record's bytes exactly, delimiters and quotes included, so the parser needs no bound of its own", async () => {
    const limits = { maxRecordBytes: 100, maxExtraFields: 1_000 };
    const cells = (bytes: number) => `${"x".repeat(bytes)}\n`;
    // A record of exactly the bound passes, in one chunk or across many; one byte more is refused.
    for (const piece of [7, 64 * 1024]) {
      expect(await guard(`${HEADER}${cells(100)}${row(4)}`, limits, piece)).toBeNull();
      expect(await guard(`${HEADER}${cells(101)}${row(4)}`, limits, piece)).toMatch(/record at line 2 is larger than 100 bytes/);
      // Empty fields count: 101 bytes of commas is a record too large.
      expect(await guard(`${HEADER}${",".repeat(101)}\n`, { ...limits, maxExtraFields: 1_000 }, piece)).toMatch(/record at line 2 is larger than 100 bytes/);
    }
  });
});
