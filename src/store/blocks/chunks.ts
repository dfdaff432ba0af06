// Snapshot data as content-addressed chunks: one 512 KiB block (the EBS direct APIs' block size)
// per chunk, named by its SHA-256, so identical blocks are stored once and shared by every
// snapshot and volume that holds them. A block of zeros is never stored. Chunks live in a home
// (pack files in the data folder, or objects in an object store); the metadata store's
// chunk_locations say where each one is.
import { createHash } from "node:crypto";
import type { MetaDb } from "../meta/database.js";
import { BufferSlots, runJob } from "../../workers/pool.js";

export const BLOCK_SIZE = 512 * 1024;
/** The chunk id recorded for a block of zeros: nothing is stored for it. */
export const ZERO_CHUNK = "";
const ZEROS = Buffer.alloc(BLOCK_SIZE);
/** SHA-256 of a block of zeros, for checksums over blocks that were written as zeros. */
export const ZERO_BLOCK_SHA256 = createHash("sha256").update(ZEROS).digest("hex");

const CHUNK_ID = /^[0-9a-f]{64}$/;

export interface ChunkStore {
  /**
   * Stores a block and returns its chunk id (its SHA-256, or ZERO_CHUNK), once it is durable.
   * `copied` hears when the store has its own copy: the caller may reuse `block` from then on.
   */
  put(block: Buffer, copied?: () => void): Promise<string>;
  /** The block a chunk id names (zeros for ZERO_CHUNK). */
  get(chunk: string): Promise<Buffer>;
  /** `length` bytes of it from `offset` (into `into` when given): a guest reading a few KiB reads no more from the home. */
  getRange(chunk: string, offset: number, length: number, into?: Buffer): Promise<Buffer>;
  /**
   * True where reading part of a chunk costs about what its bytes do (a pread in a pack),
   * false where each read is a request (an object store): readers then fetch and keep whole blocks.
   */
  readonly cheapRanges: boolean;
  /**
   * Forgets chunks no snapshot or volume names and that were last put over `graceMs` ago, and
   * gives back the space of packs left empty or mostly empty.
   */
  collect(graceMs: number, now?: number): Promise<Collected>;
  /** Removes every chunk (POST /_kiln/reset, after the metadata store was emptied). */
  reset(): Promise<void>;
  /** Waits for puts under way and closes the open pack (Kiln stopping). */
  close(): Promise<void>;
}

/**
 * The blocks a byte range touches, in order, each with where the range starts in it (`within`),
 * how much of it the range covers (`take`) and how far into the range it begins (`done`).
 */
export function* blockPieces(offset: number, length: number): Generator<{ index: number; within: number; take: number; done: number }> {
  let done = 0;
  while (done < length) {
    const at = offset + done;
    const index = Math.floor(at / BLOCK_SIZE);
    const within = at - index * BLOCK_SIZE;
    const take = Math.min(BLOCK_SIZE - within, length - done);
    yield { index, within, take, done };
    done += take;
  }
}

export const isZeroBlock = (block: Buffer) => block.length === BLOCK_SIZE && block.equals(ZEROS);

/** Where chunk bytes live: pack files in a folder (pack-home.ts), or objects in a bucket (bucket-home.ts). */
export interface ChunkHome {
  /** Stores a chunk not stored yet and commits its location; resolves once both are durable. */
  store(chunk: string, block: Buffer): Promise<void>;
  /**
   * The bytes at a committed location (into `into` when given, as many as it holds, from
   * `offset`); undefined when they moved or went meanwhile.
   */
  read(location: ChunkLocation, into?: Buffer, offset?: number): Promise<Buffer | undefined>;
  /** Collection (see ChunkStore.collect); `withChunk` lends a live chunk's bytes, to move it. */
  collect(graceMs: number, now: number, withChunk: (chunk: string, use: (data: Buffer) => Promise<void>) => Promise<void>): Promise<Collected>;
  /** True for a location this kind of home wrote (a data folder's packs and a bucket's objects are not interchangeable). */
  owns(location: ChunkLocation): boolean;
  /** See ChunkStore.cheapRanges. */
  readonly cheapRanges: boolean;
  close(): Promise<void>;
  reset(): Promise<void>;
}

/** What a collection found: the chunks kept and forgotten, the pack files removed. */
export interface Collected {
  /** Chunks still stored, and chunks forgotten by this collection. */
  kept: number;
  removed: number;
  /** Pack files deleted, and of those, the ones whose live chunks were moved first. */
  packsRemoved: number;
  packsCompacted: number;
}

export interface ChunkLocation {
  pack: string;
  slot: number;
}

// Blocks being stored sit in these while a worker hashes them and the home writes them: the
// caller's buffer is free again at once, a busy import allocates nothing per block, and the
// slots' alignment lets a pack write go straight to the disk.
const blockSlots = new BufferSlots(BLOCK_SIZE, { kind: "aligned", limit: 32, keep: 32 });
/** Chunk locations remembered (a few MiB of memory): 32 GiB of chunks. */
const LOCATIONS_KEPT = 65_536;

