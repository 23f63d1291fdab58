import { createClient, type CoalesceClient } from "@coalesce/client";
import type { GlobalValues } from "./args.ts";
import type { CliEnv } from "./env.ts";
import { UsageError } from "./errors.ts";

export type Io = {
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
  stdin: NodeJS.ReadStream;
};

/** What a command gets: the streams, and a client built from the flags over the environment. */
export type CommandContext = {
  io: Io;
  env: CliEnv;
  connect(values: GlobalValues, command: string): CoalesceClient;
};

export function createContext(io: Io, env: CliEnv): CommandContext {
  return {
    io,
    env,
    connect(values, command) {
      const baseUrl = values.url ?? env.COALESCE_URL;
      try {
        return createClient({ baseUrl, apiKey: values["api-key"] ?? env.COALESCE_API_KEY });
      } catch {
        const source = values.url === undefined ? "COALESCE_URL" : "--url";
        throw new UsageError(`${source} is not an http(s) URL: '${baseUrl}' (e.g. http://127.0.0.1:3000)`, command);
      }
    },
  };
}
