/**
 * The number with the fewest significant digits that reads back (as float32) to the same float32 as
 * `value`. A model's float32 output reaches JSON as a double, and JSON.stringify prints a double's
 * shortest text, 17 digits for most float32 values (`0.9999681711196899`); the float32 needs at most 9
 * (`0.99996817`). Results, downloads and predict answers are then about half as long, and
 * Math.fround(parsed) equals the model's output exactly. A value that is not a float32 (or not finite)
 * comes back as it is, and so does zero (keeping its sign).
 *
 * Reading back is monotone in the digits (more digits are at least as close), and 9 always suffice
 * for a float32. Most values need 7 to 9: try 7, then go down while fewer still read back, or up.
 */
export function shortestFloat32(value: number): number {
  if (value === 0 || !Number.isFinite(value) || Math.fround(value) !== value) return value;
  const seven = Number(value.toPrecision(7));
  if (Math.fround(seven) === value) {
    let best = seven;
    for (let digits = 6; digits >= 1; digits--) {
      const fewer = Number(value.toPrecision(digits));
      if (Math.fround(fewer) !== value) break;
      best = fewer;
    }
    return best;
  }
  const eight = Number(value.toPrecision(8));
  return Math.fround(eight) === value ? eight : Number(value.toPrecision(9));
}
