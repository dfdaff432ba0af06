// How a chunk lies on disk: `<root>/ab/cd/<sha256>`, written aside, synced, then renamed, so a
// chunk file is whole or absent even after a crash. Storing one is a pool worker's job: hashing
// 512 KiB and the file system calls around it would otherwise take the main thread's time.
import { createHash, randomBytes } from "node:crypto";
import { mkdir, open, rename, stat, utimes } from "node:fs/promises";
import { join } from "node:path";
import type { Handled } from "../../workers/jobs.js";

export const chunkPath = (root: string, chunk: string) => join(root, chunk.slice(0, 2), chunk.slice(2, 4), chunk);

export interface StoreChunkRequest {
  root: string;
  /** The block, the first `length` bytes of a shared slot the caller lends for the job. */
  block: SharedArrayBuffer;
  length: number;
}

export interface StoreChunkResult {
  chunk: string;
}

export async function storeChunkJob({ root, block, length }: StoreChunkRequest): Promise<Handled<StoreChunkResult>> {
  const data = Buffer.from(block, 0, length);
  const chunk = createHash("sha256").update(data).digest("hex");
  await writeChunk(root, chunk, data);
  return { result: { chunk } };
}

async function writeChunk(root: string, chunk: string, data: Buffer): Promise<void> {
  const path = chunkPath(root, chunk);
  if (await exists(path)) {
    // Fresh again: collection spares chunks put within its grace period, so one about to be
    // referenced by a new manifest is never swept in between.
    const now = new Date();
    await utimes(path, now, now);
    return;
  }
  const temporary = `${path}.${randomBytes(6).toString("hex")}.tmp`;
  const file = await open(temporary, "wx").catch(async (error: NodeJS.ErrnoException) => {
    if (error.code !== "ENOENT") throw error;
    // The chunk's folder does not exist yet (first chunk under this prefix, or after a reset).
    await mkdir(join(root, chunk.slice(0, 2), chunk.slice(2, 4)), { recursive: true });
    return open(temporary, "wx");
  });
  try {
    await file.writeFile(data);
    await file.datasync();
  } finally {
    await file.close();
  }
  await rename(temporary, path);
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
