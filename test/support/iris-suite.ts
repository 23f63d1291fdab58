import { afterAll, beforeAll, expect } from "vitest";
import type { ApiDeps } from "../../apps/api/src/context.ts";
import { readFeatureCsv, readModel } from "./fixtures.ts";
import { uploadModel } from "./http.ts";
import { createTestApi, createTestServices, type TestApi, type TestServices } from "./services.ts";

/** What a test file on the iris model works with; filled in by the suite's beforeAll. */
export type IrisSuite = { services: TestServices; api: TestApi; auth: string; features: number[][] };

/**
 * Registers the hooks most worker tests share: private services, the API in process, a tenant
 * with the iris model registered, and the iris features. Cleaned up after the file.
 */
export function useIrisSuite(tenant: string, limits: Partial<ApiDeps["limits"]> = {}): IrisSuite {
  const suite = {} as IrisSuite;
  beforeAll(async () => {
    suite.services = await createTestServices();
    suite.api = createTestApi(suite.services, limits);
    suite.auth = await suite.api.createTenant(tenant);
    suite.features = (await readFeatureCsv("iris")).features;
    expect((await uploadModel(suite.api, suite.auth, "iris", await readModel("iris"))).status).toBe(201);
  });
  afterAll(async () => {
    await suite.api?.close();
    await suite.services?.cleanup();
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
  expect((await uploadModel(suite.api, auth, "iris", await readModel("iris"))).status).toBe(201);
  return auth;
}
