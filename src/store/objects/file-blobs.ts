// Blobs as files under one folder: written aside, synced and renamed into place.
import { createReadStream, createWriteStream, constants as fsConstants } from "node:fs";
import { copyFile, mkdir, open, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { listDir } from "../list-dir.js";
import { openRandomOver, streamRanges, type BlobAccess } from "./blob-reading.js";
import { BLOB_ID, newBlobId, type BlobStore } from "./blobs.js";
import { BlobHolds } from "./holds.js";

export function fileBlobStore(root: string): BlobStore {
  const temporaryDir = join(root, "tmp");
  const pathOf = (id: string) => {
    if (!BLOB_ID.test(id)) throw new Error(`not a blob id: ${id}`);
    return join(root, id.slice(0, 2), id);
  };
  const holds = new BlobHolds((id) => rm(pathOf(id), { force: true }));
  const access: BlobAccess = {
    stream: async (id, start, end) => createReadStream(pathOf(id), { start, end: end - 1, highWaterMark: 1 << 20 }),
    async open(id) {
      const handle = await open(pathOf(id), "r");
      return {
        async readInto(into, position) {
          for (let got = 0; got < into.length; ) {
            const { bytesRead } = await handle.read(into, got, into.length - got, position + got);
            if (bytesRead === 0) throw new Error(`blob ${id} is shorter than its row says`);
            got += bytesRead;
          }
        },
        close: () => handle.close(),
      };
    },
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
      const id = newBlobId();
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

    read: (ranges) => streamRanges(holds, access, ranges),
    openRandom: (parts) => openRandomOver(holds, access, parts),

    async copy(id) {
      await mkdir(temporaryDir, { recursive: true });
      const copyId = newBlobId();
      const temporary = join(temporaryDir, copyId);
      holds.hold(id);
      try {
        await copyFile(pathOf(id), temporary, fsConstants.COPYFILE_FICLONE);
        await durable(temporary, copyId);
      } catch (error) {
        await rm(temporary, { force: true });
        throw error;
      } finally {
        await holds.release(id);
      }
      return copyId;
    },

    remove: (id) => holds.remove(id),

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
