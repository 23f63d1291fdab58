/**
 * QUEUE_ADMIN: `off` removes /admin/queues, `read` shows the queues, `write` also lets an admin
 * retry, clean, pause or empty them. Apart from queue-admin.ts so that reading the environment
 * does not load bull-board.
 */
export const QUEUE_ADMIN_MODES = ["off", "read", "write"] as const;
export type QueueAdminMode = (typeof QUEUE_ADMIN_MODES)[number];
