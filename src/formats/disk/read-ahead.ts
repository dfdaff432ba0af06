// Turning a format's map of the disk (which virtual range lives where in the file) into the
// extents a DiskImage yields: adjacent units are coalesced into extents of at most
// DISK_LIMITS.extentBytes, units that are adjacent in the file too become one large read, and a
// few extents are read (and inflated) ahead so the disk and both cores stay busy while the
// consumer stores the previous one. Memory stays at about `depth` extents whatever the disk.
import { DISK_LIMITS, type Extent } from "./image.js";
import { DiskImageError } from "./errors.js";
import { readExtent, releaserOf, takeExtentBuffer } from "./extent-slots.js";
import { inflatePieces, InflateFailure, type Inflated } from "./inflate.js";
import type { ByteSource } from "./source.js";

/** `length` bytes of the disk at virtual `offset`, stored as they are at `host` in the file. */
export interface StoredUnit {
  offset: number;
  length: number;
  host: number;
}

/**
 * One compressed unit (a qcow2 cluster): `stored` bytes of raw deflate at `host` inflate to
 * exactly `inflated` bytes, of which the first `length` are the disk's at `offset` (the rest lies
 * past the disk's end).
 */
export interface DeflatedUnit extends StoredUnit {
  stored: number;
  inflated: number;
  /** Names the unit in an error ("cluster 12"). */
  name: string;
}

export type Unit = StoredUnit | DeflatedUnit;

/** A coalesced piece: virtually contiguous units, at most DISK_LIMITS.extentBytes in all. */
interface Piece {
  offset: number;
  length: number;
  units: Unit[];
  /** One stored run, read in one go and yielded as read. */
  direct: boolean;
}

const isDeflated = (unit: Unit): unit is DeflatedUnit => "inflated" in unit;

/** Stored runs at least this long are yielded as read rather than joined to their neighbours. */
const DIRECT_BYTES = 1024 * 1024;
/** Compressed units this close together in the file are read in one go. */
const DEFLATED_READ_GAP = 4096;
/** The most bytes one read of several compressed units covers. */
const DEFLATED_READ_BYTES = 8 * 1024 * 1024;

/**
 * Groups units, given in increasing virtual order, into pieces. A long stored run gets pieces of
 * its own, yielded as read; shorter units (compressed clusters, scattered small clusters) are
 * gathered into pieces that cost one copy to join.
 */
async function* coalesce(units: AsyncIterable<Unit>): AsyncGenerator<Piece> {
  const max = DISK_LIMITS.extentBytes;
  let piece: Piece | undefined;
  for await (const unit of units) {
    if (isDeflated(unit)) {
      if (piece && (piece.direct || piece.offset + piece.length !== unit.offset || piece.length + unit.length > max)) {
        yield piece;
        piece = undefined;
      }
      piece ??= { offset: unit.offset, length: 0, units: [], direct: false };
      piece.units.push(unit);
      piece.length += unit.length;
      continue;
    }
    let { offset, length, host } = unit;
    while (length > 0) {
      if (piece) {
        const last = piece.units.at(-1)!;
        const adjacent = piece.offset + piece.length === offset && piece.length < max;
        const inPlace = !isDeflated(last) && last.host + last.length === host;
        if (!adjacent || (piece.direct && !inPlace) || (!piece.direct && length >= DIRECT_BYTES)) {
          yield piece;
          piece = undefined;
        }
      }
      piece ??= { offset, length: 0, units: [], direct: length >= DIRECT_BYTES };
      const take = Math.min(length, max - piece.length);
      const last = piece.units.at(-1);
      if (last && !isDeflated(last) && last.host + last.length === host) last.length += take;
      else piece.units.push({ offset, length: take, host });
      piece.length += take;
      offset += take;
      host += take;
      length -= take;
    }
  }
  if (piece) yield piece;
}

/**
 * Inflates a run of compressed units read in one go (`bytes` starts at the first unit's host)
 * on the worker pool, each to exactly its `inflated` bytes: the first `length` of each, as views
 * into a pooled buffer that `release` gives back.
 */
