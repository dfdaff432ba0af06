// S3 objects, multipart uploads and their parts. Rows name blobs in the object store; a row is
// written after its blobs are durable, and blobs a row stops naming are returned for removal.
import type { MetaDb } from "./database.js";
import { atomically } from "./database.js";
import type { BlobRef, ObjectTable, UploadPartTable, UploadTable } from "./schema.js";

export type ObjectRow = ObjectTable;
export type UploadRow = UploadTable;
export type UploadPartRow = UploadPartTable;

export const blobsOf = (row: Pick<ObjectRow, "blobs">): BlobRef[] => JSON.parse(row.blobs) as BlobRef[];

export function getObject(db: MetaDb, bucket: string, key: string): Promise<ObjectRow | undefined> {
  return db.selectFrom("objects").selectAll().where("bucket", "=", bucket).where("key", "=", key).executeTakeFirst();
}

/**
 * Writes an object, replacing any of the same key; returns the blobs the replaced one held.
 * `precondition` sees the object being replaced and may throw to leave it in place.
 */
export function putObjectRow(db: MetaDb, row: ObjectRow, precondition?: (previous: { etag: string } | undefined) => void): Promise<BlobRef[]> {
  return atomically(db, async (trx) => {
    const previous = await trx.selectFrom("objects").select(["blobs", "etag"]).where("bucket", "=", row.bucket).where("key", "=", row.key).executeTakeFirst();
    precondition?.(previous);
    await trx
      .insertInto("objects")
      .values(row)
      .onConflict((oc) => oc.columns(["bucket", "key"]).doUpdateSet(row))
      .execute();
    return previous ? blobsOf(previous) : [];
  });
}

/** Deletes an object; returns the blobs it held (none when there was no such object). */
export function deleteObjectRow(db: MetaDb, bucket: string, key: string): Promise<BlobRef[]> {
  return atomically(db, async (trx) => {
    const previous = await trx.selectFrom("objects").select("blobs").where("bucket", "=", bucket).where("key", "=", key).executeTakeFirst();
    if (!previous) return [];
    await trx.deleteFrom("objects").where("bucket", "=", bucket).where("key", "=", key).execute();
    return blobsOf(previous);
  });
}

export async function setObjectTags(db: MetaDb, bucket: string, key: string, tags: string): Promise<boolean> {
  const result = await db.updateTable("objects").set({ tags }).where("bucket", "=", bucket).where("key", "=", key).executeTakeFirst();
  return Number(result.numUpdatedRows) > 0;
}

/** Objects in key order after `after` (exclusive), or from `from` (inclusive). */
export function objectsAfter(db: MetaDb, bucket: string, bound: { after?: string; from?: string }, limit: number): Promise<ObjectRow[]> {
  let query = db.selectFrom("objects").selectAll().where("bucket", "=", bucket);
  if (bound.after !== undefined) query = query.where("key", ">", bound.after);
  if (bound.from !== undefined) query = query.where("key", ">=", bound.from);
  return query.orderBy("key").limit(limit).execute();
}

export async function bucketHasObjects(db: MetaDb, bucket: string): Promise<boolean> {
  const object = await db.selectFrom("objects").select("key").where("bucket", "=", bucket).limit(1).executeTakeFirst();
  if (object) return true;
  const upload = await db.selectFrom("uploads").select("upload_id").where("bucket", "=", bucket).limit(1).executeTakeFirst();
  return upload !== undefined;
}

// Multipart uploads

export async function insertUpload(db: MetaDb, row: UploadRow): Promise<void> {
  await db.insertInto("uploads").values(row).execute();
}

export function getUpload(db: MetaDb, uploadId: string): Promise<UploadRow | undefined> {
  return db.selectFrom("uploads").selectAll().where("upload_id", "=", uploadId).executeTakeFirst();
}

