// A volume as a guest's disk: bytes read through the volume's layers (its own blocks, then the
// snapshots it rests on), with the guest's writes kept in a journal over them.
//
// The store's unit is a 512 KiB block, a guest's a few KiB: writing each change into its block
// would cost a copy, a hash and a put of 512 KiB per 4 KiB written. So a write is appended to a
// journal segment instead (512 KiB of payloads one after another, with where each belongs).
// A segment becomes a chunk when it fills, and its row in volume_journal commits when the guest
// flushes (or asks for FUA, or too many wait): a FLUSH answers once every write before it is in
// a committed row. Reads lay the journal's extents over the blocks.
//
// The journal is folded into the volume's blocks when it grows past FOLD_SEGMENTS, and always
// before a snapshot or a close (settle): each block it touches is composed and put, and its
// row written in the transaction that drops the journal rows folded. A block one segment holds
// whole (a guest writing in order) needs no composing: that segment's chunk is the block.
//
// A device opened on a volume whose journal has rows (its Kiln was killed while the guest ran,
// here or on another node) takes them as its own, so nothing a guest flushed is lost.
import type { ChunkStore } from "../store/blocks/chunks.js";
import { BLOCK_SIZE, blockPieces, ZERO_CHUNK } from "../store/blocks/chunks.js";
import type { MetaDb } from "../store/meta/database.js";
import { volumeWindow } from "../store/meta/manifests.js";
import { appendJournal, foldJournal, journalOf } from "../store/meta/volumes.js";
import type { BlockDevice } from "./block-device.js";

/** Blocks whose chunk ids are looked up at once: 128 MiB of the disk, one statement. */
const WINDOW_BLOCKS = 256;
/** Windows of chunk ids kept: lookups for 8 GiB of the disk. */
const WINDOWS_KEPT = 64;
/** Blocks kept after reading (16 MiB): a guest reads a block a few KiB at a time. */
const CLEAN_BLOCKS_KEPT = 32;
/** Blocks read ahead of a guest reading in order. */
const READ_AHEAD_BLOCKS = 8;
/** A journal segment is one chunk. */
const SEGMENT_BYTES = BLOCK_SIZE;
/** Committed segments whose bytes stay in memory (16 MiB), for reads of what was just written. */
const SEGMENTS_KEPT = 32;
/** Full segments waiting for a flush (32 MiB): past them, their rows commit without one. */
const UNCOMMITTED_MAX = 64;
/** Committed segments past which a fold starts in the background (256 MiB of payloads). */
const FOLD_SEGMENTS = 512;
/** Blocks a fold composes at once (32 MiB). */
const FOLD_BATCH = 64;

const ZEROS = Buffer.alloc(BLOCK_SIZE);

export interface VolumeDevice extends BlockDevice {
  readonly volumeId: string;
  /** Folds the journal into the volume's blocks: what the guest wrote is in them (before a snapshot). */
  settle(): Promise<void>;
  /** Settles and lets go; the device may not be used after. */
  close(): Promise<void>;
  /**
   * Lets go at once, writing nothing more: another node has the volume now and takes the
   * committed journal as its own; what was not committed is lost, as in a power cut.
   */
  abandon(): void;
}

/** A segment's record of one write: [block index, offset in the block, length, offset in the segment or -1 for zeros]. */
type ExtentRecord = [number, number, number, number];

interface Segment {
  seq: number;
  /** Its bytes: always while its row is not committed, then while it is among SEGMENTS_KEPT (else read from its chunk). */
  data?: Buffer;
  used: number;
  /** Its row's extents, in write order. */
  records: ExtentRecord[];
  /** Its chunk, once put. */
  put?: Promise<string>;
  chunk?: string;
  committed: boolean;
}

/** Where some bytes of a block are in the journal. */
interface Extent {
  segment: Segment;
  within: number;
  length: number;
  /** Offset of the payload in the segment; -1: zeros. */
  at: number;
}

