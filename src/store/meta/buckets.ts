// S3 buckets: names global across accounts, each owned by one account in one region.
import type { MetaDb } from "./database.js";
import type { BucketTable } from "./schema.js";

export type BucketRow = BucketTable;

/** Inserts a bucket; false when the name is taken (by anyone). */
export async function insertBucket(db: MetaDb, row: BucketRow): Promise<boolean> {
  const result = await db
    .insertInto("buckets")
    .values(row)
    .onConflict((oc) => oc.column("name").doNothing())
    .executeTakeFirst();
  return Number(result.numInsertedOrUpdatedRows ?? 0) > 0;
}

export function getBucket(db: MetaDb, name: string): Promise<BucketRow | undefined> {
  return db.selectFrom("buckets").selectAll().where("name", "=", name).executeTakeFirst();
}

/** An account's buckets, in name order (every region, as ListBuckets answers). */
export function listBuckets(db: MetaDb, accountId: string): Promise<BucketRow[]> {
  return db.selectFrom("buckets").selectAll().where("account_id", "=", accountId).orderBy("name").execute();
}

export async function deleteBucket(db: MetaDb, name: string): Promise<void> {
  await db.deleteFrom("buckets").where("name", "=", name).execute();
}
