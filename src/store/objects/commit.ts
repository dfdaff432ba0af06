// Where blobs become an object: its row is written (replacing any object of the same key), and
// then the blobs no row names any more go. If the row cannot be written, the new blobs go instead.
import { blobsOf, putObjectRow, type ObjectRow } from "../meta/objects.js";
import type { MetaDb } from "../meta/database.js";
import type { BlobRef } from "../meta/schema.js";
import type { BlobStore } from "./blobs.js";

/** Removes blobs a committed change stopped naming. */
export async function releaseBlobs(blobs: BlobStore, refs: readonly BlobRef[]): Promise<void> {
  await Promise.all(refs.map((ref) => blobs.remove(ref.id)));
}

/** Writes the row naming the object's (durable) blobs; `precondition` may refuse it, as putObjectRow. */
export async function commitObject(db: MetaDb, blobs: BlobStore, row: ObjectRow, precondition?: Parameters<typeof putObjectRow>[2]): Promise<void> {
  let replaced: BlobRef[];
  try {
    replaced = await putObjectRow(db, row, precondition);
  } catch (error) {
    await releaseBlobs(blobs, blobsOf(row));
    throw error;
  }
  await releaseBlobs(blobs, replaced);
}
