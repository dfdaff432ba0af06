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
  /** Fills `target` with the bytes from `offset`: a read into a buffer the caller reuses. */
  readInto?(target: Buffer, offset: number): Promise<void>;
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
    async readInto(target, offset) {
      checkRange(bytes.length, offset, target.length);
      bytes.copy(target, 0, offset, offset + target.length);
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
    readInto: source.readInto
      ? (target, at) => {
          checkRange(size, at, target.length);
          return source.readInto!(target, offset + at);
        }
      : undefined,
  };
}

export interface FileSource extends ByteSource {
  close(): Promise<void>;
}

export async function fileSource(path: string): Promise<FileSource> {
  const handle: FileHandle = await open(path, "r");
  const { size } = await handle.stat();
  const readInto = async (target: Buffer, offset: number) => {
    checkRange(size, offset, target.length);
    let done = 0;
    while (done < target.length) {
      const { bytesRead } = await handle.read(target, done, target.length - done, offset + done);
      if (bytesRead === 0) throw new DiskImageError(`truncated file: it ended at ${offset + done}`);
      done += bytesRead;
    }
  };
  return {
    size,
    async read(offset, length) {
      checkRange(size, offset, length);
      const buffer = Buffer.allocUnsafe(length);
      await readInto(buffer, offset);
      return buffer;
    },
    readInto,
    close: () => handle.close(),
  };
}
