// Chunk collection, mark and sweep: a chunk no manifest names (snapshot, volume, or a volume's
// write journal) is forgotten
// once it was last put longer ago than the grace period. Writers put a chunk before the rows that
// name it are committed; the grace period (longer than any such window) is what keeps collection
// from racing them. Then the packs: one no chunk lives in any more is deleted, and one mostly
// dead is compacted (its live chunks appended afresh, then the file deleted). Packs are left
// alone while they may still be written: this process's open pack, and any file changed within
// the grace period (another writer's, or slots whose locations are about to be committed).
import { rm } from "node:fs/promises";
import { sql } from "kysely";
import type { MetaDb } from "../meta/database.js";
import type { Collected } from "./chunks.js";
import { packFiles, packPath, type PackAppender } from "./packs.js";

interface PackDeps {
  db: MetaDb;
  root: string;
  appender: PackAppender;
  /** Appends a live chunk afresh and moves its location there. */
  relocate(chunk: string): Promise<void>;
  /** Hears of each pack file deleted. */
  removed(pack: string): void;
}

/** A pack whose live slots are at most this share of it is rewritten. */
const COMPACT_BELOW = 0.5;

/**
 * Forgets the chunks no manifest names that were last put before `cutoff`; their locations, for
 * a home to give the space back. One statement, so a put that refreshes a chunk either comes
 * first (and keeps it) or finds it gone (and stores it afresh).
 */
export async function forgetUnnamedChunks(db: MetaDb, cutoff: number): Promise<{ pack: string; slot: number }[]> {
  return db
    .deleteFrom("chunk_locations")
    .where("stored_at", "<", cutoff)
    .where("chunk", "not in", db.selectFrom("snapshot_blocks").select("chunk"))
    .where("chunk", "not in", db.selectFrom("volume_blocks").select("chunk"))
    .where("chunk", "not in", db.selectFrom("volume_journal").select("chunk"))
    .returning(["pack", "slot"])
    .execute();
}

export async function collectPacks({ db, root, appender, relocate, removed }: PackDeps, graceMs: number, now: number): Promise<Collected> {
  const cutoff = now - graceMs;
  const forgotten = await forgetUnnamedChunks(db, cutoff);
  const live = new Map(
    (
      await db
        .selectFrom("chunk_locations")
        .select(["pack", sql<number>`count(*)`.as("chunks")])
        .groupBy("pack")
        .execute()
    ).map((r) => [r.pack, Number(r.chunks)]),
  );
  const result: Collected = { kept: [...live.values()].reduce((a, b) => a + b, 0), removed: forgotten.length, packsRemoved: 0, packsCompacted: 0 };
  const open = appender.openPacks();
  for await (const file of packFiles(root)) {
    if (open.has(file.pack) || file.modifiedMs > cutoff) continue;
    const chunks = live.get(file.pack) ?? 0;
    if (chunks > file.slots * COMPACT_BELOW) continue;
    if (chunks > 0) {
      const moving = await db.selectFrom("chunk_locations").select("chunk").where("pack", "=", file.pack).execute();
      for (const { chunk } of moving) await relocate(chunk);
      result.packsCompacted++;
    }
    await rm(packPath(root, file.pack), { force: true });
    removed(file.pack);
    result.packsRemoved++;
  }
  return result;
}
