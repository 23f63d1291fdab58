import { afterAll, beforeAll, expect } from "vitest";
import type { ApiDeps } from "../../apps/api/src/context.ts";
import { readModel } from "./fixtures.ts";
import { uploadModel } from "./http.ts";
import { createTestApi, createTestServices, type TestApi, type TestServices } from "./services.ts";

/** Registers fixtures/iris.onnx as the tenant's model `iris`. */
export async function registerIris(api: TestApi, auth: string): Promise<void> {
  expect((await uploadModel(api, auth, "iris", await readModel("iris"))).status).toBe(201);
}

/** What an API test file works with; filled in by the suite's beforeAll. */
export type ApiSuite = { services: TestServices; api: TestApi; auth: string };

/**
 * Registers the hooks every API test file shares: private services, the API in process and a
 * tenant with a key (`auth`), with the iris model registered when `iris` is set. Cleaned up after
 * the file.
 */
export function useApiSuite(tenant: string, options: { limits?: Partial<ApiDeps["limits"]>; iris?: boolean } = {}): ApiSuite {
  const suite = {} as ApiSuite;
  beforeAll(async () => {
    suite.services = await createTestServices();
    suite.api = createTestApi(suite.services, options.limits);
    suite.auth = await suite.api.createTenant(tenant);
    if (options.iris) await registerIris(suite.api, suite.auth);
  });
  afterAll(async () => {
    await suite.api?.close();
    await suite.services?.cleanup();
  });
  return suite;
}
