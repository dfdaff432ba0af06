// Snapshot data as content-addressed chunks: one 512 KiB block (the EBS direct APIs' block size)
// per file, named by its SHA-256, so identical blocks are stored once and shared by every
// snapshot and volume that holds them. A block of zeros is never stored.
import { createHash } from "node:crypto";
import { opendir, readFile, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { BufferSlots, runJob } from "../../workers/pool.js";
import { chunkPath } from "./chunk-files.js";

export const BLOCK_SIZE = 512 * 1024;
/** The chunk id recorded for a block of zeros: nothing is stored for it. */
export const ZERO_CHUNK = "";
const ZEROS = Buffer.alloc(BLOCK_SIZE);
/** SHA-256 of a block of zeros, for checksums over blocks that were written as zeros. */
export const ZERO_BLOCK_SHA256 = createHash("sha256").update(ZEROS).digest("hex");

const CHUNK_ID = /^[0-9a-f]{64}$/;

export interface ChunkStore {
  /** Stores a block and returns its chunk id (its SHA-256, or ZERO_CHUNK). */
  put(block: Buffer): Promise<string>;
  /** The block a chunk id names (zeros for ZERO_CHUNK). */
  get(chunk: string): Promise<Buffer>;
  /** Removes every chunk (POST /_kiln/reset). */
  reset(): Promise<void>;
  /** Every stored file (chunks and leftovers of interrupted writes), with when it was last put. */
  files(): AsyncIterable<{ chunk: string; path: string; modifiedMs: number }>;
  remove(path: string): Promise<void>;
}

export const isZeroBlock = (block: Buffer) => block.length === BLOCK_SIZE && block.equals(ZEROS);

// Blocks being stored sit in these while a worker hashes and writes them: the caller's buffer
// is free again at once, a busy import allocates nothing per block, and the slots' alignment lets
// the worker write straight to the disk.
const blockSlots = new BufferSlots(BLOCK_SIZE, { kind: "aligned", limit: 32, keep: 32 });

export function fileChunkStore(root: string): ChunkStore {
  const pathOf = (chunk: string) => chunkPath(root, chunk);
  return {
    async put(block) {
      if (block.length !== BLOCK_SIZE) throw new Error(`a block is ${BLOCK_SIZE} bytes, not ${block.length}`);
      if (isZeroBlock(block)) return ZERO_CHUNK;
      const slot = await blockSlots.take();
      try {
        block.copy(slot);
        const { chunk } = await runJob("store-chunk", { root, block: slot.buffer as SharedArrayBuffer, offset: slot.byteOffset, length: BLOCK_SIZE });
        return chunk;
      } finally {
        blockSlots.give(slot);
      }
    },
    async get(chunk) {
      if (chunk === ZERO_CHUNK) return Buffer.alloc(BLOCK_SIZE);
      if (!CHUNK_ID.test(chunk)) throw new Error(`not a chunk id: ${chunk}`);
      return readFile(pathOf(chunk));
    },
    async reset() {
      await rm(root, { recursive: true, force: true });
    },
    async *files() {
      for (const first of await listDir(root)) {
        for (const second of await listDir(join(root, first))) {
          for (const name of await listDir(join(root, first, second))) {
            const path = join(root, first, second, name);
            const info = await stat(path).catch(() => undefined);
            if (info?.isFile()) yield { chunk: name.slice(0, 64), path, modifiedMs: info.mtimeMs };
          }
        }
      }
    },
    async remove(path) {
      await rm(path, { force: true });
    },
  };
}

async function listDir(dir: string): Promise<string[]> {
  try {
    const names: string[] = [];
    for await (const entry of await opendir(dir)) names.push(entry.name);
    return names;
  } catch {
    return [];
  }
}
