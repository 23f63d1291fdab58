import { describe, expect, it } from "vitest";
import { SingleFlight } from "./single-flight.ts";

describe("SingleFlight", () => {
  it("shares one read between concurrent callers of the same key", async () => {
    const flight = new SingleFlight<number>();
    let reads = 0;
    const read = async () => {
      reads++;
      await new Promise((resolve) => setTimeout(resolve, 5));
      return reads;
    };
    const answers = await Promise.all([flight.run("a", read), flight.run("a", read), flight.run("b", read)]);
    expect(answers[0]).toBe(answers[1]);
    expect(reads).toBe(2);
  });

  it("keeps nothing once a read settles, so the next caller reads again", async () => {
    const flight = new SingleFlight<number>();
    let reads = 0;
    const read = async () => ++reads;
    expect(await flight.run("a", read)).toBe(1);
    expect(await flight.run("a", read)).toBe(2);
  });

  it("gives every joined caller the failure, and the next caller a fresh read", async () => {
    const flight = new SingleFlight<number>();
    const failing = () => Promise.reject(new Error("database unreachable"));
    const joined = [flight.run("a", failing), flight.run("a", async () => 7)];
    for (const result of await Promise.allSettled(joined)) expect(result.status).toBe("rejected");
    expect(await flight.run("a", async () => 7)).toBe(7);
  });
});