async function inflateRun(run: DeflatedUnit[], bytes: Buffer): Promise<{ parts: Buffer[]; release: () => void }> {
  const first = run[0]!.host;
  const pieces = run.flatMap((unit) => [unit.host - first, unit.stored]);
  const inflated = run[0]!.inflated;
  let result: Inflated;
  try {
    // Raw deflate, no zlib header (qcow2.txt "Compressed Clusters Descriptor"); the stored
    // bytes may run on into the next unit's sector.
    result = await inflatePieces(bytes, pieces, inflated, true);
  } catch (error) {
    if (!(error instanceof InflateFailure)) throw error;
    const unit = run[error.index]!;
    throw new DiskImageError(
      error.tooLarge ? `compressed ${unit.name} inflates past its ${unit.inflated} bytes` : `compressed ${unit.name} does not inflate: ${error.message}`,
    );
  }
  const parts: Buffer[] = [];
  let at = 0;
  for (const [i, length] of result.lengths.entries()) {
    const unit = run[i]!;
    if (length !== unit.inflated) {
      result.release();
      throw new DiskImageError(`compressed ${unit.name} inflates to ${length} bytes, not ${unit.inflated}`);
    }
    parts.push(result.output.subarray(at, at + unit.length));
    at += length;
  }
  return { parts, release: result.release };
}

async function readPiece(source: ByteSource, piece: Piece): Promise<Extent> {
  if (piece.direct) return readExtent(source, piece.offset, piece.units[0]!.host, piece.length);
  const parts: Promise<Buffer>[] = [];
  // Inflated units stay in their pooled buffers until the piece has copied them.
  const releases: (() => void)[] = [];
  for (let i = 0; i < piece.units.length; ) {
    const unit = piece.units[i]!;
    if (!isDeflated(unit)) {
      parts.push(source.read(unit.host, unit.length));
      i++;
      continue;
    }
    // Compressed units usually follow each other in the file: one read for a run of them.
    let end = unit.host + unit.stored;
    let j = i + 1;
    for (; j < piece.units.length; j++) {
      const next = piece.units[j]!;
      if (!isDeflated(next) || next.host < unit.host || next.host > end + DEFLATED_READ_GAP) break;
      const nextEnd = Math.max(end, next.host + next.stored);
      if (nextEnd - unit.host > DEFLATED_READ_BYTES) break;
      end = nextEnd;
    }
    const run = piece.units.slice(i, j) as DeflatedUnit[];
    const inflated = source
      .read(unit.host, end - unit.host)
      .then((bytes) => inflateRun(run, bytes))
      .then(({ parts, release }) => {
        releases.push(release);
        return parts;
      });
    for (let k = 0; k < run.length; k++) parts.push(inflated.then((outputs) => outputs[k]!));
    i = j;
  }
  // Every part is awaited below; until then a failure must not surface as an unhandled rejection.
  for (const part of parts) part.catch(() => {});
  try {
    const buffers = await Promise.all(parts);
    const buffer = await takeExtentBuffer(piece.length);
    let at = 0;
    for (const part of buffers) at += part.copy(buffer, at);
    return { offset: piece.offset, data: buffer.subarray(0, piece.length), release: releaserOf(buffer) };
  } finally {
    for (const release of releases) release();
  }
}

/**
 * The disk's extents from its units (in increasing virtual order, never overlapping), with up to
 * `depth` extents being read at once and yielded in order.
 */
export async function* readExtents(source: ByteSource, units: AsyncIterable<Unit>, signal?: AbortSignal, depth = 4): AsyncGenerator<Extent> {
  const pieces = coalesce(units)[Symbol.asyncIterator]();
  const queue: Promise<Extent>[] = [];
  let planned = false;
  try {
    for (;;) {
      while (!planned && queue.length < depth) {
        const next = await pieces.next();
        if (next.done) {
          planned = true;
          break;
        }
        const extent = readPiece(source, next.value);
        extent.catch(() => {}); // awaited in turn below; an abandoned read must not crash the process
        queue.push(extent);
      }
      const head = queue.shift();
      if (!head) return;
      signal?.throwIfAborted();
      yield await head;
    }
  } finally {
    await pieces.return?.(undefined);
  }
}
