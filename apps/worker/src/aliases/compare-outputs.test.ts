import { describe, expect, it } from "vitest";
import { compareOutputs } from "./compare-outputs.ts";

const IRIS_OUTPUTS = [
  { name: "label", type: "int64", shape: ["N"] },
  { name: "probabilities", type: "float32", shape: ["N", 3] },
];

describe("compareOutputs", () => {
  it("agrees on an equal label and a same argmax, and measures the float differences", () => {
    const [label, probabilities] = compareOutputs(
      { label: 0, probabilities: [0.9, 0.08, 0.02] },
      { label: 0, probabilities: [0.7, 0.2, 0.1] },
      IRIS_OUTPUTS,
    );
    expect(label).toMatchObject({ output: "label", labelled: true, agreed: true, values: 0 });
    expect(probabilities).toMatchObject({ output: "probabilities", labelled: true, agreed: true, values: 3 });
    expect(probabilities!.absDiffSum).toBeCloseTo(0.2 + 0.12 + 0.08);
    expect(probabilities!.absDiffMax).toBeCloseTo(0.2);
  });

  it("disagrees on another label or argmax", () => {
    const [label, probabilities] = compareOutputs({ label: 0, probabilities: [0.9, 0.1, 0] }, { label: 2, probabilities: [0.1, 0.1, 0.8] }, IRIS_OUTPUTS);
    expect(label).toMatchObject({ labelled: true, agreed: false });
    expect(probabilities).toMatchObject({ labelled: true, agreed: false });
  });

  it("has no label for a float scalar, only its difference", () => {
    const [score] = compareOutputs({ score: [1.5] }, { score: [1.25] }, [{ name: "score", type: "float32", shape: ["N", 1] }]);
    expect(score).toMatchObject({ labelled: false, values: 1, absDiffSum: 0.25, absDiffMax: 0.25 });
  });

  it("compares strings and big int64 strings as labels", () => {
    const specs = [
      { name: "name", type: "string", shape: ["N"] },
      { name: "id", type: "int64", shape: ["N"] },
    ];
    const [name, id] = compareOutputs({ name: "setosa", id: "9007199254740993" }, { name: "setosa", id: "9007199254740993" }, specs);
    expect(name).toMatchObject({ labelled: true, agreed: true });
    expect(id).toMatchObject({ labelled: true, agreed: true });
  });

  it("counts a different element count as a disagreement and skips NaNs (null) in differences", () => {
    const [probabilities] = compareOutputs({ probabilities: [0.5, 0.5] }, { probabilities: [0.3, 0.3, 0.4] }, IRIS_OUTPUTS.slice(1));
    expect(probabilities).toMatchObject({ labelled: true, agreed: false, values: 0 });
    const [withNan] = compareOutputs({ probabilities: [null as unknown as number, 0.5, 0.2] }, { probabilities: [0.1, 0.25, 0.2] }, IRIS_OUTPUTS.slice(1));
    expect(withNan).toMatchObject({ values: 2, absDiffSum: 0.25 });
  });

  it("skips the NaNs and infinities of a run's raw outputs, so the sums stay finite", () => {
    const [probabilities] = compareOutputs({ probabilities: [Number.NaN, Infinity, 0.2] }, { probabilities: [0.1, Infinity, 0.5] }, IRIS_OUTPUTS.slice(1));
    expect(probabilities).toMatchObject({ values: 1, labelled: true });
    expect(probabilities!.absDiffSum).toBeCloseTo(0.3);
    expect(Number.isFinite(probabilities!.absDiffMax)).toBe(true);
  });

  it("skips outputs one side lacks", () => {
    expect(compareOutputs({ label: 1 }, {}, IRIS_OUTPUTS)).toEqual([]);
  });
});
