import { z } from "@hono/zod-openapi";
import { prefixedIdSchema } from "../params.ts";

export const WebhookIdParamsSchema = z.object({
  id: prefixedIdSchema("wh", "a webhook endpoint", "wh_01jdq3x8m7k2v9c4n5p6r7s8t9"),
});

export const DeliveryIdParamsSchema = z.object({
  id: prefixedIdSchema("dlv", "a delivery", "dlv_3f2a9c0e5b7d4e1f8a6b2c9d0e7f1a3b"),
});
