import { Transform, type TransformCallback } from "node:stream";
import { ApiError } from "../errors.ts";

/** What one CSV upload may hold, counted before the parser sees the bytes. */
export type CsvLimits = {
  /**
   * Fields a row may have beyond the header's: up to that, a longer row is a failed row; past it the
   * upload is refused at once, before the record is built (`1,` repeated is millions of fields a
   * megabyte, each an array slot to the parser, whose own size limit counts field characters only).
   * @defaultValue 1000
   */
  maxExtraFields: number;
  /** Fields of the header line (or, with header=false, of the first line). @defaultValue 1,000,000 */
  maxHeaderFields: number;
  /**
   * Empty lines (blank, or a lone `""`) in one upload, counted by ingestCsv as it skips them: nothing
   * else (max_errors, storage) would ever stop a file of nothing but line breaks, which costs the
   * parser a core for minutes.
   * @defaultValue 10,000
   */
  maxBlankLines: number;
  /** Bytes of one record, quoted line breaks included. @defaultValue 64 MiB */
  maxRecordBytes: number;
};

export const DEFAULT_CSV_LIMITS: CsvLimits = {
  maxExtraFields: 1000,
  maxHeaderFields: 1_000_000,
  maxBlankLines: 10_000,
  // A 1 MB line is ordinary (an image row); far beyond that is a broken file, not a row.
  maxRecordBytes: 64 * 1024 * 1024,
};

const COMMA = 0x2c;
const QUOTE = 0x22;
const LF = 0x0a;
const CR = 0x0d;

// Where the scan is within a record, as csv-parse with relax_quotes sees it: a quote opens a quoted
// field only at the start of a field; inside one, "" is a quote and a quote before anything but a
// delimiter or line break is taken as text (and the field goes on unquoted).
const FIELD_START = 0;
const UNQUOTED = 1;
const QUOTED = 2;
const AFTER_QUOTE = 3;

/**
 * Passes CSV bytes through unchanged while counting, quote-aware, the fields and bytes of each
 * record; fails the stream with a 422 (naming the line) the moment a count passes its limit, so a
 * record never grows past the limits in the parser and memory per upload stays bounded for any
 * input. The header's field count (its first non-blank record) sets the bound for the rows after it.
 * This is the one bound on a record's size: the parser's own (max_record_size) counts field
 * characters only, so is never the tighter of the two.
 */
export function guardCsv(limits: CsvLimits): Transform {
  let state = FIELD_START;
  let fields = 1;
  let recordBytes = 0;
  let recordLine = 1;
  let line = 1;
  let afterCr = false;
  let headerFields = -1;
  let maxFields = limits.maxHeaderFields;
  let atStart = true;

  const tooManyFields = () =>
    new ApiError(
      "validation_failed",
      headerFields < 0
        ? `the CSV cannot be read: the header (line ${recordLine}) has more than ${limits.maxHeaderFields} fields`
        : `the CSV cannot be read: line ${recordLine} has more than ${maxFields} fields (the header has ${headerFields}); nothing of the upload was kept`,
      [{ field: `line ${recordLine}`, message: `more than ${maxFields} fields` }],
    );
  const tooLarge = () =>
    new ApiError("validation_failed", `the CSV cannot be read: the record at line ${recordLine} is larger than ${limits.maxRecordBytes} bytes`);

  return new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      let start = 0;
      let i = 0;
      if (atStart) {
        atStart = false;
        // A byte order mark is not part of the first field (csv-parse drops it too).
        if (chunk[0] === 0xef && chunk[1] === 0xbb && chunk[2] === 0xbf) i = start = 3;
      }
      // The fast path, for the usual file (no quotes, short lines): a whole line is passed over at
      // once when it is too short to hold more fields or bytes than allowed (a field takes at least
      // a delimiter's byte), found by Buffer.indexOf (native) instead of a look at each byte. Only
      // after the header (whose fields must be counted) and outside quotes; a chunk with a quote
      // anywhere takes the byte-by-byte path throughout.
      const noQuotes = chunk.indexOf(QUOTE, i) === -1;
      while (i < chunk.length) {
        if (noQuotes && headerFields >= 0 && state !== QUOTED && state !== AFTER_QUOTE) {
          const lf = chunk.indexOf(LF, i);
          // A record that goes on in the next chunk is counted byte by byte: its fields so far matter there.
          if (lf !== -1 && fields + (lf - i) <= maxFields && recordBytes + (lf - i) <= limits.maxRecordBytes) {
            // A lone CR inside splits the line into records in the parser: each is shorter still.
            line++;
            afterCr = false;
            state = FIELD_START;
            fields = 1;
            recordBytes = 0;
            recordLine = line;
            i = start = lf + 1;
            continue;
          }
        }
        // Byte by byte to the end of this record (or of the chunk).
        let ended = false;
        for (; i < chunk.length && !ended; i++) {
          const byte = chunk[i] as number;
          if (state === QUOTED) {
            if (byte === QUOTE) state = AFTER_QUOTE;
            else if (byte === LF) line++;
            continue;
          }
          if (byte === QUOTE) {
            // At a field's start it opens a quoted field; after a closing quote it was "" (a quote).
            if (state === FIELD_START || state === AFTER_QUOTE) state = QUOTED;
            else state = UNQUOTED;
            afterCr = false;
            continue;
          }
          if (byte === COMMA) {
            afterCr = false;
            state = FIELD_START;
            if (++fields > maxFields) {
              callback(tooManyFields());
              return;
            }
            continue;
          }
          if (byte === LF || byte === CR) {
            if (byte === LF) line++;
            // CRLF is one line break.
            if (byte === LF && afterCr) {
              afterCr = false;
              start = i + 1;
              continue;
            }
            afterCr = byte === CR;
            recordBytes += i - start;
            if (recordBytes > limits.maxRecordBytes) {
              callback(tooLarge());
              return;
            }
            // Blank as the parser reads it: nothing, or a lone "" (an empty field, [""]), which
            // ingestCsv skips as a blank line; so it is not the header either.
            const blank = fields === 1 && (recordBytes === 0 ? state === FIELD_START : recordBytes === 2 && state === AFTER_QUOTE);
            if (!blank && headerFields < 0) {
              headerFields = fields;
              maxFields = fields + limits.maxExtraFields;
            }
            state = FIELD_START;
            fields = 1;
            recordBytes = 0;
            recordLine = line;
            start = i + 1;
            ended = true;
            continue;
          }
          afterCr = false;
          state = UNQUOTED;
        }
      }
      // The open record's bytes so far.
      recordBytes += chunk.length - start;
      if (recordBytes > limits.maxRecordBytes) {
        callback(tooLarge());
        return;
      }
      callback(null, chunk);
    },
  });
}
