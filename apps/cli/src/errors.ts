import { CoalesceApiError, CoalesceConnectionError, CoalesceResponseError } from "@coalesce/client";
import { ConfigError } from "@coalesce/contracts";

/** The command line itself is wrong: exit 2, with a pointer to the command's help. */
export class UsageError extends Error {
  override name = "UsageError";
  readonly command: string | undefined;
  constructor(message: string, command?: string) {
    super(message);
    this.command = command;
  }
}

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
/** 128 + SIGINT, as shells report it. */
export const EXIT_INTERRUPTED = 130;

/** Something the user can fix, already worded for them: printed without a stack. */
export class CliError extends Error {
  override name = "CliError";
  readonly exitCode: number;
  constructor(message: string, exitCode = EXIT_FAILURE) {
    super(message);
    this.exitCode = exitCode;
  }
}

const UNREACHABLE_CODES = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ETIMEDOUT",
  "UND_ERR_CONNECT_TIMEOUT",
]);
const FIELD_ERRORS_SHOWN = 5;

/** What to print for an error and the exit status: one line for the common mistakes, never a stack. */
export function describeError(error: unknown): { message: string; exitCode: number } {
  if (error instanceof UsageError) {
    const help = error.command ? `coalesce ${error.command} --help` : "coalesce --help";
    return { message: `error: ${error.message}\nsee \`${help}\``, exitCode: EXIT_USAGE };
  }
  if (error instanceof ConfigError) return { message: `error: ${error.message}`, exitCode: EXIT_USAGE };
  if (error instanceof CliError) {
    // Ctrl-C is the user's choice, not a failure to report as one.
    const prefix = error.exitCode === EXIT_INTERRUPTED ? "" : "error: ";
    return { message: `${prefix}${error.message}`, exitCode: error.exitCode };
  }
  if (error instanceof CoalesceResponseError) return { message: `error: ${error.message}`, exitCode: EXIT_FAILURE };
  if (error instanceof CoalesceConnectionError) {
    const message =
      error.code !== null && UNREACHABLE_CODES.has(error.code)
        ? `cannot reach Coalesce at ${error.url}: is it running? Start it with \`npm start\`, or set COALESCE_URL`
        : error.message;
    return { message: `error: ${message}`, exitCode: EXIT_FAILURE };
  }
  if (error instanceof CoalesceApiError) return { message: `error: ${describeApiError(error)}`, exitCode: EXIT_FAILURE };
  const message = error instanceof Error ? error.message : String(error);
  return { message: `error: unexpected: ${message} (set COALESCE_DEBUG=1 for the stack)`, exitCode: EXIT_FAILURE };
}

function describeApiError(error: CoalesceApiError): string {
  if (error.status === 401) return "the API key was refused (401): set COALESCE_API_KEY or pass --api-key";
  if (error.status === 422 && error.errors.length > 0) {
    const [only] = error.errors;
    if (error.errors.length === 1 && only && error.detail === `${only.field}: ${only.message}`) return error.detail;
    const lines = error.errors.slice(0, FIELD_ERRORS_SHOWN).map((e) => `  ${e.field}: ${e.message}`);
    const more = error.errors.length - FIELD_ERRORS_SHOWN;
    if (more > 0) lines.push(`  (and ${more} more)`);
    return [error.detail, ...lines].join("\n");
  }
  if (error.status >= 500) return `${error.detail} (${error.status}${error.requestId ? `, request ${error.requestId}` : ""})`;
  return error.detail;
}

/** `cannot read data.csv: no such file` for the file errors people make. */
export function fileError(file: string, error: unknown): Error {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const reasons: Record<string, string> = {
    ENOENT: "no such file",
    EISDIR: "it is a directory",
    EACCES: "permission denied",
    EPERM: "permission denied",
  };
  const reason = code ? reasons[code] : undefined;
  return reason ? new CliError(`cannot read ${file}: ${reason}`) : (error as Error);
}
