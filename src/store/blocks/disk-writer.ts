// A disk image's data into a snapshot's blocks: extents (in order, holes skipped) are cut into
// 512 KiB blocks, blocks of zeros dropped, the rest stored as chunks several at a time (so
// hashing on one core overlaps the file system's syncs) and named in the snapshot's manifest in
// batches. Memory is the read-ahead window plus the blocks in flight, whatever the disk's size.
import type { Extent } from "../../formats/disk/image.js";
import type { MetaDb } from "../meta/database.js";
import type { BlockRow } from "../meta/manifests.js";
import { putBlocks } from "../meta/snapshots.js";
import { BLOCK_SIZE, isZeroBlock, type ChunkStore } from "./chunks.js";

const CHUNKS_IN_FLIGHT = 16;
const ROWS_PER_BATCH = 256;
/** Extents the reader may run ahead of the writer. */
const READ_AHEAD = 2;

export interface DiskWriteResult {
  /** Blocks that hold data (not zeros). */
  dataBlocks: number;
}

/**
 * Writes `extents` into `snapshotId`, whose manifest starts empty. `onProgress` hears the offset
 * reached. Stops (throwing the signal's reason) when `signal` aborts.
 */
export async function writeDiskToSnapshot(
  deps: { db: MetaDb; chunks: ChunkStore },
  extents: AsyncIterable<Extent>,
  snapshotId: string,
  options: { signal?: AbortSignal; onProgress?: (offset: number) => void } = {},
): Promise<DiskWriteResult> {
  const { db, chunks } = deps;
  const inFlight = new Set<Promise<void>>();
  let rows: BlockRow[] = [];
  let failure: unknown;
  let dataBlocks = 0;

  const flushRows = async () => {
    const batch = rows;
    rows = [];
    await putBlocks(db, snapshotId, batch);
  };
  /** Starts storing a block; `copied` settles once the store no longer needs `block` (or has failed). */
  const store = async (index: number, block: Buffer): Promise<{ copied?: Promise<void> }> => {
    if (isZeroBlock(block)) return {};
    dataBlocks++;
    let copied!: () => void;
    const copiedOrFailed = new Promise<void>((resolve) => (copied = resolve));
    const put = chunks.put(block, copied).then(
      (chunk) => {
        rows.push({ block_index: index, chunk });
      },
      (error: unknown) => {
        failure ??= error;
      },
    );
    const tracked = put.finally(() => {
      inFlight.delete(tracked);
      copied();
    });
    inFlight.add(tracked);
    while (inFlight.size >= CHUNKS_IN_FLIGHT) await Promise.race(inFlight);
    if (failure) throw failure;
    if (rows.length >= ROWS_PER_BATCH) await flushRows();
    return { copied: copiedOrFailed };
  };

  // The block being filled by extents that do not cover it whole.
  let partial: { index: number; data: Buffer } | undefined;
  const finishPartial = async () => {
    if (partial) await store(partial.index, partial.data);
    partial = undefined;
  };

  try {
    let lastEnd = 0;
    for await (const extent of readAhead(extents, READ_AHEAD)) {
      options.signal?.throwIfAborted();
      if (extent.offset < lastEnd) throw new Error(`disk extents out of order at ${extent.offset}`);
      lastEnd = extent.offset + extent.data.length;
      let at = extent.offset;
      let data = extent.data;
      const puts: Promise<void>[] = [];
      while (data.length > 0) {
        const index = Math.floor(at / BLOCK_SIZE);
        const within = at - index * BLOCK_SIZE;
        const take = Math.min(BLOCK_SIZE - within, data.length);
        if (partial && partial.index !== index) await finishPartial();
        if (within === 0 && take === BLOCK_SIZE) {
          const { copied } = await store(index, data.subarray(0, take));
          if (copied) puts.push(copied);
        } else {
          partial ??= { index, data: Buffer.alloc(BLOCK_SIZE) };
          data.copy(partial.data, within, 0, take);
          if (within + take === BLOCK_SIZE) await finishPartial();
        }
        at += take;
        data = data.subarray(take);
      }
      // The reader may reuse the extent's buffer once the store has copied every block cut from it.
      if (extent.release) void Promise.all(puts).then(extent.release);
      options.onProgress?.(lastEnd);
    }
    await finishPartial();
  } catch (error) {
    // A stop or failure ends the write only once the chunks already on their way are stored:
    // nothing lands after the task reports its end.
    await Promise.all(inFlight);
    throw error;
  }
  await Promise.all(inFlight);
  if (failure) throw failure;
  await flushRows();
  return { dataBlocks };
}

/**
 * Keeps up to `depth` next() calls of an async iterator outstanding, so the reader (file reads,
 * inflation) works on the next extents while the writer hashes and stores this one.
 */
export async function* readAhead<T>(source: AsyncIterable<T>, depth: number): AsyncGenerator<T> {
  const iterator = source[Symbol.asyncIterator]();
  const queue: Promise<IteratorResult<T>>[] = [];
  const pull = () => {
    const next = iterator.next();
    next.catch(() => {}); // seen when its turn comes
    queue.push(next);
  };
  try {
    for (let i = 0; i < depth; i++) pull();
    for (;;) {
      const result = await queue.shift()!;
      if (result.done) return;
      pull();
      yield result.value;
    }
  } finally {
    await iterator.return?.();
  }
}
