// Bucket object bytes, as blobs: immutable byte strings written once under a fresh id, in a
// folder (file-blobs.ts) or in an object store (bucket-blobs.ts). A blob is whole or absent; the
// metadata store names it only once it is durable, so an object is never torn. Readers of a blob
// keep it until they finish, even when the object naming it is replaced or deleted meanwhile.
import { randomBytes } from "node:crypto";
import type { Readable } from "node:stream";
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
  /**
   * Writes a stream into a new blob; resolves once it is durable, and leaves nothing if the stream
   * fails. `length`, when the caller knows it (a request's Content-Length), lets a store send the
   * stream as it comes rather than buffer it; the stream must then error if it holds another number.
   */
  write(source: Readable, length?: number): Promise<{ id: string; size: number }>;
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

export const BLOB_ID = /^[0-9a-f]{32}$/;

/**
 * A fresh blob id: 32 hex digits, a UUIDv7 without its dashes, whose first 12 digits are the
 * time it was made (ms since the epoch). A sweep can tell a leftover's age from its name alone,
 * whatever dates the store keeps (some S3 implementations report no real upload times).
 */
export function newBlobId(now = Date.now()): string {
  const random = randomBytes(10).toString("hex");
  return `${now.toString(16).padStart(12, "0")}7${random.slice(0, 3)}${((parseInt(random[3]!, 16) & 0x3) | 0x8).toString(16)}${random.slice(4, 19)}`;
}

/** When a blob id made by newBlobId was made; undefined for other ids. */
export function blobIdTime(id: string): number | undefined {
  return BLOB_ID.test(id) && id[12] === "7" ? parseInt(id.slice(0, 12), 16) : undefined;
}
