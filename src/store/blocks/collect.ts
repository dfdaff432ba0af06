// Chunk collection, mark and sweep: a chunk no manifest names (snapshot or volume) is deleted
// once it is older than the grace period. Writers put a chunk before the rows that name it are
// committed; the grace period (longer than any such window) is what keeps collection from
// racing them. Leftovers of interrupted writes (*.tmp) go the same way.
import type { MetaDb } from "../meta/database.js";
import type { ChunkStore } from "./chunks.js";

export interface Collected {
  kept: number;
  removed: number;
}

export async function collectChunks(db: MetaDb, chunks: ChunkStore, graceMs: number, now = Date.now()): Promise<Collected> {
  const referenced = await db
    .selectFrom("snapshot_blocks")
    .select("chunk")
    .distinct()
    .union(db.selectFrom("volume_blocks").select("chunk").distinct())
    .execute();
  const live = new Set(referenced.map((r) => r.chunk));
  const result: Collected = { kept: 0, removed: 0 };
  for await (const file of chunks.files()) {
    const leftover = file.path.endsWith(".tmp");
    if ((!leftover && live.has(file.chunk)) || now - file.modifiedMs < graceMs) {
      result.kept++;
      continue;
    }
    await chunks.remove(file.path);
    result.removed++;
  }
  return result;
}
