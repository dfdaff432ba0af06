// What every export writer relies on in the DiskBlocks it is given, checked as the blocks arrive:
// a writer lays out tables and offsets from them, so a block out of order, past the end or of the
// wrong length would make a file that lies rather than a failed export.
import { EXPORT_BLOCK, type DiskBlocks } from "./writer.js";

/** Why an export writer stopped: the disk it was given breaks the DiskBlocks contract or the format's limits. */
export class DiskWriterError extends Error {
  override readonly name = "DiskWriterError";
}

/** One block of zeros, shared by every writer for the holes it writes out; never written to. */
export const ZEROS: Buffer = Buffer.alloc(EXPORT_BLOCK);

/** `n` bytes of zeros as slices of ZEROS. */
export function* zeros(n: number): Generator<Buffer> {
  while (n > 0) {
    const piece = Math.min(n, ZEROS.length);
    yield ZEROS.subarray(0, piece);
    n -= piece;
  }
}

export const isZero = (bytes: Buffer) => bytes.equals(ZEROS.subarray(0, bytes.length));

/** The disk's block count, once its size is known to be whole sectors and at most `maxBytes`. */
export function checkSize(disk: DiskBlocks, maxBytes: number, format: string): number {
  const size = disk.virtualSize;
  if (!Number.isSafeInteger(size) || size <= 0 || size % 512 !== 0)
    throw new DiskWriterError(`a disk of ${size} bytes is not a whole number of 512-byte sectors`);
  if (size > maxBytes) throw new DiskWriterError(`a ${format} holds at most ${maxBytes} bytes; this disk has ${size}`);
  return Math.ceil(size / EXPORT_BLOCK);
}

function checkIndex(index: number, previous: number, count: number, what: string): void {
  if (!Number.isSafeInteger(index) || index < 0) throw new DiskWriterError(`the disk named ${what} ${index}, which is not a block index`);
  if (index >= count) throw new DiskWriterError(`${what} ${index} lies past the end of a disk of ${count} blocks`);
  if (index <= previous) throw new DiskWriterError(`${what} ${index} came after ${what} ${previous}: blocks must be in ascending order`);
}

/** The disk's allocated() indices, checked: ascending and inside the disk. */
export async function* checkedAllocated(disk: DiskBlocks, count: number, signal?: AbortSignal): AsyncGenerator<number> {
  let previous = -1;
  for await (const index of disk.allocated()) {
    signal?.throwIfAborted();
    checkIndex(index, previous, count, "allocated block");
    previous = index;
    yield index;
  }
}

/** The disk's blocks(), checked: ascending, inside the disk, each EXPORT_BLOCK bytes but the disk's last. */
export async function* checkedBlocks(disk: DiskBlocks, count: number, signal?: AbortSignal): AsyncGenerator<{ index: number; data: Buffer }> {
  signal?.throwIfAborted();
  let previous = -1;
  for await (const block of disk.blocks(signal)) {
    signal?.throwIfAborted();
    const { index, data } = block;
    checkIndex(index, previous, count, "block");
    const length = Math.min(EXPORT_BLOCK, disk.virtualSize - index * EXPORT_BLOCK);
    if (!Buffer.isBuffer(data) || data.length !== length) throw new DiskWriterError(`block ${index} holds ${data?.length} bytes, not ${length}`);
    previous = index;
    yield block;
  }
}
