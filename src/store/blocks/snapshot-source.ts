// A snapshot's bytes as a ByteSource, block by block through its manifest, for inspection (the
// partition table and file systems of a freshly imported disk) and for exports.
import type { ByteSource } from "../../formats/disk/source.js";
import { checkRange } from "../../formats/disk/source.js";
import type { MetaDb } from "../meta/database.js";
import { blockRows, resolvedBlock } from "../meta/manifests.js";
import { blockPieces, ZERO_CHUNK, type ChunkStore } from "./chunks.js";

/** Chunk reads kept in flight ahead of the consumer. */
const READ_AHEAD = 8;

/** Indices of a snapshot's blocks that hold data, ascending, a page of manifest rows at a time. */
export const nonZeroBlockRows = (db: MetaDb, snapshotId: string) => blockRows(db, snapshotId, { nonZero: true });

/**
 * A snapshot's blocks that hold data, ascending, each with its chunk id, read a few chunks
 * ahead; a block is dropped once yielded, so memory stays at the window.
 */
export async function* nonZeroBlocks(
  deps: { db: MetaDb; chunks: ChunkStore },
  snapshotId: string,
  signal?: AbortSignal,
): AsyncGenerator<{ index: number; chunk: string; data: Buffer }> {
  const window: { index: number; chunk: string; data: Promise<Buffer> }[] = [];
  const rows = nonZeroBlockRows(deps.db, snapshotId);
  const fill = async () => {
    while (window.length < READ_AHEAD) {
      const next = await rows.next();
      if (next.done) return;
      const data = deps.chunks.get(next.value.chunk);
      data.catch(() => {}); // seen when its turn comes
      window.push({ index: next.value.block_index, chunk: next.value.chunk, data });
    }
  };
  await fill();
  while (window.length) {
    signal?.throwIfAborted();
    const head = window.shift()!;
    const data = await head.data;
    await fill();
    yield { index: head.index, chunk: head.chunk, data };
  }
}

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
      for (const { index, within, take, done } of blockPieces(offset, length)) (await block(index)).copy(out, done, within, within + take);
      return out;
    },
  };
}