/** Records a part, replacing one of the same number; says whether the upload is still there and which blob the replaced part held. */
export function putUploadPart(db: MetaDb, row: UploadPartRow): Promise<{ uploadExists: boolean; replacedBlob?: string }> {
  return atomically(db, async (trx) => {
    const upload = await trx.selectFrom("uploads").select("upload_id").where("upload_id", "=", row.upload_id).executeTakeFirst();
    if (!upload) return { uploadExists: false };
    const previous = await trx
      .selectFrom("upload_parts")
      .select("blob_id")
      .where("upload_id", "=", row.upload_id)
      .where("part_number", "=", row.part_number)
      .executeTakeFirst();
    await trx
      .insertInto("upload_parts")
      .values(row)
      .onConflict((oc) => oc.columns(["upload_id", "part_number"]).doUpdateSet(row))
      .execute();
    return { uploadExists: true, replacedBlob: previous?.blob_id };
  });
}

export function partsOf(db: MetaDb, uploadId: string, afterPart = 0, limit = 10_000): Promise<UploadPartRow[]> {
  return db
    .selectFrom("upload_parts")
    .selectAll()
    .where("upload_id", "=", uploadId)
    .where("part_number", ">", afterPart)
    .orderBy("part_number")
    .limit(limit)
    .execute();
}

/**
 * Ends an upload: completed into `object`, or aborted without one. Returns the blobs no row names
 * any more (parts left out of the object, and the object it replaced); undefined when there was
 * no such upload.
 */
export async function endUpload(
  db: MetaDb,
  uploadId: string,
  object?: ObjectRow,
  precondition?: (previous: { etag: string } | undefined) => void,
): Promise<BlobRef[] | undefined> {
  return atomically(db, async (trx) => {
    const upload = await trx.selectFrom("uploads").select("upload_id").where("upload_id", "=", uploadId).executeTakeFirst();
    if (!upload) return undefined;
    const parts = await trx.selectFrom("upload_parts").select(["blob_id", "size"]).where("upload_id", "=", uploadId).execute();
    let released: BlobRef[] = [];
    if (object) {
      const previous = await trx
        .selectFrom("objects")
        .select(["blobs", "etag"])
        .where("bucket", "=", object.bucket)
        .where("key", "=", object.key)
        .executeTakeFirst();
      precondition?.(previous);
      if (previous) released = blobsOf(previous);
      await trx
        .insertInto("objects")
        .values(object)
        .onConflict((oc) => oc.columns(["bucket", "key"]).doUpdateSet(object))
        .execute();
    }
    await trx.deleteFrom("upload_parts").where("upload_id", "=", uploadId).execute();
    await trx.deleteFrom("uploads").where("upload_id", "=", uploadId).execute();
    const kept = new Set(object ? blobsOf(object).map((b) => b.id) : []);
    return [...released, ...parts.filter((p) => !kept.has(p.blob_id)).map((p) => ({ id: p.blob_id, size: p.size }))];
  });
}

/** Uploads in progress in a bucket, in key then initiation order, after a marker. */
export function uploadsOf(db: MetaDb, bucket: string, after: { key?: string; uploadId?: string }, limit: number): Promise<UploadRow[]> {
  let query = db.selectFrom("uploads").selectAll().where("bucket", "=", bucket);
  if (after.key !== undefined) {
    const key = after.key;
    query =
      after.uploadId !== undefined
        ? query.where((eb) => eb.or([eb("key", ">", key), eb.and([eb("key", "=", key), eb("upload_id", ">", after.uploadId!)])]))
        : query.where("key", ">", key);
  }
  return query.orderBy("key").orderBy("upload_id").limit(limit).execute();
}

/** Every blob a row names (objects and upload parts), for sweeping unnamed blobs. */
export async function namedBlobs(db: MetaDb): Promise<Set<string>> {
  const named = new Set<string>();
  for (const row of await db.selectFrom("objects").select("blobs").execute()) for (const blob of blobsOf(row)) named.add(blob.id);
  for (const row of await db.selectFrom("upload_parts").select("blob_id").execute()) named.add(row.blob_id);
  return named;
}
