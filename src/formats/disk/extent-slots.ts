// Extents' bytes in reused buffers. Reading (or inflating) a whole disk into fresh buffers
// leaves gigabytes of garbage behind, and collecting it costs the main thread a large share of
// an import; a reader that takes its buffers here and marks its extents releasable lets the
// block writer hand each one back once its blocks are stored.
import { BufferSlots } from "../../workers/pool.js";
import { DISK_LIMITS, type Extent } from "./image.js";
import type { ByteSource } from "./source.js";

/** An extent's worth, and one compressed unit more (a run of units may overhang its extent). */
export const EXTENT_SLOT_BYTES = DISK_LIMITS.extentBytes + DISK_LIMITS.compressedUnitBytes;

// Plain buffers: a worker inflating into one gets it moved there and back. Never waited for: a
// consumer that keeps its extents only makes the pool allocate more (and the garbage collector
// take those back).
export const extentSlots = new BufferSlots(EXTENT_SLOT_BYTES, { kind: "plain", keep: 6 });

/** A buffer of at least `bytes`: a pooled slot, or a one-off beyond a slot's size. */
export async function takeExtentBuffer(bytes: number): Promise<Buffer> {
  return bytes > EXTENT_SLOT_BYTES ? Buffer.allocUnsafeSlow(bytes) : extentSlots.take();
}

/** Gives `buffer` back to the pool (once, however often it is called) if it is a slot. */
export function releaserOf(buffer: Buffer): () => void {
  if (buffer.length !== EXTENT_SLOT_BYTES || buffer.byteOffset !== 0) return () => {};
  let released = false;
  return () => {
    if (released) return;
    released = true;
    extentSlots.give(buffer);
  };
}

/** `length` bytes of `source` from `at`, read into a pooled slot when the source can read into one. */
export async function readPooled(source: ByteSource, at: number, length: number): Promise<{ data: Buffer; release?: () => void }> {
  if (!source.readInto) return { data: await source.read(at, length) };
  const buffer = await takeExtentBuffer(length);
  const release = releaserOf(buffer);
  const data = buffer.subarray(0, length);
  try {
    await source.readInto(data, at);
  } catch (error) {
    release();
    throw error;
  }
  return { data, release };
}

/** `length` bytes of `source` from `at` as the extent at disk `offset`, read into a pooled slot. */
export async function readExtent(source: ByteSource, offset: number, at: number, length: number): Promise<Extent> {
  return { offset, ...(await readPooled(source, at, length)) };
}
