// Snapshot data as content-addressed chunks: one 512 KiB block (the EBS direct APIs' block size)
// per file, named by its SHA-256, so identical blocks are stored once and shared by every
// snapshot and volume that holds them. A block of zeros is never stored.
import { createHash, randomBytes } from "node:crypto";
import { mkdir, open, opendir, readFile, rename, rm, stat, utimes } from "node:fs/promises";
import { join } from "node:path";

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

export function fileChunkStore(root: string): ChunkStore {
  const pathOf = (chunk: string) => join(root, chunk.slice(0, 2), chunk.slice(2, 4), chunk);
  return {
    async put(block) {
      if (block.length !== BLOCK_SIZE) throw new Error(`a block is ${BLOCK_SIZE} bytes, not ${block.length}`);
      if (isZeroBlock(block)) return ZERO_CHUNK;
      const chunk = createHash("sha256").update(block).digest("hex");
      const path = pathOf(chunk);
      if (await exists(path)) {
        // Fresh again: collection spares chunks put within its grace period, so one about to be
        // referenced by a new manifest is never swept in between.
        const now = new Date();
        await utimes(path, now, now);
        return chunk;
      }
      await mkdir(join(root, chunk.slice(0, 2), chunk.slice(2, 4)), { recursive: true });
      // Written aside, synced, then renamed: a chunk file is whole or absent, even after a crash.
      const temporary = `${path}.${randomBytes(6).toString("hex")}.tmp`;
      const file = await open(temporary, "wx");
      try {
        await file.writeFile(block);
        await file.datasync();
      } finally {
        await file.close();
      }
      await rename(temporary, path);
      return chunk;
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

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
