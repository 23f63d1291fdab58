import type { AliasGuardReason, AliasRouting } from "@coalesce/contracts";
import type { AliasPlan, PairFigures, VersionFigures } from "@coalesce/db";

/** The guard's verdict on an alias: the routing without the candidate that crossed a limit, and why. */
export type Verdict = { routing: AliasRouting; reason: AliasGuardReason };

/**
 * Judges an alias's candidates by its guard: a canary candidate (every route after the first) and
 * the shadow, each on its error rate (over its own rows) and its agreement (a candidate against the
 * stable version, the shadow against the versions it shadowed), each figure only once it is measured
 * over at least `min_rows` rows. The first candidate over a limit leaves the alias: a canary's
 * weight goes back to the stable version, a shadow is dropped; the guard stays while there is still
 * a candidate to watch. Null when every figure is within its limits (or not measured enough yet).
 */
export function judgeAlias(plan: AliasPlan, figures: { versions: VersionFigures[]; pairs: PairFigures[] }): Verdict | null {
  const guard = plan.guard;
  const stable = plan.routes[0];
  if (!guard || !stable) return null;
  const candidates: { version: number; role: "route" | "shadow" }[] = [
    ...plan.routes.slice(1).map((route) => ({ version: route.version, role: "route" as const })),
    ...(plan.shadow ? [{ version: plan.shadow.version, role: "shadow" as const }] : []),
  ];
  for (const candidate of candidates) {
    const reason = crossed(guard, candidate, stable.version, figures);
    if (reason) return { routing: without(plan, candidate), reason };
  }
  return null;
}

function crossed(
  guard: NonNullable<AliasPlan["guard"]>,
  candidate: { version: number; role: "route" | "shadow" },
  stableVersion: number,
  figures: { versions: VersionFigures[]; pairs: PairFigures[] },
): AliasGuardReason | null {
  const own = figures.versions.find((v) => v.version === candidate.version && v.role === candidate.role);
  if (guard.max_error_rate !== undefined && own && own.rows >= guard.min_rows && own.errorRate !== null && own.errorRate > guard.max_error_rate) {
    return { figure: "error_rate", value: own.errorRate, limit: guard.max_error_rate, version: candidate.version, role: candidate.role, rows: own.rows };
  }
  if (guard.min_agreement === undefined) return null;
  // The canary candidate beside the stable version; the shadow beside whichever versions it shadowed.
  const pairs =
    candidate.role === "route"
      ? figures.pairs.filter((pair) => pair.primaryVersion === candidate.version && pair.shadowVersion === stableVersion)
      : figures.pairs.filter((pair) => pair.shadowVersion === candidate.version);
  const labelled = pairs.reduce((sum, pair) => sum + (pair.agreement === null ? 0 : pair.labelled), 0);
  if (labelled < guard.min_rows || labelled === 0) return null;
  const agreed = pairs.reduce((sum, pair) => sum + (pair.agreement === null ? 0 : pair.agreement * pair.labelled), 0);
  const agreement = agreed / labelled;
  if (agreement >= guard.min_agreement) return null;
  return { figure: "agreement", value: agreement, limit: guard.min_agreement, version: candidate.version, role: candidate.role, rows: labelled };
}

/** The routing without one candidate. */
function without(plan: AliasPlan, candidate: { version: number; role: "route" | "shadow" }): AliasRouting {
  let routes = plan.routes.map(({ version, weight }) => ({ version, weight }));
  let shadow = plan.shadow ? { version: plan.shadow.version, sample: plan.shadow.sample } : null;
  if (candidate.role === "route") {
    const gone = routes.find((route) => route.version === candidate.version);
    routes = routes.filter((route) => route.version !== candidate.version);
    if (gone && routes[0]) routes[0] = { ...routes[0], weight: routes[0].weight + gone.weight };
  } else {
    shadow = null;
  }
  const watching = routes.length > 1 || shadow !== null;
  return { routes, shadow, guard: watching ? plan.guard : null };
}
