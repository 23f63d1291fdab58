import { beforeAll } from "vitest";
import type { ApiDeps } from "../../apps/api/src/context.ts";
import { registerIris, useApiSuite, type ApiSuite } from "./api-suite.ts";
import { readFeatureCsv } from "./fixtures.ts";

/** What a test file on the iris model works with; filled in by the suite's beforeAll. */
export type IrisSuite = ApiSuite & { features: number[][] };

/**
 * Registers the hooks most worker tests share: useApiSuite with the iris model registered, and
 * the iris features.
 */
export function useIrisSuite(tenant: string, limits: Partial<ApiDeps["limits"]> = {}): IrisSuite {
  const suite = useApiSuite(tenant, { limits, iris: true }) as IrisSuite;
  beforeAll(async () => {
    suite.features = (await readFeatureCsv("iris")).features;
  });
  return suite;
}

/** `count` iris rows, cycling through the data set. */
export function irisInputs(suite: IrisSuite, count: number): { features: number[] }[] {
  return Array.from({ length: count }, (_, i) => ({ features: suite.features[i % suite.features.length] as number[] }));
}

/** Another tenant with the iris model registered, e.g. so its webhook endpoints see only its own jobs. */
export async function irisTenant(suite: IrisSuite, name: string): Promise<string> {
  const auth = await suite.api.createTenant(name);
  await registerIris(suite.api, auth);
  return auth;
}
