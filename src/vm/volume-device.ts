// A volume as a guest's disk: bytes read through the volume's layers (its own blocks, then the
// snapshots it rests on) and written into its own layer in the chunk store.
//
// The store's unit is a 512 KiB block, a guest's a few KiB: a write changes a copy of its block
// held here (the disk's write cache, as a real disk has one), and the block goes to the chunk
// store and the volume's manifest when the guest flushes, when a write asks for FUA, or when
// too many blocks wait. So a FLUSH answers once every block written before it is durable, and
// a guest's 4 KiB writes cost one chunk put per block, not one per write.
import type { ChunkStore } from "../store/blocks/chunks.js";
import { BLOCK_SIZE, blockPieces, ZERO_CHUNK } from "../store/blocks/chunks.js";
import type { MetaDb } from "../store/meta/database.js";
import { volumeWindow } from "../store/meta/manifests.js";
import { writeVolumeBlocks } from "../store/meta/volumes.js";
import type { BlockDevice } from "./block-device.js";

/** Blocks whose chunk ids are looked up at once: 128 MiB of the disk, one statement. */
const WINDOW_BLOCKS = 256;
/** Windows of chunk ids kept: lookups for 8 GiB of the disk. */
const WINDOWS_KEPT = 64;
/** Unchanged blocks kept after reading (16 MiB): a guest reads a block a few KiB at a time. */
const CLEAN_BLOCKS_KEPT = 32;
/** Changed blocks past which a write-back starts in the background (16 MiB), the oldest first. */
const DIRTY_BLOCKS_BACKGROUND = 32;
/** Changed blocks held at most (64 MiB): past them, writes wait for the write-back. */
const DIRTY_BLOCKS_MAX = 128;
/** Blocks read ahead of a guest reading in order. */
const READ_AHEAD_BLOCKS = 8;

const ZEROS = Buffer.alloc(BLOCK_SIZE);

export interface VolumeDevice extends BlockDevice {
  readonly volumeId: string;
  /** Writes back what is held and lets go; the device may not be used after. */
  close(): Promise<void>;
}

/** A changed block: its bytes, or null for a block of zeros (a trim or a zeroing of all of it). */
type Changed = Buffer | null;

