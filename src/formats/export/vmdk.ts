// A streamOptimized VMDK (VMware "Virtual Disk Format 1.1", "Stream-Optimized Compressed Sparse
// Extents"): one file, written strictly front to back, as OVF packages and ImportImage expect.
//
//   sector 0       SparseExtentHeader, gdOffset = GD_AT_END
//   sector 1..     the embedded descriptor
//   sector 128..   per non-zero 64 KiB grain: grain marker (lba, size) + deflated grain, padded
//                  to a sector; after the grains a grain table covers, that table: GT marker +
//                  512 entries
//   then           GD marker + grain directory, footer marker + footer (the header again, with
//                  the real gdOffset), end-of-stream marker
//
// A grain table with no grains is not written at all: its directory entry stays 0, which reads
// as 512 unallocated grains. Deflating is what costs, so several grains are deflated at once on
// the thread pool, within a window, and written in disk order.
import { randomInt } from "node:crypto";
import { promisify } from "node:util";
import { deflate } from "node:zlib";
import { DISK_LIMITS } from "../disk/image.js";
import { checkedBlocks, checkSize, DiskWriterError, isZero } from "./checked.js";
import { EXPORT_BLOCK, type DiskWriter } from "./writer.js";

const deflateAsync = promisify(deflate);
/**
 * Each grain is its own zlib stream (RFC 1950), at zlib's default level. The output buffer holds
 * a whole deflated grain (deflateBound(64 KiB) is a few dozen bytes over 64 KiB), so a grain is
 * one trip to the thread pool rather than one per 16 KiB; memLevel 9 (a larger hash) measured
 * faster on random data at no cost in size.
 */
const DEFLATE_OPTIONS = { chunkSize: 80 * 1024, memLevel: 9 };

const SECTOR = 512;
const GRAIN = 64 * 1024;
const GRAIN_SECTORS = GRAIN / SECTOR;
const GRAINS_PER_BLOCK = EXPORT_BLOCK / GRAIN;
/** numGTEsPerGT: the spec's fixed 512 entries, each table covering 32 MiB. */
const GT_ENTRIES = 512;
const GT_BYTES = GT_ENTRIES * 4;
/** Sectors before the first grain (header and descriptor): one grain, so grains start aligned. */
const OVERHEAD = 128;
const GD_AT_END = 0xffffffffffffffffn;
/** Grain table and directory entries are 32-bit sector numbers: the file must end before 2 TiB. */
const MAX_SECTOR = 0xffffffff;

/** Metadata marker types (spec: "Stream-Optimized Compressed Sparse Extents"). */
const MARKER = { endOfStream: 0, grainTable: 1, grainDirectory: 2, footer: 3 } as const;
/** SparseExtentHeader flags: valid newline test (bit 0), compressed grains (bit 16), markers (bit 17). */
const FLAGS = (1 << 0) | (1 << 16) | (1 << 17);

/**
 * Grains being deflated at once, at most. It bounds what the writer holds: these grains (and, on a
 * sparse disk, the blocks they were cut from), their deflated copies and the block being cut.
 */
export const COMPRESSION_WINDOW = 16;

export type AdapterType = "ide" | "buslogic" | "lsilogic" | "legacyESX";

export interface VmdkOptions {
  /** The name the descriptor's extent line gives the file itself. */
  extentName?: string;
  /** ddb.adapterType: the controller the disk was attached to. */
  adapterType?: AdapterType;
}

/** SparseExtentHeader (little-endian, packed); also the footer, with the real gdOffset. */
function sparseHeader(capacity: number, descriptorSectors: number, gdOffset: bigint): Buffer {
  const bytes = Buffer.alloc(SECTOR);
  bytes.writeUInt32LE(0x564d444b, 0); // "KDMV"
  bytes.writeUInt32LE(3, 4); // version 3: the one that allows compressed grains and markers.
  bytes.writeUInt32LE(FLAGS, 8);
  bytes.writeBigUInt64LE(BigInt(capacity), 12);
  bytes.writeBigUInt64LE(BigInt(GRAIN_SECTORS), 20);
  bytes.writeBigUInt64LE(1n, 28); // descriptorOffset
  bytes.writeBigUInt64LE(BigInt(descriptorSectors), 36);
  bytes.writeUInt32LE(GT_ENTRIES, 44);
  bytes.writeBigUInt64LE(0n, 48); // rgdOffset: a stream has no redundant directory.
  bytes.writeBigUInt64LE(gdOffset, 56);
  bytes.writeBigUInt64LE(BigInt(OVERHEAD), 64);
  bytes[72] = 0; // uncleanShutdown
  // The newline test bytes, so a reader can tell the file was not mangled by a text transfer.
  bytes.write("\n \r\n", 73, "latin1");
  bytes.writeUInt16LE(1, 77); // compressAlgorithm: deflate
  return bytes;
}

function marker(sectors: number, type: number): Buffer {
  const bytes = Buffer.alloc(SECTOR);
  bytes.writeBigUInt64LE(BigInt(sectors), 0);
  bytes.writeUInt32LE(0, 8); // size 0: a metadata marker, not a grain.
  bytes.writeUInt32LE(type, 12);
  return bytes;
}

