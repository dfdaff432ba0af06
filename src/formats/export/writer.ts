// What an export writer turns into a disk image file: a disk's size and its non-zero 512 KiB
// blocks, in order. A writer yields the file's bytes front to back, so the file streams into an
// object without ever being whole in memory.

export const EXPORT_BLOCK = 512 * 1024;

export interface DiskBlocks {
  /** Bytes in the disk (a whole number of 512-byte sectors). */
  readonly virtualSize: number;
  /** Indices of the blocks holding data, ascending: known before the data is read, for tables a format writes first. */
  allocated(): AsyncIterable<number>;
  /** The blocks holding data, ascending by index; every other block is zeros. Each data is EXPORT_BLOCK bytes (the last may be shorter when virtualSize is not a multiple). */
  blocks(signal?: AbortSignal): AsyncIterable<{ index: number; data: Buffer }>;
}

/** Writes a disk as one file format, as a stream of buffers. */
export type DiskWriter = (disk: DiskBlocks, signal?: AbortSignal) => AsyncIterable<Buffer>;
