import { describe, expect, it } from "vitest";
import { formatBytes, formatDuration, formatEta, formatTable } from "./format.ts";
import { createProgressBar, renderBar } from "./progress.ts";

describe("formatting", () => {
  it("bytes in SI units, durations that read naturally", () => {
    expect([formatBytes(512), formatBytes(4400), formatBytes(12_345_678)]).toEqual(["512 B", "4.40 kB", "12.3 MB"]);
    expect([formatDuration(0.42), formatDuration(3.21), formatDuration(42.4), formatDuration(125), formatDuration(3720)]).toEqual([
      "0.42 s",
      "3.2 s",
      "42 s",
      "2 min 05 s",
      "1 h 02 min",
    ]);
    expect([formatEta(0.3), formatEta(3.2)]).toEqual(["<1 s", "4 s"]);
  });

  it("tables align every column but the last", () => {
    expect(formatTable(["A", "BB"], [["xyz", "1"]])).toBe("A    BB\nxyz  1");
  });
});

describe("progress bar", () => {
  it("draws a bar with the percentage, cut to the terminal's width", () => {
    expect(renderBar("upload", 0.5, "1 MB / 2 MB", 80)).toBe("upload   [██████████░░░░░░░░░░]  50%  1 MB / 2 MB");
    expect(renderBar("upload", null, "1 MB", 80)).toBe("upload   1 MB");
    expect(renderBar("upload", 1, "x".repeat(100), 40)).toHaveLength(39);
  });

  it("redraws in place on a terminal, ending with the final line", () => {
    let out = "";
    const bar = createProgressBar({ isTTY: true, columns: 80, write: (text: string) => (out += text) }, "scoring", { redrawMs: 0 });
    bar.update(0.25, "a");
    bar.update(1, "b");
    bar.finish("done");
    expect(out).toBe("\r\x1b[Kscoring  [█████░░░░░░░░░░░░░░░]  25%  a\r\x1b[Kscoring  [████████████████████] 100%  b\r\x1b[Kdone\n");
  });

  it("elsewhere writes an occasional plain line, none for quick work", () => {
    let out = "";
    let clock = 0;
    const bar = createProgressBar({ write: (text: string) => (out += text) }, "upload", { plainLineMs: 5000, now: () => clock });
    bar.update(0.1, "early");
    clock = 6000;
    bar.update(0.5, "later");
    clock = 7000;
    bar.update(0.6, "too soon");
    bar.finish("uploaded");
    expect(out).toBe("upload: 50% later\nuploaded\n");
  });
});
