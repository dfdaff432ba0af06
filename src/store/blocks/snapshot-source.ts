// A snapshot's bytes as a ByteSource, block by block through its manifest, for inspection (the
// partition table and file systems of a freshly imported disk) and for exports.
import type { ByteSource } from "../../formats/disk/source.js";
import { checkRange } from "../../formats/disk/source.js";
import type { MetaDb } from "../meta/database.js";
import { resolvedBlock } from "../meta/manifests.js";
import { BLOCK_SIZE, ZERO_CHUNK, type ChunkStore } from "./chunks.js";

/** Blocks kept after reading: inspection reads the same superblocks and tables again and again. */
const CACHED_BLOCKS = 32;

export function snapshotSource(deps: { db: MetaDb; chunks: ChunkStore }, snapshotId: string, size: number): ByteSource {
  const cache = new Map<number, Buffer>();
  const block = async (index: number): Promise<Buffer> => {
    const hit = cache.get(index);
    if (hit) {
      cache.delete(index);
      cache.set(index, hit);
      return hit;
    }
    const row = await resolvedBlock(deps.db, snapshotId, index);
    const data = await deps.chunks.get(row?.chunk ?? ZERO_CHUNK);
    cache.set(index, data);
    if (cache.size > CACHED_BLOCKS) cache.delete(cache.keys().next().value!);
    return data;
  };
  return {
    size,
    async read(offset, length) {
      checkRange(size, offset, length);
      const out = Buffer.allocUnsafe(length);
      let done = 0;
      while (done < length) {
        const at = offset + done;
        const index = Math.floor(at / BLOCK_SIZE);
        const within = at - index * BLOCK_SIZE;
        const take = Math.min(BLOCK_SIZE - within, length - done);
        (await block(index)).copy(out, done, within, within + take);
        done += take;
      }
      return out;
    },
  };
}