/** Content addressing over a home: hashing, de-duplication, locations, collection one at a time. */
export function chunkStoreIn(db: MetaDb, home: ChunkHome): ChunkStore {
  /** Chunks being stored: a second put of one waits for the first rather than writing it again. */
  const storing = new Map<string, Promise<void>>();
  let collecting: Promise<Collected> | undefined;

  /** Marks a stored chunk as just put (collection spares it for the grace period); false when it is not stored. */
  const refresh = async (chunk: string) => {
    const { numUpdatedRows } = await db.updateTable("chunk_locations").set({ stored_at: Date.now() }).where("chunk", "=", chunk).executeTakeFirst();
    return numUpdatedRows > 0n;
  };

  // Locations looked up, so a guest reading its disk a few KiB at a time costs no statement per
  // read. A chunk's bytes never change and a location is never reused (packs are only appended
  // to, objects have names of their own), so a location remembered stays right for as long as
  // it can be read; one that cannot (collection moved the chunk) is looked up again.
  const locations = new Map<string, ChunkLocation>();
  const remember = (chunk: string, location: ChunkLocation) => {
    locations.delete(chunk);
    locations.set(chunk, location);
    if (locations.size > LOCATIONS_KEPT) locations.delete(locations.keys().next().value!);
  };
  /** The chunk's bytes, into `into` when given (as many as it holds, from `offset`). */
  const read = async (chunk: string, into?: Buffer, offset = 0) => {
    const known = locations.get(chunk);
    if (known) {
      const data = await home.read(known, into, offset);
      if (data) return data;
      locations.delete(chunk);
    }
    // Twice: collection may move the chunk between the lookup and the read.
    for (let attempt = 0; attempt < 2; attempt++) {
      const location = await db.selectFrom("chunk_locations").select(["pack", "slot"]).where("chunk", "=", chunk).executeTakeFirst();
      if (!location) break;
      const data = await home.read(location, into, offset);
      if (data) {
        remember(chunk, location);
        return data;
      }
    }
    throw new Error(`chunk ${chunk} is not stored`);
  };
  /** Lets a collection under way finish, and closes the home (the next put opens it afresh). */
  const close = async () => {
    while (collecting) await collecting.catch(() => {});
    await home.close();
  };
  const withChunk = (chunk: string, use: (data: Buffer) => Promise<void>) => blockSlots.with(async (slot) => use(await read(chunk, slot)));

  return {
    async put(block, copied) {
      if (block.length !== BLOCK_SIZE) throw new Error(`a block is ${BLOCK_SIZE} bytes, not ${block.length}`);
      if (isZeroBlock(block)) return ZERO_CHUNK;
      const slot = await blockSlots.take();
      try {
        block.copy(slot);
        copied?.();
        const { chunk } = await runJob("hash-block", { block: slot.buffer as SharedArrayBuffer, offset: slot.byteOffset, length: BLOCK_SIZE });
        if (!storing.has(chunk) && (await refresh(chunk))) return chunk;
        let stored = storing.get(chunk);
        if (!stored) {
          stored = home.store(chunk, slot).finally(() => storing.delete(chunk));
          storing.set(chunk, stored);
        }
        await stored;
        return chunk;
      } finally {
        blockSlots.give(slot);
      }
    },
    async get(chunk) {
      if (chunk === ZERO_CHUNK) return Buffer.alloc(BLOCK_SIZE);
      if (!CHUNK_ID.test(chunk)) throw new Error(`not a chunk id: ${chunk}`);
      return read(chunk);
    },
    cheapRanges: home.cheapRanges,
    async getRange(chunk, offset, length, into) {
      if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 0 || offset + length > BLOCK_SIZE) {
        throw new RangeError(`${length} bytes at ${offset} are outside a chunk`);
      }
      if (into && into.length !== length) throw new RangeError(`${into.length} bytes to read ${length} into`);
      if (chunk === ZERO_CHUNK) return into ? into.fill(0) : Buffer.alloc(length);
      if (!CHUNK_ID.test(chunk)) throw new Error(`not a chunk id: ${chunk}`);
      return read(chunk, into ?? Buffer.allocUnsafe(length), offset);
    },
    async collect(graceMs, now = Date.now()) {
      // One collection at a time: two would move the same chunks.
      while (collecting) await collecting.catch(() => {});
      collecting = home.collect(graceMs, now, withChunk).finally(() => (collecting = undefined));
      return collecting;
    },
    async reset() {
      await close();
      locations.clear();
      await home.reset();
    },
    close,
  };
}

/**
 * Refuses a metadata store whose chunks another kind of home wrote: snapshot data in a data
 * folder's packs cannot be read from a bucket, nor the other way round.
 */
export async function checkChunkHome(db: MetaDb, home: ChunkHome, name: string): Promise<void> {
  const any = await db.selectFrom("chunk_locations").select(["pack", "slot"]).limit(1).executeTakeFirst();
  if (any && !home.owns(any)) {
    throw new Error(
      `this metadata store's snapshot data was written to another data home than ${name} (a data folder's packs and an object store are not interchangeable)`,
    );
  }
}
