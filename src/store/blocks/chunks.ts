// Snapshot data as content-addressed chunks: one 512 KiB block (the EBS direct APIs' block size)
// per chunk, named by its SHA-256, so identical blocks are stored once and shared by every
// snapshot and volume that holds them. A block of zeros is never stored. Chunks live in pack
// files (packs.ts); the metadata store says where each one is.
import { createHash } from "node:crypto";
import { rm } from "node:fs/promises";
import type { MetaDb } from "../meta/database.js";
import { BufferSlots, runJob } from "../../workers/pool.js";
import { collectPacks, type Collected } from "./collect.js";
import { PackAppender, readSlot, SLOT_BYTES } from "./packs.js";

export const BLOCK_SIZE = SLOT_BYTES;
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

export const isZeroBlock = (block: Buffer) => block.length === BLOCK_SIZE && block.equals(ZEROS);

// Blocks being stored sit in these while a worker hashes them and the file system writes them:
// the caller's buffer is free again at once, a busy import allocates nothing per block, and the
// slots' alignment lets the write go straight to the disk.
const blockSlots = new BufferSlots(BLOCK_SIZE, { kind: "aligned", limit: 32, keep: 32 });

/** Chunks in pack files under `root`; `packSlots` (chunks per pack) is smaller only in tests. */
export function packedChunkStore(root: string, db: MetaDb, options: { packSlots?: number } = {}): ChunkStore {
  const appender = new PackAppender(root, db, options.packSlots);
  /** Chunks being appended: a second put of one waits for the first rather than writing it again. */
  const appending = new Map<string, Promise<void>>();
  let collecting: Promise<Collected> | undefined;

  /** Marks a stored chunk as just put (collection spares it for the grace period); false when it is not stored. */
  const refresh = async (chunk: string) => {
    const { numUpdatedRows } = await db.updateTable("chunk_locations").set({ stored_at: Date.now() }).where("chunk", "=", chunk).executeTakeFirst();
    return numUpdatedRows > 0n;
  };

  /** The chunk's bytes, into `into` when given (an aligned slot, to append them afresh). */
  const read = async (chunk: string, into?: Buffer) => {
    // Twice: collection may move the chunk to another pack between the lookup and the read.
    for (let attempt = 0; attempt < 2; attempt++) {
      const location = await db.selectFrom("chunk_locations").select(["pack", "slot"]).where("chunk", "=", chunk).executeTakeFirst();
      if (!location) break;
      const data = await readSlot(root, location.pack, location.slot, into);
      if (data) return data;
    }
    throw new Error(`chunk ${chunk} is not stored`);
  };
  /** Lets a collection under way finish, and closes the open pack (the next put starts a new one). */
  const close = async () => {
    while (collecting) await collecting.catch(() => {});
    await appender.restart();
  };
  const relocate = (chunk: string) => blockSlots.with(async (slot) => appender.append(chunk, await read(chunk, slot), true));

  return {
    async put(block, copied) {
      if (block.length !== BLOCK_SIZE) throw new Error(`a block is ${BLOCK_SIZE} bytes, not ${block.length}`);
      if (isZeroBlock(block)) return ZERO_CHUNK;
      const slot = await blockSlots.take();
      try {
        block.copy(slot);
        copied?.();
        const { chunk } = await runJob("hash-block", { block: slot.buffer as SharedArrayBuffer, offset: slot.byteOffset, length: BLOCK_SIZE });
        if (!appending.has(chunk) && (await refresh(chunk))) return chunk;
        let appended = appending.get(chunk);
        if (!appended) {
          appended = appender.append(chunk, slot).finally(() => appending.delete(chunk));
          appending.set(chunk, appended);
        }
        await appended;
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
    async collect(graceMs, now = Date.now()) {
      // One collection at a time: two would move the same chunks.
      while (collecting) await collecting.catch(() => {});
      collecting = collectPacks({ db, root, appender, relocate }, graceMs, now).finally(() => (collecting = undefined));
      return collecting;
    },
    async reset() {
      await close();
      await rm(root, { recursive: true, force: true });
    },
    close,
  };
}
