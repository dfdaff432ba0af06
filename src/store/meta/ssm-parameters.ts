// An account's own SSM parameters, one row each (the current version), with their tags.
import { sql } from "kysely";
import type { MetaDb } from "./database.js";
import { atomically } from "./database.js";
import type { SsmParameterTable } from "./schema.js";
import type { Scope } from "./tags.js";

export type SsmParameterRow = SsmParameterTable;

const own = (db: MetaDb, scope: Scope) =>
  db.selectFrom("ssm_parameters").selectAll().where("account_id", "=", scope.accountId).where("region", "=", scope.region);

export async function ssmParameter(db: MetaDb, scope: Scope, name: string): Promise<SsmParameterRow | undefined> {
  return own(db, scope).where("name", "=", name).executeTakeFirst();
}

export async function ssmParametersNamed(db: MetaDb, scope: Scope, names: readonly string[]): Promise<SsmParameterRow[]> {
  return names.length ? own(db, scope).where("name", "in", names).execute() : [];
}

/** Parameters in name order after `after`, whose names begin with `prefix`: a page of candidates for a filtered listing. */
export async function ssmParametersAfter(db: MetaDb, scope: Scope, q: { prefix?: string; after?: string; limit: number }): Promise<SsmParameterRow[]> {
  let query = own(db, scope);
  if (q.prefix) query = query.where(sql<boolean>`substr(name, 1, ${q.prefix.length}) = ${q.prefix}`);
  if (q.after !== undefined) query = query.where("name", ">", q.after);
  return query.orderBy("name").limit(q.limit).execute();
}

export async function countSsmParameters(db: MetaDb, scope: Scope): Promise<number> {
  const row = await db
    .selectFrom("ssm_parameters")
    .select((eb) => eb.fn.countAll<number>().as("n"))
    .where("account_id", "=", scope.accountId)
    .where("region", "=", scope.region)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

type NewValue = Pick<SsmParameterRow, "type" | "value" | "description" | "allowed_pattern" | "tier" | "data_type" | "key_id" | "last_modified">;

/** A new parameter at version 1; false when the name is taken. */
export async function insertSsmParameter(db: MetaDb, scope: Scope, name: string, value: NewValue, tags: readonly [string, string][]): Promise<boolean> {
  const result = await db
    .insertInto("ssm_parameters")
    .values({ account_id: scope.accountId, region: scope.region, name, ...value, version: 1, tags: JSON.stringify(tags) })
    .onConflict((oc) => oc.columns(["account_id", "region", "name"]).doNothing())
    .executeTakeFirst();
  return Number(result.numInsertedOrUpdatedRows ?? 0) > 0;
}

/** A parameter's next version; its version after, or undefined when there is no such parameter. */
export async function overwriteSsmParameter(db: MetaDb, scope: Scope, name: string, value: NewValue): Promise<number | undefined> {
  return atomically(db, async (tx) => {
    await tx
      .updateTable("ssm_parameters")
      .set((eb) => ({ ...value, version: eb("version", "+", 1) }))
      .where("account_id", "=", scope.accountId)
      .where("region", "=", scope.region)
      .where("name", "=", name)
      .execute();
    const row = await tx
      .selectFrom("ssm_parameters")
      .select("version")
      .where("account_id", "=", scope.accountId)
      .where("region", "=", scope.region)
      .where("name", "=", name)
      .executeTakeFirst();
    return row?.version;
  });
}

/** Removes the parameters named; the names that were there. */
export async function deleteSsmParameters(db: MetaDb, scope: Scope, names: readonly string[]): Promise<string[]> {
  if (names.length === 0) return [];
  return atomically(db, async (tx) => {
    const present = await tx
      .selectFrom("ssm_parameters")
      .select("name")
      .where("account_id", "=", scope.accountId)
      .where("region", "=", scope.region)
      .where("name", "in", names)
      .execute();
    if (present.length)
      await tx
        .deleteFrom("ssm_parameters")
        .where("account_id", "=", scope.accountId)
        .where("region", "=", scope.region)
        .where(
          "name",
          "in",
          present.map((p) => p.name),
        )
        .execute();
    return present.map((p) => p.name);
  });
}

/** Rewrites a parameter's tags with `change` (which sees the current list); false when there is no such parameter. */
export async function changeSsmParameterTags(
  db: MetaDb,
  scope: Scope,
  name: string,
  change: (tags: [string, string][]) => [string, string][],
): Promise<boolean> {
  return atomically(db, async (tx) => {
    // Touching the row first holds it (PostgreSQL's row lock; SQLite's write lock) until the new tags are in.
    const held = await tx
      .updateTable("ssm_parameters")
      .set((eb) => ({ tags: eb.ref("tags") }))
      .where("account_id", "=", scope.accountId)
      .where("region", "=", scope.region)
      .where("name", "=", name)
      .executeTakeFirst();
    if (Number(held.numUpdatedRows) === 0) return false;
    const row = await tx
      .selectFrom("ssm_parameters")
      .select("tags")
      .where("account_id", "=", scope.accountId)
      .where("region", "=", scope.region)
      .where("name", "=", name)
      .executeTakeFirstOrThrow();
    const tags = change(JSON.parse(row.tags) as [string, string][]);
    await tx
      .updateTable("ssm_parameters")
      .set({ tags: JSON.stringify(tags) })
      .where("account_id", "=", scope.accountId)
      .where("region", "=", scope.region)
      .where("name", "=", name)
      .execute();
    return true;
  });
}
