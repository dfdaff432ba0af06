// Blobs no row names: what a write leaves when Kiln stops between making a blob durable and
// committing the row that names it. Swept at start, but only those older than the grace period:
// another node sharing the folder may be writing one right now, its row not yet committed.
import type { MetaDb } from "../meta/database.js";
import { namedBlobs } from "../meta/objects.js";
import type { BlobStore } from "./blobs.js";

export async function sweepBlobs(db: MetaDb, blobs: BlobStore, before: number): Promise<number> {
  await blobs.clearLeftovers(before);
  const named = await namedBlobs(db);
  let removed = 0;
  for await (const { id, modifiedMs } of blobs.ids()) {
    if (named.has(id) || modifiedMs >= before) continue;
    await blobs.remove(id);
    removed++;
  }
  return removed;
}
