import type { CommandContext } from "./context.ts";

/** One `coalesce ...` command. `name` is what follows `coalesce` (`models push`). */
export type Command = {
  name: string;
  /** One line for `coalesce --help`. */
  summary: string;
  /** The usage line(s), shown first in `coalesce NAME --help`. */
  usage: string;
  /** Everything after the usage: what it does, its options, an example. */
  help: string;
  /** Runs with the arguments after the command's name (global options included); returns the exit status. */
  run(args: string[], context: CommandContext): Promise<number>;
  /** Options that take a value, so the dispatcher can tell a value from the command's name. */
  valueOptions: string[];
};