export function openVolumeDevice(deps: { db: MetaDb; chunks: ChunkStore }, volumeId: string, sizeBytes: number): VolumeDevice {
  const { db, chunks } = deps;
  let closed = false;

  const checkRange = (offset: number, length: number) => {
    if (closed) throw new Error(`volume ${volumeId} is closed`);
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > sizeBytes) {
      throw new RangeError(`${length} bytes at ${offset} are outside volume ${volumeId} (${sizeBytes} bytes)`);
    }
  };

  // --- The volume's blocks, as the journal rests on them -------------------------------------

  /**
   * Chunk ids of the blocks in the windows looked up (a block absent is zeros). A lookup may
   * have read the manifest before a fold of ours committed, so `own` (every block this device
   * folded) comes first.
   */
  const known = new Map<number, string>();
  const own = new Map<number, string>();
  const windows = new Map<number, Promise<void>>();
  const windowsRead = new Set<number>();
  /** Bumped when a fold changes a block: a read that fetched the block before then reads again. */
  const versions = new Map<number, number>();
  const versionOf = (index: number) => versions.get(index) ?? 0;

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
    const folded = own.get(index);
    if (folded !== undefined) return folded;
    await lookUpWindow(windowOf(index));
    return own.get(index) ?? known.get(index) ?? ZERO_CHUNK;
  };
  /** True when the block is known to read as zeros already, so a fold that zeroes it needs no row. */
  const knownZero = (index: number) => (own.has(index) ? own.get(index) === ZERO_CHUNK : windowsRead.has(windowOf(index)) && !known.has(index));

  const clean = new Map<number, Buffer>();
  const keepClean = (index: number, data: Buffer) => {
    clean.delete(index);
    clean.set(index, data);
    if (clean.size > CLEAN_BLOCKS_KEPT) clean.delete(clean.keys().next().value!);
  };
  /** Reads of blocks under way, so a block read twice at once is fetched once (per version). */
  const fetching = new Map<number, { version: number; data: Promise<Buffer> }>();
  /** The block's bytes as stored, under the journal; shared with the cache, never changed. */
  const stored = (index: number): Promise<Buffer> => {
    const hit = clean.get(index);
    if (hit) {
      keepClean(index, hit);
      return Promise.resolve(hit);
    }
    const version = versionOf(index);
    const under = fetching.get(index);
    if (under?.version === version) return under.data;
    const data = (async () => {
      const chunk = await chunkOf(index);
      if (chunk === ZERO_CHUNK) return ZEROS;
      const bytes = await chunks.get(chunk);
      if (versionOf(index) === version) keepClean(index, bytes);
      return bytes;
    })().finally(() => {
      if (fetching.get(index)?.data === data) fetching.delete(index);
    });
    fetching.set(index, { version, data });
    return data;
  };

  // --- The journal ----------------------------------------------------------------------------

  /** Segments with rows (or to have them), oldest first. */
  const segments = new Map<number, Segment>();
  /** The extents over each block, in write order; one hidden by a later one is dropped. */
  const extents = new Map<number, Extent[]>();
  const newSegment = (seq: number): Segment => {
    const segment: Segment = { seq, data: Buffer.alloc(SEGMENT_BYTES), used: 0, records: [], committed: false };
    segments.set(seq, segment);
    return segment;
  };
  let open: Segment;
  /** Committed segments whose bytes are kept, least recently used first. */
  const kept = new Map<number, Segment>();
  const keepSegment = (segment: Segment) => {
    kept.delete(segment.seq);
    kept.set(segment.seq, segment);
    if (kept.size > SEGMENTS_KEPT) {
      const [seq, oldest] = kept.entries().next().value!;
      kept.delete(seq);
      oldest.data = undefined;
    }
  };
  const addExtent = (index: number, extent: Extent) => {
    const end = extent.within + extent.length;
    const over = (extents.get(index) ?? []).filter((e) => e.within < extent.within || e.within + e.length > end);
    over.push(extent);
    extents.set(index, over);
  };
  /** Appends a write (or a zeroing, with no payload) of part of one block to the journal. */
  const append = (index: number, within: number, length: number, payload?: Buffer) => {
    if (!payload) {
      open.records.push([index, within, length, -1]);
      addExtent(index, { segment: open, within, length, at: -1 });
      return;
    }
    // A whole block starts a segment of its own, so the segment is the block when it is folded.
    if (length === BLOCK_SIZE && open.used > 0) seal();
    let done = 0;
    while (done < length) {
      if (open.used === SEGMENT_BYTES) seal();
      const take = Math.min(SEGMENT_BYTES - open.used, length - done);
      payload.copy(open.data!, open.used, done, done + take);
      open.records.push([index, within + done, take, open.used]);
      addExtent(index, { segment: open, within: within + done, length: take, at: open.used });
      open.used += take;
      done += take;
    }
  };
  /** Sealed segments whose rows are not committed yet. */
  let sealed = 0;
  /** The open segment goes to the chunk store; writes go on in a new one. */
  const seal = () => {
    if (open.records.length === 0) return;
    open.put = chunks.put(open.data!);
    open.put.catch(() => {}); // a commit reports it
    sealed++;
    open = newSegment(open.seq + 1);
  };

  /**
   * Commits run one after another, and so do folds; the two run side by side (a guest's flush
   * does not wait for a fold): a fold takes only committed rows, and a commit only adds later ones.
   */
  const chain = () => {
    let last: Promise<void> = Promise.resolve();
    return (step: () => Promise<void>) => {
      const next = last.then(step, step);
      last = next.catch(() => {});
      return next;
    };
  };
  const commitSerially = chain();
  const foldSerially = chain();
  /** Makes every write appended so far durable: its segment's row committed. */
  const commit = () =>
    commitSerially(async () => {
      seal();
      const pending = [...segments.values()].filter((s) => !s.committed && s !== open);
      if (pending.length === 0) return;
      const chunkIds = await Promise.all(pending.map((s) => s.put!));
      await appendJournal(
        db,
        volumeId,
        pending.map((s, i) => ({ seq: s.seq, chunk: chunkIds[i]!, extents: JSON.stringify(s.records) })),
      );
      for (const [i, segment] of pending.entries()) {
        segment.chunk = chunkIds[i]!;
        segment.committed = true;
        keepSegment(segment);
      }
      sealed -= pending.length;
    });

  /**
   * Folds the committed journal into the volume's blocks. A block's new bytes are its stored
   * bytes with every record of the folded rows laid over in order (records, not `extents`: a
   * write not yet committed may hide one that was).
   */
  let folding: Promise<void> | undefined;
  const fold = async () => {
    const folded = [...segments.values()].filter((s) => s.committed);
    if (folded.length === 0) return;
    const through = folded.at(-1)!.seq;
    const byBlock = new Map<number, { segment: Segment; record: ExtentRecord }[]>();
    for (const segment of folded) {
      for (const record of segment.records) {
        const list = byBlock.get(record[0]) ?? [];
        list.push({ segment, record });
        byBlock.set(record[0], list);
      }
    }
    const rows: { block_index: number; chunk: string; data?: Buffer }[] = [];
    const indices = [...byBlock.keys()];
    for (let at = 0; at < indices.length; at += FOLD_BATCH) {
      const batch = indices.slice(at, at + FOLD_BATCH);
      const made = await Promise.all(batch.map((index) => foldBlock(index, byBlock.get(index)!)));
      for (const [i, index] of batch.entries()) rows.push({ block_index: index, ...made[i]! });
    }
    await foldJournal(
      db,
      volumeId,
      rows.filter((row) => row.chunk !== ZERO_CHUNK || !knownZero(row.block_index)).map(({ block_index, chunk }) => ({ block_index, chunk })),
      through,
    );
    // Committed: the blocks hold what the folded rows held. One turn, so no read sees half of it.
    for (const row of rows) {
      own.set(row.block_index, row.chunk);
      versions.set(row.block_index, versionOf(row.block_index) + 1);
      clean.delete(row.block_index);
      if (row.data) keepClean(row.block_index, row.data);
    }
    for (const [index, list] of extents) {
      const left = list.filter((e) => e.segment.seq > through);
      if (left.length) extents.set(index, left);
      else extents.delete(index);
    }
    for (const segment of folded) {
      segments.delete(segment.seq);
      kept.delete(segment.seq);
    }
  };
  const foldBlock = async (index: number, records: { segment: Segment; record: ExtentRecord }[]): Promise<{ chunk: string; data?: Buffer }> => {
    const { segment, record } = records.at(-1)!;
    const [, within, length, at] = record;
    if (within === 0 && length === BLOCK_SIZE) {
      // Written whole last: the segment is the block, or the block is zeros.
      return at === -1 ? { chunk: ZERO_CHUNK } : { chunk: segment.chunk! };
    }
    // Folds run one at a time, and only a fold changes a block's stored bytes: no read again.
    const block = Buffer.allocUnsafe(BLOCK_SIZE);
    await composeInto(
      index,
      0,
      block,
      records.map(({ segment: from, record: [, within, length, at] }) => ({ segment: from, within, length, at })),
      true,
    );
    return { chunk: await chunks.put(block), data: block };
  };
  /** Commits and folds everything written so far. */
  const settle = async () => {
    await commit();
    await foldSerially(fold);
  };

  /** Past a few full segments, their rows commit; past FOLD_SEGMENTS, a fold starts in the background. */
  const bound = async () => {
    if (sealed > UNCOMMITTED_MAX) await commit();
    if (!folding && segments.size > FOLD_SEGMENTS) {
      folding = foldSerially(fold)
        .catch(() => {}) // the rows stay; the next settle reports it
        .finally(() => (folding = undefined));
    }
  };

  /** Bytes of an extent's payload, `length` of them `skip` into it: from memory, or read from its chunk. */
  const payloadOf = (e: Extent, skip: number, length: number): Buffer | Promise<Buffer> =>
    e.segment.data ? e.segment.data.subarray(e.at + skip, e.at + skip + length) : chunks.getRange(e.segment.chunk!, e.at + skip, length);

  /**
   * Copies the stored bytes of part of a block, under the journal, into `into`. Where a range
   * read costs a request (an object store), the block is fetched whole and kept when the guest
   * reads in order or much of it; where it costs a pread, just that part is read, straight in.
   */
  const storedInto = async (index: number, within: number, into: Buffer, inOrder: boolean): Promise<void> => {
    const upTo = within + into.length;
    const hit = clean.get(index);
    if (hit) {
      hit.copy(into, 0, within, upTo);
    } else if (!chunks.cheapRanges && (inOrder || into.length >= BLOCK_SIZE / 8)) {
      // Stored blocks are never changed, so copying after the wait is safe.
      (await stored(index)).copy(into, 0, within, upTo);
    } else {
      const chunk = await chunkOf(index);
      if (chunk === ZERO_CHUNK) into.fill(0);
      else await chunks.getRange(chunk, within, into.length, into);
    }
  };

  /**
   * Part of a block (`into.length` bytes from `within`) as its stored bytes with `over` (extents
   * that overlap it, in write order) laid over them, into `into`; the stored bytes are not read
   * where one extent hides the whole part.
   */
  const composeInto = async (index: number, within: number, into: Buffer, over: readonly Extent[], inOrder: boolean): Promise<void> => {
    const end = within + into.length;
    const hidden = over.some((e) => e.within <= within && e.within + e.length >= end);
    const [, ...payloads] = await Promise.all([
      hidden ? undefined : storedInto(index, within, into, inOrder),
      ...over.map((e) => {
        const from = Math.max(within, e.within);
        return e.at === -1 ? undefined : payloadOf(e, from - e.within, Math.min(end, e.within + e.length) - from);
      }),
    ]);
    for (const [i, e] of over.entries()) {
      const from = Math.max(within, e.within);
      const upTo = Math.min(end, e.within + e.length);
      if (e.at === -1) into.fill(0, from - within, upTo - within);
      else payloads[i]!.copy(into, from - within);
    }
  };

  /** What a read sees of part of a block now, into `into`: its stored bytes with the journal's extents over them. */
  const readPieceInto = async (index: number, within: number, into: Buffer, inOrder: boolean): Promise<void> => {
    const end = within + into.length;
    for (;;) {
      const version = versionOf(index);
      // Payload bytes never change once written, so the extents as they are now can be composed
      // later; only a fold (a new version of the block) means starting again.
      const over = (extents.get(index) ?? []).filter((e) => e.within < end && e.within + e.length > within);
      await composeInto(index, within, into, over, inOrder);
      if (versionOf(index) === version) return;
    }
  };

  /** Where the last read ended: a read starting there is read ahead of. */
  let readEnd = -1;
  const readAhead = (offset: number, length: number): boolean => {
    const sequential = offset === readEnd;
    readEnd = offset + length;
    // Where a range costs a pread, the page cache under the packs reads ahead.
    if (!sequential || chunks.cheapRanges) return sequential;
    const last = Math.floor((sizeBytes - 1) / BLOCK_SIZE);
    const next = Math.floor((offset + length) / BLOCK_SIZE);
    for (let index = next; index <= Math.min(last, next + READ_AHEAD_BLOCKS - 1); index++) {
      if (!clean.has(index)) stored(index).catch(() => {});
    }
    return true;
  };

  const forget = () => {
    closed = true;
    for (const cache of [clean, known, own, windows, segments, extents, kept]) cache.clear();
  };

  /** The journal rows left by an earlier device on this volume, taken as this one's. */
  const ready = (async () => {
    const rows = await journalOf(db, volumeId);
    for (const row of rows) {
      const segment: Segment = { seq: row.seq, used: 0, records: JSON.parse(row.extents) as ExtentRecord[], chunk: row.chunk, committed: true };
      segments.set(row.seq, segment);
      for (const [index, within, length, at] of segment.records) addExtent(index, { segment, within, length, at });
    }
    open = newSegment((rows.at(-1)?.seq ?? 0) + 1);
  })();
  ready.catch(() => {}); // each request that awaits it reports it
  const started = async (offset: number, length: number) => {
    checkRange(offset, length);
    await ready;
  };

  return {
    volumeId,
    size: sizeBytes,

    async read(offset, length, into) {
      await started(offset, length);
      if (into && into.length !== length) throw new RangeError(`${into.length} bytes to read ${length} into`);
      const inOrder = readAhead(offset, length);
      const data = into ?? Buffer.allocUnsafe(length);
      await Promise.all(
        [...blockPieces(offset, length)].map(({ index, within, take, done }) => readPieceInto(index, within, data.subarray(done, done + take), inOrder)),
      );
      return data;
    },

    async write(offset, data, fua) {
      await started(offset, data.length);
      for (const { index, within, take, done } of blockPieces(offset, data.length)) append(index, within, take, data.subarray(done, done + take));
      if (fua) await commit();
      else await bound();
    },

    async writeZeroes(offset, length, fua) {
      await started(offset, length);
      for (const { index, within, take } of blockPieces(offset, length)) append(index, within, take);
      if (fua) await commit();
      else await bound();
    },

    async trim(offset, length) {
      await started(offset, length);
      // Only whole blocks are let go; a part of one keeps its bytes, as the protocol allows.
      for (const { index, take } of blockPieces(offset, length)) if (take === BLOCK_SIZE) append(index, 0, take);
      await bound();
    },

    async flush() {
      await ready;
      await commit();
    },

    async settle() {
      await ready;
      await settle();
    },

    async close() {
      if (closed) return;
      await ready;
      await settle();
      forget();
    },

    abandon: () => forget(),
  };
}
