#!/usr/bin/env node
// The installed `coalesce` command: the CLI is TypeScript run by tsx, like every process in this repository.
import { register } from "tsx/esm/api";

register();
await import("../src/main.ts");
