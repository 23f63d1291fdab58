// `coalesce ...`: bin/coalesce.mjs runs this file's compiled form (dist/main.js).
import { run } from "./cli.ts";

// exitCode rather than exit(), so stdout is flushed into a pipe before the process ends.
process.exitCode = await run(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin });
