/** Where progress goes: stderr, which is a TTY when a person watches. */
export type ProgressStream = { write(text: string): unknown; isTTY?: boolean; columns?: number };

export type ProgressOptions = {
  /**
   * Least time between two redraws on a terminal.
   * @defaultValue 100
   */
  redrawMs?: number;
  /**
   * Least time between two lines when the stream is not a terminal (a log file, CI).
   * @defaultValue 5000
   */
  plainLineMs?: number;
  /** Clock, for tests. @defaultValue Date.now */
  now?: () => number;
};

export type ProgressBar = {
  /** `fraction` 0..1, or null when the total is unknown; `detail` follows the percentage. */
  update(fraction: number | null, detail: string): void;
  /** Replaces the bar with a final line (or just ends it). */
  finish(line?: string): void;
};

const BAR_WIDTH = 20;
/** Labels are padded to this, so an upload bar and a scoring bar line up. */
const LABEL_WIDTH = 7;
const CLEAR_LINE = "\r\x1b[K";

/**
 * One line redrawn in place with `\r` on a terminal; elsewhere an occasional plain line, so logs
 * stay readable. Small enough that a dependency would not pay for itself.
 */
export function createProgressBar(stream: ProgressStream, label: string, options: ProgressOptions = {}): ProgressBar {
  const now = options.now ?? Date.now;
  const tty = stream.isTTY === true;
  const interval = tty ? (options.redrawMs ?? 100) : (options.plainLineMs ?? 5000);
  // A terminal shows the bar at once; a log gets its first line only once the work has taken a while.
  let last = tty ? Number.NEGATIVE_INFINITY : now();
  let drawn = false;

  return {
    update(fraction, detail) {
      const time = now();
      const done = fraction !== null && fraction >= 1;
      if (time - last < interval && !(tty && done)) return;
      last = time;
      if (tty) {
        // A pseudo-terminal without a size reports 0 columns.
        const line = renderBar(label, fraction, detail, stream.columns || 80);
        stream.write(`${CLEAR_LINE}${line}`);
        drawn = true;
      } else {
        const percent = fraction === null ? "" : ` ${Math.floor(fraction * 100)}%`;
        stream.write(`${label}:${percent} ${detail}\n`);
      }
    },
    finish(line) {
      if (tty && drawn) stream.write(CLEAR_LINE);
      if (line !== undefined) stream.write(`${line}\n`);
      drawn = false;
    },
  };
}

/** `upload   [████████░░░░░░░░░░░░]  41%  2.05 MB / 5.00 MB  12.3 MB/s`, cut to the terminal's width. */
export function renderBar(label: string, fraction: number | null, detail: string, columns: number): string {
  let line: string;
  const name = label.padEnd(LABEL_WIDTH);
  if (fraction === null) {
    line = `${name}  ${detail}`;
  } else {
    const clamped = Math.min(1, Math.max(0, fraction));
    const filled = Math.round(clamped * BAR_WIDTH);
    const bar = `[${"█".repeat(filled)}${"░".repeat(BAR_WIDTH - filled)}]`;
    line = `${name}  ${bar} ${`${Math.floor(clamped * 100)}%`.padStart(4)}  ${detail}`;
  }
  // A line longer than the terminal wraps, and \r then redraws only its last part.
  return line.length >= columns ? line.slice(0, Math.max(0, columns - 1)) : line;
}
