// Random access to the bytes of a disk image file, wherever they live (a bucket object, a file,
// a slice of an OVA). Every format reader and inspector reads through this, so none of them
// holds more than the pieces it asked for.
import { open, type FileHandle } from "node:fs/promises";
import { DiskImageError } from "./errors.js";

export interface ByteSource {
  /** Bytes in the source. */
  readonly size: number;
  /** Exactly `length` bytes from `offset`; a read that runs past the end is a truncated file. */
  read(offset: number, length: number): Promise<Buffer>;
}

/** Refuses a read outside [0, size): the header or table that asked for it lies. */
export function checkRange(size: number, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
    throw new DiskImageError(`truncated file: ${length} bytes wanted at offset ${offset} of ${size}`);
  }
}

export function bufferSource(bytes: Buffer): ByteSource {
  return {
    size: bytes.length,
    async read(offset, length) {
      checkRange(bytes.length, offset, length);
      return bytes.subarray(offset, offset + length);
    },
  };
}

/** Bytes [offset, offset + size) of another source, as a source of their own. */
export function sliceSource(source: ByteSource, offset: number, size: number): ByteSource {
  checkRange(source.size, offset, size);
  return {
    size,
    read(at, length) {
      checkRange(size, at, length);
      return source.read(offset + at, length);
    },
  };
}

export interface FileSource extends ByteSource {
  close(): Promise<void>;
}

export async function fileSource(path: string): Promise<FileSource> {
  const handle: FileHandle = await open(path, "r");
  const { size } = await handle.stat();
  return {
    size,
    async read(offset, length) {
      checkRange(size, offset, length);
      const buffer = Buffer.allocUnsafe(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await handle.read(buffer, done, length - done, offset + done);
        if (bytesRead === 0) throw new DiskImageError(`truncated file: it ended at ${offset + done}`);
        done += bytesRead;
      }
      return buffer;
    },
    close: () => handle.close(),
  };
}
