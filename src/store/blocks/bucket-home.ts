// The object store as a chunk home: each chunk one object, `chunks/<sha256>.<random>`, its
// location row naming that object. The random part makes every store of a chunk a new object,
// so collection deleting a forgotten chunk's object can never delete the object a concurrent
// put (on this node or another) is writing for the same chunk: that put has a name of its own.
// Two puts of one chunk on two nodes both write; the first location committed wins, and the
// loser deletes its object. An object whose location was never committed (a crash between the
// two) is swept by collection once it is older than the grace period.
import { randomBytes } from "node:crypto";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import type { ObjectStoreBucket } from "../bucket/bucket.js";
import type { MetaDb } from "../meta/database.js";
import { BLOCK_SIZE, chunkStoreIn, type ChunkHome, type ChunkStore } from "./chunks.js";
import type { Collected } from "./chunks.js";
import { forgetUnnamedChunks } from "./collect.js";

const FOLDER = "chunks/";
/** Location rows looked up at once when sweeping objects no row names. */
const LOOKUP_BATCH = 500;

export function bucketHome(bucket: ObjectStoreBucket, db: MetaDb): ChunkHome {
  /** Objects no location names, older than `cutoff`: what a crash between an object and its row left. */
  async function sweepUnnamed(cutoff: number): Promise<number> {
    let removed = 0;
    for await (const page of bucket.list(FOLDER)) {
      const old = page.filter((o) => o.modifiedMs < cutoff).map((o) => o.name);
      for (let i = 0; i < old.length; i += LOOKUP_BATCH) {
        const batch = old.slice(i, i + LOOKUP_BATCH);
        const named = new Set((await db.selectFrom("chunk_locations").select("pack").where("pack", "in", batch).execute()).map((r) => r.pack));
        const unnamed = batch.filter((name) => !named.has(name));
        await bucket.removeMany(unnamed);
        removed += unnamed.length;
      }
    }
    return removed;
  }

  return {
    async store(chunk, block) {
      const name = `${FOLDER}${chunk}.${randomBytes(6).toString("hex")}`;
      await bucket.call("PutObject", () =>
        bucket.client.send(new PutObjectCommand({ Bucket: bucket.name, Key: bucket.key(name), Body: block, ContentLength: block.length })),
      );
      const now = Date.now();
      const inserted = await db
        .insertInto("chunk_locations")
        .values({ chunk, pack: name, slot: 0, stored_at: now })
        .onConflict((c) => c.column("chunk").doNothing())
        .executeTakeFirst();
      if (Number(inserted.numInsertedOrUpdatedRows ?? 0n) === 0) {
        // Another writer stored it first: keep theirs, freshly put, and drop this copy.
        await db.updateTable("chunk_locations").set({ stored_at: now }).where("chunk", "=", chunk).execute();
        await bucket.remove(name);
      }
    },
    async read(location, into = Buffer.allocUnsafe(BLOCK_SIZE), offset = 0) {
      return (await bucket.readInto(location.pack, offset, into)) ? into : undefined;
    },
    async collect(graceMs, now): Promise<Collected> {
      const cutoff = now - graceMs;
      const forgotten = await forgetUnnamedChunks(db, cutoff);
      await bucket.removeMany(forgotten.map((l) => l.pack));
      const swept = await sweepUnnamed(cutoff);
      const kept = await db
        .selectFrom("chunk_locations")
        .select((eb) => eb.fn.countAll<number>().as("n"))
        .executeTakeFirstOrThrow();
      return { kept: Number(kept.n), removed: forgotten.length, packsRemoved: forgotten.length + swept, packsCompacted: 0 };
    },
    cheapRanges: false,
    owns: (location) => location.pack.startsWith(FOLDER),
    close: async () => {},
    reset: () => bucket.removeAll(FOLDER),
  };
}

/** Chunks as objects in `bucket`. */
export const bucketChunkStore = (bucket: ObjectStoreBucket, db: MetaDb): ChunkStore => chunkStoreIn(db, bucketHome(bucket, db));
