// How a chunk lies on disk: `<root>/ab/cd/<sha256>`, written aside, synced, then renamed, so a
// chunk file is whole or absent even after a crash. Storing one is a pool worker's job: hashing
// 512 KiB and the file system calls around it would otherwise take the main thread's time.
//
// Chunks are written with O_DIRECT where the file system allows it: a chunk is synced at once
// and seldom read soon, so a copy through the page cache is pure cost (on a virtual machine
// often the largest cost of an import), and it would push out pages that are read.
import { createHash, randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { mkdir, open, rename, rm, stat, utimes } from "node:fs/promises";
import { join } from "node:path";
import type { Handled } from "../../workers/jobs.js";

export const chunkPath = (root: string, chunk: string) => join(root, chunk.slice(0, 2), chunk.slice(2, 4), chunk);

export interface StoreChunkRequest {
  root: string;
  /** The block: `length` bytes at `offset` of a shared slot the caller lends for the job (page
   * aligned, for O_DIRECT). */
  block: SharedArrayBuffer;
  offset: number;
  length: number;
}

export interface StoreChunkResult {
  chunk: string;
}

export async function storeChunkJob({ root, block, offset, length }: StoreChunkRequest): Promise<Handled<StoreChunkResult>> {
  const data = Buffer.from(block, offset, length);
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
  const direct = !buffered.has(root) && constants.O_DIRECT !== undefined;
  try {
    await writeSynced(root, chunk, temporary, data, direct);
  } catch (error) {
    if (!direct || (error as NodeJS.ErrnoException).code !== "EINVAL") throw error;
    buffered.add(root);
    await rm(temporary, { force: true });
    await writeSynced(root, chunk, temporary, data, false);
  }
  await rename(temporary, path);
}

/** Roots whose file system refused O_DIRECT (tmpfs on older kernels, some network file systems). */
const buffered = new Set<string>();

/** Writes `data` to a new file and syncs it; the chunk's folder is made when it is missing. */
async function writeSynced(root: string, chunk: string, temporary: string, data: Buffer, direct: boolean): Promise<void> {
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | (direct ? constants.O_DIRECT : 0);
  const file = await open(temporary, flags, 0o644).catch(async (error: NodeJS.ErrnoException) => {
    if (error.code !== "ENOENT") throw error;
    // The chunk's folder does not exist yet (first chunk under this prefix, or after a reset).
    await mkdir(join(root, chunk.slice(0, 2), chunk.slice(2, 4)), { recursive: true });
    return open(temporary, flags, 0o644);
  });
  try {
    let written = 0;
    while (written < data.length) written += (await file.write(data, written, data.length - written, written)).bytesWritten;
    await file.datasync();
  } finally {
    await file.close();
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
