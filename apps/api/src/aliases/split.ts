import { createHash } from "node:crypto";
import type { AliasRoute } from "@coalesce/contracts";

/**
 * Picks one of an alias's routes by weight. Each request falls in a bucket from 0 to 99, and the
 * routes own consecutive ranges of buckets in their order (90/10: the first owns 0-89, the second
 * 90-99). With a routing key the bucket is a hash of it (and of the model and alias name), so the same key always
 * lands on the same version; and since the first (stable) route's range only shrinks as a canary
 * grows, a key that reached the canary at 10 % still reaches it at 20 %. Without a key it is random.
 */
export function chooseRoute(routes: readonly AliasRoute[], key: string, keyed: boolean): AliasRoute {
  if (routes.length === 1) return routes[0]!;
  const bucket = keyed ? bucketOf(key) : Math.floor(Math.random() * 100);
  let end = 0;
  for (const route of routes) {
    end += route.weight;
    if (bucket < end) return route;
  }
  // Weights sum to 100 (checked when the alias is set), so this is only reached by rounding.
  return routes[routes.length - 1]!;
}

/** 0-99 from the first 6 bytes of the key's sha256: uniform, and the same in every process. */
export function bucketOf(key: string): number {
  return createHash("sha256").update(key).digest().readUIntBE(0, 6) % 100;
}
