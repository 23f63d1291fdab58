import { findAlias, findModel, type AliasRecord } from "@coalesce/db";
import type { ApiDeps } from "../../context.ts";
import { ApiError } from "../../errors.ts";
import { noSuchModel } from "../model-resolver.ts";

/** The alias, or the 404 that says whether the model or only the alias is missing. */
export async function requireAlias(deps: Pick<ApiDeps, "db">, tenantId: string, name: string, alias: string): Promise<AliasRecord> {
  const found = await findAlias(deps.db, tenantId, name, alias);
  if (found) return found;
  throw await noSuchAlias(deps, tenantId, name, alias);
}

export async function noSuchAlias(deps: Pick<ApiDeps, "db">, tenantId: string, name: string, alias: string): Promise<ApiError> {
  if (!(await findModel(deps.db.prisma, tenantId, name))) return noSuchModel(name);
  return new ApiError("not_found", `model '${name}' has no alias '${alias}'; create it with PUT /v1/models/${name}/aliases/${alias}`);
}
