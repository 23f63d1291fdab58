import type { OptionSpecs } from "./args.ts";
import type { CommandContext } from "./context.ts";

/** One `coalesce ...` command. `name` is what follows `coalesce` (`models push`). */
export type Command = {
  name: string;
  /** One line for `coalesce --help`. */
  summary: string;
  /** `coalesce NAME --help`: usage line, what it does, options, an example. */
  help: string;
  /** Its own options (the global ones come on top); the dispatcher reads which take a value. */
  options: OptionSpecs;
  /** Runs with the arguments after the command's name (global options included); returns the exit status. */
  run(args: string[], context: CommandContext): Promise<number>;
};
