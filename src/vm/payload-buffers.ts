// Buffers for NBD payloads, kept for the next request. A guest reading or writing in order moves
// a MiB per request; a fresh buffer for each is memory outside the JavaScript heap, and V8 pays
// for its growth with full collections, which took more time than the reads themselves.
// Buffers come in powers of two, so a buffer given back fits the next request of about its size.

/** Smaller payloads come from Node's own allocator, which pools them already. */
const SMALLEST = 64 * 1024;
/** Bytes kept for reuse, across every connection of this process. */
const KEPT_BYTES = 32 * 1024 * 1024;

const free = new Map<number, ArrayBuffer[]>();
let keptBytes = 0;
/** Buffers handed out and not given back: givePayload takes no other (a device's own buffer it still holds, say). */
const lent = new WeakSet<Buffer>();

const sizeClass = (length: number) => 2 ** Math.ceil(Math.log2(length));

/** A buffer of `length` bytes (contents undefined); `givePayload` takes it back once nothing reads it. */
export function takePayload(length: number): Buffer {
  if (length < SMALLEST) return Buffer.allocUnsafe(length);
  const size = sizeClass(length);
  const kept = free.get(size)?.pop();
  if (kept) keptBytes -= size;
  const buffer = Buffer.from(kept ?? new ArrayBuffer(size), 0, length);
  lent.add(buffer);
  return buffer;
}

/** Takes back a buffer from takePayload once nothing reads it; any other buffer is left alone. */
export function givePayload(buffer: Buffer): void {
  if (!lent.delete(buffer)) return;
  const backing = buffer.buffer as ArrayBuffer;
  const size = backing.byteLength;
  if (keptBytes + size > KEPT_BYTES) return;
  const list = free.get(size) ?? [];
  list.push(backing);
  free.set(size, list);
  keptBytes += size;
}