function descriptor(capacity: number, extentName: string, adapterType: AdapterType): Buffer {
  // A translated BIOS geometry: 16 heads for IDE, 255 for SCSI, 63 sectors; cylinders cover the disk.
  const heads = adapterType === "ide" ? 16 : 255;
  const cylinders = Math.max(1, Math.min(adapterType === "ide" ? 16383 : 65535, Math.ceil(capacity / (heads * 63))));
  let cid: number;
  do cid = randomInt(0, 2 ** 32);
  while (cid >= 0xfffffffe); // "ffffffff" means "no parent" in parentCID.
  const text = [
    "# Disk DescriptorFile",
    "version=1",
    'encoding="UTF-8"',
    `CID=${cid.toString(16).padStart(8, "0")}`,
    "parentCID=ffffffff",
    'createType="streamOptimized"',
    "",
    "# Extent description",
    `RW ${capacity} SPARSE "${extentName}"`,
    "",
    "# The Disk Data Base",
    "#DDB",
    "",
    'ddb.virtualHWVersion = "4"',
    `ddb.geometry.cylinders = "${cylinders}"`,
    `ddb.geometry.heads = "${heads}"`,
    'ddb.geometry.sectors = "63"',
    `ddb.adapterType = "${adapterType}"`,
    "",
  ].join("\n");
  return Buffer.from(text, "utf8");
}

/** A streamOptimized VMDK writer with its descriptor's extent name and adapter type. */
export function streamOptimizedVmdk(options: VmdkOptions = {}): DiskWriter {
  const extentName = options.extentName ?? "disk.vmdk";
  const adapterType = options.adapterType ?? "lsilogic";
  if (!/^[^"\\\r\n\0]{1,255}$/.test(extentName))
    throw new DiskWriterError("a VMDK extent name must be 1 to 255 characters, without quotes, backslashes or line breaks");

  return async function* (disk, signal) {
    signal?.throwIfAborted();
    const count = checkSize(disk, DISK_LIMITS.virtualSize, "VMDK");
    const capacity = disk.virtualSize / SECTOR;
    const tables = Math.ceil(disk.virtualSize / GRAIN / GT_ENTRIES);
    // The directory is the only table kept for the whole disk: 4 bytes per 32 MiB.
    const directory = Buffer.alloc(Math.ceil((tables * 4) / SECTOR) * SECTOR);
    const text = descriptor(capacity, extentName, adapterType);
    const descriptorSectors = Math.ceil(text.length / SECTOR);

    const prologue = Buffer.alloc(OVERHEAD * SECTOR);
    sparseHeader(capacity, descriptorSectors, GD_AT_END).copy(prologue, 0);
    text.copy(prologue, SECTOR);
    yield prologue;
    let sector = OVERHEAD;
    const advance = (sectors: number) => {
      sector += sectors;
      if (sector > MAX_SECTOR) throw new DiskWriterError("the VMDK would pass 2 TiB, beyond its 32-bit grain offsets");
    };

    let table = Buffer.alloc(GT_BYTES);
    let tableIndex = -1;
    function* closeTable() {
      if (tableIndex < 0) return;
      yield marker(GT_BYTES / SECTOR, MARKER.grainTable);
      advance(1);
      // Directory entries point at the table itself, past its marker.
      directory.writeUInt32LE(sector, tableIndex * 4);
      yield table;
      advance(GT_BYTES / SECTOR);
      table = Buffer.alloc(GT_BYTES);
      tableIndex = -1;
    }
    function* place(grain: number, compressed: Buffer) {
      const owner = Math.floor(grain / GT_ENTRIES);
      if (owner !== tableIndex) {
        yield* closeTable();
        tableIndex = owner;
      }
      // Table entries point at the grain's marker: lba (u64), size (u32), then the deflated bytes.
      table.writeUInt32LE(sector, (grain % GT_ENTRIES) * 4);
      const record = Buffer.alloc(Math.ceil((12 + compressed.length) / SECTOR) * SECTOR);
      record.writeBigUInt64LE(BigInt(grain * GRAIN_SECTORS), 0);
      record.writeUInt32LE(compressed.length, 8);
      compressed.copy(record, 12);
      advance(record.length / SECTOR);
      yield record;
    }

    const inFlight: { grain: number; compressed: Promise<Buffer> }[] = [];
    for await (const { index, data } of checkedBlocks(disk, count, signal)) {
      for (let at = 0; at < data.length; at += GRAIN) {
        // The disk's last grain may be short: it is deflated as it is, and reads back as zeros past the disk's end.
        const piece = data.subarray(at, at + GRAIN);
        if (isZero(piece)) continue;
        const compressed = deflateAsync(piece, DEFLATE_OPTIONS);
        // Awaited in order below; one left behind by an abort must not become an unhandled rejection.
        compressed.catch(() => undefined);
        inFlight.push({ grain: index * GRAINS_PER_BLOCK + at / GRAIN, compressed });
        if (inFlight.length >= COMPRESSION_WINDOW) {
          const next = inFlight.shift()!;
          yield* place(next.grain, await next.compressed);
        }
      }
    }
    for (const next of inFlight.splice(0)) {
      signal?.throwIfAborted();
      yield* place(next.grain, await next.compressed);
    }
    yield* closeTable();

    yield marker(directory.length / SECTOR, MARKER.grainDirectory);
    advance(1);
    const directoryAt = sector;
    yield directory;
    advance(directory.length / SECTOR);
    yield Buffer.concat([marker(1, MARKER.footer), sparseHeader(capacity, descriptorSectors, BigInt(directoryAt)), marker(0, MARKER.endOfStream)]);
  };
}

export const writeStreamOptimizedVmdk: DiskWriter = streamOptimizedVmdk();
