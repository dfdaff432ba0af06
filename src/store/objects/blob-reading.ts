// Reading objects made of blobs, the same whichever home holds the blobs: ranges streamed one
// after another, and random reads across blob boundaries, each blob held until the read is done.
import { PassThrough, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { BlobRef } from "../meta/schema.js";
import { rangesOf, type BlobRange, type RandomReader } from "./blobs.js";
import type { BlobHolds } from "./holds.js";

/** What a blob home offers readers. */
export interface BlobAccess {
  /** The blob's bytes from `start` to before `end`. */
  stream(id: string, start: number, end: number): Promise<Readable>;
  /** Positional reads of one blob, until closed. */
  open(id: string): Promise<PositionalReader>;
}

export interface PositionalReader {
  /** Fills `into` with the blob's bytes from `position`; throws if the blob ends first. */
  readInto(into: Buffer, position: number): Promise<void>;
  close(): Promise<void>;
}

export function streamRanges(holds: BlobHolds, access: BlobAccess, ranges: readonly BlobRange[]): Readable {
  const out = new PassThrough({ highWaterMark: 1 << 20 });
  for (const { id } of ranges) holds.hold(id);
  void (async () => {
    try {
      for (const { id, start, end } of ranges) {
        if (end <= start) continue;
        await pipeline(await access.stream(id, start, end), out, { end: false });
      }
      out.end();
    } catch (error) {
      out.destroy(error as Error);
    } finally {
      for (const { id } of ranges) void holds.release(id);
    }
  })();
  return out;
}

export async function openRandomOver(holds: BlobHolds, access: BlobAccess, parts: readonly BlobRef[]): Promise<RandomReader> {
  for (const { id } of parts) holds.hold(id);
  const readers = new Map<string, Promise<PositionalReader>>();
  const size = parts.reduce((sum, p) => sum + p.size, 0);
  const readerOf = (id: string) => {
    let reader = readers.get(id);
    if (!reader) {
      reader = access.open(id);
      readers.set(id, reader);
    }
    return reader;
  };
  let closed = false;
  const readInto = async (out: Buffer, offset: number) => {
    if (closed) throw new Error("the blob reader is closed");
    let done = 0;
    for (const range of rangesOf(parts, offset, offset + out.length)) {
      const want = range.end - range.start;
      await (await readerOf(range.id)).readInto(out.subarray(done, done + want), range.start);
      done += want;
    }
    if (done !== out.length) throw new Error(`read past the end of an object of ${size} bytes`);
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
      const opened = await Promise.allSettled(readers.values());
      await Promise.all(opened.map((o) => (o.status === "fulfilled" ? o.value.close() : undefined)));
      await Promise.all(parts.map(({ id }) => holds.release(id)));
    },
  };
}
