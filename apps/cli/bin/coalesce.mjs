#!/usr/bin/env node
// The installed `coalesce` command runs the compiled CLI (`npm ci` builds it; after editing the source,
// `npm run build`).
await import("../dist/main.js").catch((error) => {
  if (error?.code !== "ERR_MODULE_NOT_FOUND" || !String(error.message).includes("/dist/main.js")) throw error;
  console.error("coalesce: the CLI is not built yet; run `npm run build` in the repository first.");
  process.exit(1);
});