export function openVolumeDevice(deps: { db: MetaDb; chunks: ChunkStore }, volumeId: string, sizeBytes: number): VolumeDevice {
  const { db, chunks } = deps;
  /** Blocks changed since their last write-back. */
  const dirty = new Map<number, Changed>();
  /** Blocks being written back: still what a read sees until their rows commit. */
  const writing = new Map<number, Changed>();
  /** Blocks whose copy is being read, so two writes to one block change one copy. */
  const copying = new Map<number, Promise<Buffer>>();
  const clean = new Map<number, Buffer>();
  /**
   * Chunk ids of the blocks in the windows looked up (a block absent is zeros). A lookup may
   * have read the manifest before a write-back of ours committed, so `own` (every block this
   * device wrote back) comes first.
   */
  const known = new Map<number, string>();
  const own = new Map<number, string>();
  const windows = new Map<number, Promise<void>>();
  const windowsRead = new Set<number>();
  /** Write-backs, one after another: a block's rows commit in the order its copies were made. */
  let writeBacks: Promise<void> = Promise.resolve();
  let closed = false;

  const checkRange = (offset: number, length: number) => {
    if (closed) throw new Error(`volume ${volumeId} is closed`);
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > sizeBytes) {
      throw new RangeError(`${length} bytes at ${offset} are outside volume ${volumeId} (${sizeBytes} bytes)`);
    }
  };

  const windowOf = (index: number) => Math.floor(index / WINDOW_BLOCKS);
  const lookUpWindow = (window: number) => {
    let loaded = windows.get(window);
    if (!loaded) {
      const from = window * WINDOW_BLOCKS;
      loaded = volumeWindow(db, volumeId, from, from + WINDOW_BLOCKS - 1).then((rows) => {
        if (windows.get(window) !== loaded) return;
        for (const row of rows) if (row.chunk !== ZERO_CHUNK) known.set(row.block_index, row.chunk);
        windowsRead.add(window);
      });
      loaded.catch(() => windows.delete(window));
      windows.set(window, loaded);
      if (windows.size > WINDOWS_KEPT) forgetWindow(windows.keys().next().value!);
    }
    return loaded;
  };
  const forgetWindow = (window: number) => {
    windows.delete(window);
    windowsRead.delete(window);
    for (let index = window * WINDOW_BLOCKS; index < (window + 1) * WINDOW_BLOCKS; index++) known.delete(index);
  };
  const chunkOf = async (index: number) => {
    const written = own.get(index);
    if (written !== undefined) return written;
    await lookUpWindow(windowOf(index));
    return own.get(index) ?? known.get(index) ?? ZERO_CHUNK;
  };
  /** True when the block is known to read as zeros already, so zeroing it needs no row. */
  const knownZero = (index: number) => (own.has(index) ? own.get(index) === ZERO_CHUNK : windowsRead.has(windowOf(index)) && !known.has(index));

  /** Reads of stored blocks under way, so a block read twice at once is fetched once. */
  const fetching = new Map<number, Promise<Buffer>>();
  /** Blocks changed while being fetched: what the fetch brings is not kept. */
  const outdated = new Set<number>();
  const changed = (index: number) => {
    clean.delete(index);
    if (fetching.has(index)) outdated.add(index);
  };
  /** The block's bytes as stored (not those held here); shared with the clean cache, never changed. */
  const stored = (index: number): Promise<Buffer> => {
    const hit = clean.get(index);
    if (hit) {
      clean.delete(index);
      clean.set(index, hit);
      return Promise.resolve(hit);
    }
    let fetched = fetching.get(index);
    if (!fetched) {
      fetched = (async () => {
        const chunk = await chunkOf(index);
        if (chunk === ZERO_CHUNK) return ZEROS;
        const data = await chunks.get(chunk);
        // Changed meanwhile: what is stored is not what a read sees any more.
        if (!outdated.has(index)) keepClean(index, data);
        return data;
      })().finally(() => {
        fetching.delete(index);
        outdated.delete(index);
      });
      fetching.set(index, fetched);
    }
    return fetched;
  };
  const keepClean = (index: number, data: Buffer) => {
    clean.delete(index);
    clean.set(index, data);
    if (clean.size > CLEAN_BLOCKS_KEPT) clean.delete(clean.keys().next().value!);
  };

  /** What a read sees of a block now. */
  const current = (index: number): Buffer | Promise<Buffer> => {
    const held = dirty.has(index) ? dirty.get(index) : writing.has(index) ? writing.get(index) : undefined;
    if (held !== undefined) return held ?? ZEROS;
    return stored(index);
  };

  /** The block's copy to change, made from what it holds now (or zeros when all of it will be written). */
  const changeable = (index: number, whole: boolean): Buffer | Promise<Buffer> => {
    const held = dirty.get(index);
    if (held) return held;
    const pending = copying.get(index);
    if (pending) return pending;
    if (held === null || whole) {
      const fresh = whole ? Buffer.allocUnsafe(BLOCK_SIZE) : Buffer.alloc(BLOCK_SIZE);
      dirty.set(index, fresh);
      changed(index);
      return fresh;
    }
    const copy = (async () => {
      try {
        const source = await current(index);
        // A whole-block write or a zeroing may have come meanwhile.
        const meanwhile = dirty.get(index);
        if (meanwhile) return meanwhile;
        const fresh = Buffer.allocUnsafe(BLOCK_SIZE);
        (meanwhile === null ? ZEROS : source).copy(fresh);
        dirty.set(index, fresh);
        changed(index);
        return fresh;
      } finally {
        copying.delete(index);
      }
    })();
    copying.set(index, copy);
    return copy;
  };

  /**
   * The block's copy to change, still held when this resolves (a write-back may take a copy
   * while it is being made), so the change lands in what the next write-back takes.
   */
  const heldCopy = async (index: number, whole: boolean): Promise<Buffer> => {
    for (;;) {
      const block = await changeable(index, whole);
      if (dirty.get(index) === block) return block;
    }
  };

  /** Writes back the blocks held now (those of `only`, when given); resolves once their rows commit. */
  const writeBack = (only?: readonly number[]): Promise<void> => {
    const run = async () => {
      const indices = only ? only.filter((index) => dirty.has(index)) : [...dirty.keys()];
      if (indices.length === 0) return;
      const batch = indices.map((index) => {
        const data = dirty.get(index)!;
        dirty.delete(index);
        writing.set(index, data);
        return { index, data };
      });
      try {
        const stored = await Promise.all(batch.map(({ data }) => (data ? chunks.put(data) : ZERO_CHUNK)));
        // A zeroed block that read as zeros already needs no row (a guest's mkfs trims the whole disk).
        const rows = batch
          .map(({ index }, i) => ({ block_index: index, chunk: stored[i]! }))
          .filter((row) => row.chunk !== ZERO_CHUNK || !knownZero(row.block_index));
        await writeVolumeBlocks(db, volumeId, rows);
        for (const [i, { index, data }] of batch.entries()) {
          own.set(index, stored[i]!);
          if (writing.get(index) === data) writing.delete(index);
          if (data && !dirty.has(index)) keepClean(index, data);
        }
      } catch (error) {
        // Held again, so a later flush tries them again, unless rewritten meanwhile.
        for (const { index, data } of batch) {
          if (writing.get(index) === data) writing.delete(index);
          if (!dirty.has(index)) dirty.set(index, data);
        }
        throw error;
      }
    };
    const next = writeBacks.then(run, run);
    writeBacks = next.catch(() => {});
    return next;
  };

  /**
   * Past a few held blocks, the oldest go back in the background; past the limit, a write waits
   * until the write-backs under way have finished.
   */
  let background: Promise<void> | undefined;
  const bound = async () => {
    if (dirty.size > DIRTY_BLOCKS_BACKGROUND && !background) {
      background = writeBack([...dirty.keys()].slice(0, DIRTY_BLOCKS_BACKGROUND))
        .catch(() => {}) // held again; the next flush reports it
        .finally(() => (background = undefined));
    }
    while (dirty.size > DIRTY_BLOCKS_MAX) await writeBack([...dirty.keys()].slice(0, DIRTY_BLOCKS_BACKGROUND));
  };

  /** Where the last read ended: a read starting there is read ahead of. */
  let readEnd = -1;
  const readAhead = (offset: number, length: number) => {
    const sequential = offset === readEnd;
    readEnd = offset + length;
    if (!sequential) return;
    const last = Math.floor((sizeBytes - 1) / BLOCK_SIZE);
    const next = Math.floor((offset + length) / BLOCK_SIZE);
    for (let index = next; index <= Math.min(last, next + READ_AHEAD_BLOCKS - 1); index++) {
      if (!dirty.has(index) && !writing.has(index) && !clean.has(index)) stored(index).catch(() => {});
    }
  };

  /** Marks whole blocks as zeros without holding their bytes. */
  const zeroBlock = (index: number) => {
    dirty.set(index, null);
    changed(index);
  };

  return {
    volumeId,
    size: sizeBytes,

    async read(offset, length) {
      checkRange(offset, length);
      readAhead(offset, length);
      const out = Buffer.allocUnsafe(length);
      const parts = [...blockPieces(offset, length)];
      const blocks = await Promise.all(parts.map((part) => current(part.index)));
      for (const [i, { within, take, done }] of parts.entries()) blocks[i]!.copy(out, done, within, within + take);
      return out;
    },

    async write(offset, data, fua) {
      checkRange(offset, data.length);
      const touched: number[] = [];
      for (const { index, within, take, done } of blockPieces(offset, data.length)) {
        const block = await heldCopy(index, take === BLOCK_SIZE);
        data.copy(block, within, done, done + take);
        touched.push(index);
      }
      if (fua) await writeBack(touched);
      else await bound();
    },

    async writeZeroes(offset, length, fua) {
      checkRange(offset, length);
      const touched: number[] = [];
      for (const { index, within, take } of blockPieces(offset, length)) {
        if (take === BLOCK_SIZE) zeroBlock(index);
        else (await heldCopy(index, false)).fill(0, within, within + take);
        touched.push(index);
      }
      if (fua) await writeBack(touched);
      else await bound();
    },

    async trim(offset, length) {
      checkRange(offset, length);
      // Only whole blocks are let go; a part of one keeps its bytes, as the protocol allows.
      for (const { index, take } of blockPieces(offset, length)) if (take === BLOCK_SIZE) zeroBlock(index);
      await bound();
    },

    flush: () => writeBack(),

    async close() {
      if (closed) return;
      await writeBack();
      closed = true;
      clean.clear();
      known.clear();
      own.clear();
      windows.clear();
    },
  };
}
