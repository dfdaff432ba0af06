// A BlockDevice over a file: the tests serve one over NBD, and the boot benchmark compares a
// guest on an NBD export of a file with one on the file itself. Writes go to the page cache and
// a flush is fdatasync. Node has no fallocate, so zeroing writes zeros (from one shared buffer)
// and trim does nothing: the interface lets trimmed bytes keep their data.
import { open, type FileHandle } from "node:fs/promises";
import type { BlockDevice } from "./block-device.js";

const SECTOR = 512;
/** Zeros written by writeZeroes, a slice at a time; never written to. */
const ZEROS = Buffer.alloc(1024 * 1024);

export interface FileDevice extends BlockDevice {
  readonly path: string;
  close(): Promise<void>;
}

/** Opens `path` (a file whose size is a multiple of 512) as a device, read-write unless told. */
export async function openFileDevice(path: string, options: { readOnly?: boolean } = {}): Promise<FileDevice> {
  const handle = await open(path, options.readOnly ? "r" : "r+");
  try {
    const { size } = await handle.stat();
    if (size % SECTOR !== 0) throw new Error(`${path}: ${size} bytes is not a whole number of ${SECTOR}-byte sectors`);
    return new FileBlockDevice(path, handle, size);
  } catch (error) {
    await handle.close();
    throw error;
  }
}

class FileBlockDevice implements FileDevice {
  constructor(
    readonly path: string,
    private readonly handle: FileHandle,
    readonly size: number,
  ) {}

  private check(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new RangeError(`${length} bytes at ${offset} are outside the device's ${this.size}`);
    }
  }

  async read(offset: number, length: number, into?: Buffer): Promise<Buffer> {
    this.check(offset, length);
    if (into && into.length !== length) throw new RangeError(`${into.length} bytes to read ${length} into`);
    const buffer = into ?? Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await this.handle.read(buffer, done, length - done, offset + done);
      if (bytesRead === 0) {
        // The file shrank under us: what is gone reads as zeros.
        buffer.fill(0, done);
        break;
      }
      done += bytesRead;
    }
    return buffer;
  }

  async write(offset: number, data: Buffer, fua = false): Promise<void> {
    this.check(offset, data.length);
    await this.writeAll(offset, data);
    if (fua) await this.handle.datasync();
  }

  async writeZeroes(offset: number, length: number, fua = false): Promise<void> {
    this.check(offset, length);
    for (let done = 0; done < length; done += ZEROS.length) {
      await this.writeAll(offset + done, ZEROS.subarray(0, Math.min(ZEROS.length, length - done)));
    }
    if (fua) await this.handle.datasync();
  }

  async trim(offset: number, length: number): Promise<void> {
    this.check(offset, length);
  }

  async flush(): Promise<void> {
    await this.handle.datasync();
  }

  close(): Promise<void> {
    return this.handle.close();
  }

  private async writeAll(offset: number, data: Buffer): Promise<void> {
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.handle.write(data, done, data.length - done, offset + done);
      done += bytesWritten;
    }
  }
}
