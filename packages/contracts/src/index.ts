export * from "./errors.ts";
export * from "./jobs.ts";
export * from "./models.ts";
export * from "./queue.ts";
export * from "./tensor.ts";
export * from "./env.ts";
export * from "./webhooks.ts";
export * from "./transient.ts";
