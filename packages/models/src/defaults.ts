import { fileURLToPath } from "node:url";

/** `.data/models` in the repository: works on a developer machine with no configuration. */
export const DEFAULT_MODEL_STORE_DIR = fileURLToPath(new URL("../../../.data/models", import.meta.url));
