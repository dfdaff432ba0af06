// The data folder as a chunk home: chunks in pack files (packs.ts), collected by collectPacks.
import { rm } from "node:fs/promises";
import type { MetaDb } from "../meta/database.js";
import { chunkStoreIn, type ChunkHome, type ChunkStore } from "./chunks.js";
import { collectPacks } from "./collect.js";
import { PackAppender, PackReader } from "./packs.js";

export function packHome(root: string, db: MetaDb, options: { packSlots?: number } = {}): ChunkHome {
  const appender = new PackAppender(root, db, options.packSlots);
  const reader = new PackReader(root);
  return {
    store: (chunk, block) => appender.append(chunk, block),
    read: (location, into, offset) => reader.read(location.pack, location.slot, into, offset),
    collect: (graceMs, now, withChunk) =>
      collectPacks(
        { db, root, appender, relocate: (chunk) => withChunk(chunk, (data) => appender.append(chunk, data, true)), removed: (pack) => reader.forget(pack) },
        graceMs,
        now,
      ),
    // Pack names are plain file names; an object store's are paths.
    cheapRanges: true,
    owns: (location) => !location.pack.includes("/"),
    async close() {
      reader.close();
      await appender.restart();
    },
    async reset() {
      reader.close();
      await rm(root, { recursive: true, force: true });
    },
  };
}

/** Chunks in pack files under `root`; `packSlots` (chunks per pack) is smaller only in tests. */
export const packedChunkStore = (root: string, db: MetaDb, options: { packSlots?: number } = {}): ChunkStore => chunkStoreIn(db, packHome(root, db, options));
