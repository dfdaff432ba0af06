// Blobs no row names: what a write leaves when Kiln stops between making a blob durable and
// committing the row that names it. Swept before serving, when no write is under way.
import type { MetaDb } from "../meta/database.js";
import { namedBlobs } from "../meta/objects.js";
import type { BlobStore } from "./blobs.js";

export async function sweepBlobs(db: MetaDb, blobs: BlobStore): Promise<number> {
  await blobs.clearLeftovers();
  const named = await namedBlobs(db);
  let removed = 0;
  for await (const id of blobs.ids()) {
    if (named.has(id)) continue;
    await blobs.remove(id);
    removed++;
  }
  return removed;
}
