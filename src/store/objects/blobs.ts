// Bucket object bytes, as blobs: immutable files written once under a fresh id. A blob is
// written aside, synced and renamed into place, so it is whole or absent; the metadata store
// names it only after that, so an object is never torn. Readers of a blob keep it until they
// finish, even when the object naming it is replaced or deleted meanwhile.
import { randomUUID } from "node:crypto";
import { createReadStream, createWriteStream, constants as fsConstants } from "node:fs";
import { copyFile, mkdir, open, rename, rm, stat, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { PassThrough, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { listDir } from "../list-dir.js";
import type { BlobRef } from "../meta/schema.js";

export interface BlobRange {
  id: string;
  /** First byte to read, and the byte after the last. */
  start: number;
  end: number;
}

/** The blob ranges that hold bytes [start, end) of an object made of `blobs` in order. */
export function rangesOf(blobs: readonly BlobRef[], start: number, end: number): BlobRange[] {
  const ranges: BlobRange[] = [];
  let offset = 0;
  for (const blob of blobs) {
    const from = Math.max(start, offset);
    const to = Math.min(end, offset + blob.size);
    if (from < to) ranges.push({ id: blob.id, start: from - offset, end: to - offset });
    offset += blob.size;
  }
  return ranges;
}

/** Every byte of an object made of `blobs`. */
export const wholeRanges = (blobs: readonly BlobRef[]): BlobRange[] => blobs.map((b) => ({ id: b.id, start: 0, end: b.size }));

export interface RandomReader {
  readonly size: number;
  /** Exactly `length` bytes from `offset` (the caller keeps within size). */
  read(offset: number, length: number): Promise<Buffer>;
  /** Fills `target` with the bytes from `offset`. */
  readInto(target: Buffer, offset: number): Promise<void>;
  close(): Promise<void>;
}

export interface BlobStore {
  /** Writes a stream into a new blob; resolves once it is durable, and leaves nothing if the stream fails. */
  write(source: Readable): Promise<{ id: string; size: number }>;
  /** The ranges, one after another, as one stream. */
  read(ranges: readonly BlobRange[]): Readable;
  /**
   * Random access to an object made of `blobs` in order (a disk image being imported): reads at
   * any offset, the blobs held until close().
   */
  openRandom(blobs: readonly BlobRef[]): Promise<RandomReader>;
  /** A new blob with the same bytes (a reflink where the file system offers one). */
  copy(id: string): Promise<string>;
  /** Removes a blob, once no reader holds it. */
  remove(id: string): Promise<void>;
  /** Every blob stored, with when it was written, for a sweep of those no object names. */
  ids(): AsyncIterable<{ id: string; modifiedMs: number }>;
  /** Drops leftovers of interrupted writes made before `before` (ms since the epoch). */
  clearLeftovers(before: number): Promise<void>;
  reset(): Promise<void>;
}

const BLOB_ID = /^[0-9a-f]{32}$/;

export function fileBlobStore(root: string): BlobStore {
  const temporaryDir = join(root, "tmp");
  const pathOf = (id: string) => {
    if (!BLOB_ID.test(id)) throw new Error(`not a blob id: ${id}`);
    return join(root, id.slice(0, 2), id);
  };
  const readers = new Map<string, number>();
  const doomed = new Set<string>();

  const hold = (id: string) => readers.set(id, (readers.get(id) ?? 0) + 1);
  const release = (id: string) => {
    const left = (readers.get(id) ?? 1) - 1;
    if (left > 0) return void readers.set(id, left);
    readers.delete(id);
    if (doomed.delete(id)) void rm(pathOf(id), { force: true });
  };

  async function durable(path: string, id: string) {
    const file = await open(path, "r+");
    try {
      await file.datasync();
    } finally {
      await file.close();
    }
    await mkdir(join(root, id.slice(0, 2)), { recursive: true });
    await rename(path, pathOf(id));
  }

  return {
    async write(source) {
      await mkdir(temporaryDir, { recursive: true });
      const id = randomUUID().replaceAll("-", "");
      const temporary = join(temporaryDir, id);
      // The write stream counts what it wrote: a 'data' listener on the source would set it
      // flowing past the pipeline's backpressure.
      const file = createWriteStream(temporary, { flags: "wx", highWaterMark: 1 << 20 });
      let size = 0;
      try {
        await pipeline(source, file);
        size = file.bytesWritten;
        await durable(temporary, id);
      } catch (error) {
        await rm(temporary, { force: true });
        throw error;
      }
      return { id, size };
    },

    read(ranges) {
      const out = new PassThrough({ highWaterMark: 1 << 20 });
      for (const { id } of ranges) hold(id);
      void (async () => {
        try {
          for (const { id, start, end } of ranges) {
            if (end <= start) continue;
            await pipeline(createReadStream(pathOf(id), { start, end: end - 1, highWaterMark: 1 << 20 }), out, { end: false });
          }
          out.end();
        } catch (error) {
          out.destroy(error as Error);
        } finally {
          for (const { id } of ranges) release(id);
        }
      })();
      return out;
    },

    async openRandom(parts) {
      for (const { id } of parts) hold(id);
      const handles = new Map<string, FileHandle>();
      const size = parts.reduce((sum, p) => sum + p.size, 0);
      const handleOf = async (id: string) => {
        let handle = handles.get(id);
        if (!handle) handles.set(id, (handle = await open(pathOf(id), "r")));
        return handle;
      };
      let closed = false;
      const readInto = async (out: Buffer, offset: number) => {
        const length = out.length;
        if (closed) throw new Error("the blob reader is closed");
        let done = 0;
        for (const range of rangesOf(parts, offset, offset + length)) {
          const handle = await handleOf(range.id);
          const want = range.end - range.start;
          let got = 0;
          while (got < want) {
            const { bytesRead } = await handle.read(out, done + got, want - got, range.start + got);
            if (bytesRead === 0) throw new Error(`blob ${range.id} is shorter than its row says`);
            got += bytesRead;
          }
          done += want;
        }
        if (done !== length) throw new Error(`read past the end of an object of ${size} bytes`);
      };
      return {
        size,
        async read(offset, length) {
          const out = Buffer.allocUnsafe(length);
          await readInto(out, offset);
          return out;
        },
        readInto,
        async close() {
          if (closed) return;
          closed = true;
          await Promise.all([...handles.values()].map((h) => h.close()));
          for (const { id } of parts) release(id);
        },
      };
    },

    async copy(id) {
      await mkdir(temporaryDir, { recursive: true });
      const copyId = randomUUID().replaceAll("-", "");
      const temporary = join(temporaryDir, copyId);
      hold(id);
      try {
        await copyFile(pathOf(id), temporary, fsConstants.COPYFILE_FICLONE);
        await durable(temporary, copyId);
      } catch (error) {
        await rm(temporary, { force: true });
        throw error;
      } finally {
        release(id);
      }
      return copyId;
    },

    async remove(id) {
      if (readers.has(id)) doomed.add(id);
      else await rm(pathOf(id), { force: true });
    },

    async *ids() {
      for (const prefix of await listDir(root)) {
        if (prefix === "tmp") continue;
        for (const name of await listDir(join(root, prefix))) {
          if (!BLOB_ID.test(name)) continue;
          const info = await stat(join(root, prefix, name)).catch(() => undefined);
          if (info) yield { id: name, modifiedMs: info.mtimeMs };
        }
      }
    },

    async clearLeftovers(before) {
      for (const name of await listDir(temporaryDir)) {
        const path = join(temporaryDir, name);
        const info = await stat(path).catch(() => undefined);
        if (info && info.mtimeMs < before) await rm(path, { force: true });
      }
    },

    async reset() {
      await rm(root, { recursive: true, force: true });
    },
  };
}
