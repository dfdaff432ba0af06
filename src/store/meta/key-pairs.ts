// Key pairs: only the public half is kept (CreateKeyPair hands the private key out once).
import type { MetaDb } from "./database.js";
import { atomically } from "./database.js";
import type { KeyPairTable } from "./schema.js";
import type { Scope } from "./tags.js";

export type KeyPairRow = KeyPairTable;

/** Inserts a key pair; false when the name is taken in the account and region. */
export async function insertKeyPair(db: MetaDb, row: KeyPairRow): Promise<boolean> {
  const result = await db
    .insertInto("key_pairs")
    .values(row)
    .onConflict((oc) => oc.columns(["account_id", "region", "key_name"]).doNothing())
    .executeTakeFirst();
  return Number(result.numInsertedOrUpdatedRows ?? 0) > 0;
}

export async function listKeyPairs(db: MetaDb, scope: Scope, q: { names?: readonly string[]; ids?: readonly string[] } = {}): Promise<KeyPairRow[]> {
  let query = db.selectFrom("key_pairs").selectAll().where("account_id", "=", scope.accountId).where("region", "=", scope.region);
  if (q.names) query = query.where("key_name", "in", q.names.length ? q.names : [""]);
  if (q.ids) query = query.where("key_pair_id", "in", q.ids.length ? q.ids : [""]);
  return query.orderBy("key_name").execute();
}

/** Removes the key pair named or numbered; the row removed, if there was one. */
export async function deleteKeyPair(db: MetaDb, scope: Scope, q: { name?: string; id?: string }): Promise<KeyPairRow | undefined> {
  return atomically(db, async (tx) => {
    let query = tx.selectFrom("key_pairs").selectAll().where("account_id", "=", scope.accountId).where("region", "=", scope.region);
    if (q.id) query = query.where("key_pair_id", "=", q.id);
    if (q.name) query = query.where("key_name", "=", q.name);
    const row = await query.executeTakeFirst();
    if (!row) return undefined;
    await tx.deleteFrom("key_pairs").where("key_pair_id", "=", row.key_pair_id).execute();
    await tx
      .deleteFrom("tags")
      .where("account_id", "=", scope.accountId)
      .where("region", "=", scope.region)
      .where("resource_id", "=", row.key_pair_id)
      .execute();
    return row;
  });
}
