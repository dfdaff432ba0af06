// A dynamic VHD (Microsoft's "Virtual Hard Disk Image Format Specification", October 2006),
// written front to back:
//
//   [footer copy 512][dynamic header 1024][BAT, padded to a sector][block]...[footer 512]
//   block = [sector bitmap 512, all ones][data 2 MiB]
//
// The BAT comes before the data, so the blocks that hold data are learnt from allocated() first;
// only those blocks are in the file, in disk order, so their offsets are known up front.
import { randomUUID } from "node:crypto";
import { checkedAllocated, checkedBlocks, checkSize, DiskWriterError, zeros } from "./checked.js";
import { EXPORT_BLOCK, type DiskWriter } from "./writer.js";

const SECTOR = 512;
const FOOTER = 512;
const DYNAMIC_HEADER = 1024;
/** The spec's default block size, and the one every reader expects. */
const BLOCK = 2 * 1024 * 1024;
const PER_BLOCK = BLOCK / EXPORT_BLOCK;
/** One bit per sector of a block, padded to whole sectors: one sector for 2 MiB blocks. */
const BITMAP = Buffer.alloc(Math.ceil(BLOCK / SECTOR / 8 / SECTOR) * SECTOR, 0xff);
const UNALLOCATED = 0xffffffff;
/** 2040 GiB, the size Hyper-V caps VHDs at: a BAT entry is a 32-bit sector offset, so the file must stay under 2 TiB. */
const MAX_BYTES = 2040 * 1024 ** 3;
/** Footer timestamps count seconds from 2000-01-01 00:00:00 UTC. */
const EPOCH_2000 = Date.UTC(2000, 0, 1);

/** The spec's checksum: the one's complement of the sum of every byte, the checksum field being zero. */
function checksum(bytes: Buffer, at: number): void {
  bytes.writeUInt32BE(0, at);
  let sum = 0;
  for (const byte of bytes) sum += byte;
  bytes.writeUInt32BE(~sum >>> 0, at);
}

/**
 * The spec's CHS geometry for a size (its appendix "CHS Calculation"), limited to 65535 × 16 × 255
 * sectors. It is only a hint for BIOSes: the disk's size is the footer's Current Size.
 */
export function vhdGeometry(size: number): { cylinders: number; heads: number; sectorsPerTrack: number } {
  const totalSectors = Math.min(size / SECTOR, 65535 * 16 * 255);
  let sectorsPerTrack: number;
  let heads: number;
  let cylinderTimesHeads: number;
  if (totalSectors >= 65535 * 16 * 63) {
    sectorsPerTrack = 255;
    heads = 16;
    cylinderTimesHeads = Math.floor(totalSectors / sectorsPerTrack);
  } else {
    sectorsPerTrack = 17;
    cylinderTimesHeads = Math.floor(totalSectors / sectorsPerTrack);
    heads = Math.max(4, Math.floor((cylinderTimesHeads + 1023) / 1024));
    if (cylinderTimesHeads >= heads * 1024 || heads > 16) {
      sectorsPerTrack = 31;
      heads = 16;
      cylinderTimesHeads = Math.floor(totalSectors / sectorsPerTrack);
    }
    if (cylinderTimesHeads >= heads * 1024) {
      sectorsPerTrack = 63;
      heads = 16;
      cylinderTimesHeads = Math.floor(totalSectors / sectorsPerTrack);
    }
  }
  return { cylinders: Math.floor(cylinderTimesHeads / heads), heads, sectorsPerTrack };
}

/** The hard disk footer ("Hard Disk Footer Format"), big-endian like every VHD field. */
function footer(size: number): Buffer {
  const bytes = Buffer.alloc(FOOTER);
  bytes.write("conectix", 0, "latin1");
  bytes.writeUInt32BE(0x00000002, 8); // Features: bit 1 is reserved and "must always be set".
  bytes.writeUInt32BE(0x00010000, 12); // File Format Version 1.0.
  bytes.writeBigUInt64BE(BigInt(FOOTER), 16); // Data Offset: the dynamic header follows the footer copy.
  bytes.writeUInt32BE(Math.max(0, Math.floor((Date.now() - EPOCH_2000) / 1000)) >>> 0, 24);
  bytes.write("kiln", 28, "latin1"); // Creator Application.
  bytes.writeUInt32BE(0x00010000, 32); // Creator Version 1.0.
  // Creator Host OS: the spec names only Windows ("Wi2k") and Macintosh ("Mac ").
  bytes.write("Wi2k", 36, "latin1");
  bytes.writeBigUInt64BE(BigInt(size), 40); // Original Size.
  bytes.writeBigUInt64BE(BigInt(size), 48); // Current Size.
  // Readers that size a VHD by its geometry (qemu, Virtual PC) would cut a disk the spec's
  // geometry does not cover exactly; the largest geometry tells them to use Current Size instead.
  const spec = vhdGeometry(size);
  const exact = spec.cylinders * spec.heads * spec.sectorsPerTrack * SECTOR === size;
  const { cylinders, heads, sectorsPerTrack } = exact ? spec : { cylinders: 65535, heads: 16, sectorsPerTrack: 255 };
  bytes.writeUInt16BE(cylinders, 56);
  bytes.writeUInt8(heads, 58);
  bytes.writeUInt8(sectorsPerTrack, 59);
  bytes.writeUInt32BE(3, 60); // Disk Type: dynamic.
  Buffer.from(randomUUID().replaceAll("-", ""), "hex").copy(bytes, 68); // Unique Id.
  checksum(bytes, 64);
  return bytes;
}

/** The dynamic disk header ("Dynamic Disk Header Format"): where the BAT is and how many entries it has. */
function dynamicHeader(tableAt: number, entries: number): Buffer {
  const bytes = Buffer.alloc(DYNAMIC_HEADER);
  bytes.write("cxsparse", 0, "latin1");
  bytes.writeBigUInt64BE(0xffffffffffffffffn, 8); // Data Offset: "currently unused ... set to 0xFFFFFFFF".
  bytes.writeBigUInt64BE(BigInt(tableAt), 16);
  bytes.writeUInt32BE(0x00010000, 24); // Header Version 1.0.
  bytes.writeUInt32BE(entries, 28); // Max Table Entries.
  bytes.writeUInt32BE(BLOCK, 32);
  checksum(bytes, 36);
  return bytes;
}

export const writeVhd: DiskWriter = async function* (disk, signal) {
  signal?.throwIfAborted();
  const count = checkSize(disk, MAX_BYTES, "dynamic VHD");
  const size = disk.virtualSize;
  const entries = Math.ceil(size / BLOCK);
  const tableAt = FOOTER + DYNAMIC_HEADER;
  // "The BAT is always extended to a sector boundary"; the padding reads as unused entries.
  const tableBytes = Math.ceil((entries * 4) / SECTOR) * SECTOR;
  const bat = Buffer.alloc(tableBytes, 0xff);
  let nextSector = (tableAt + tableBytes) / SECTOR;
  let previous = -1;
  for await (const index of checkedAllocated(disk, count, signal)) {
    const block = Math.floor(index / PER_BLOCK);
    if (block === previous) continue;
    if (nextSector > UNALLOCATED - 1) throw new DiskWriterError("the VHD's blocks would lie past the 32-bit sector offsets of its block table");
    bat.writeUInt32BE(nextSector, block * 4);
    nextSector += (BITMAP.length + BLOCK) / SECTOR;
    previous = block;
  }
  const tail = footer(size);
  yield Buffer.concat([tail, dynamicHeader(tableAt, entries), bat]);

  // The blocks in BAT order: each allocated one whole (bitmap, then 2 MiB), the export blocks it
  // does not hold written as zeros. An allocated block blocks() never yields is written as zeros
  // too, since the BAT already points at it.
  let open = -1;
  let filled = 0;
  let scanned = 0;
  function* close() {
    if (open >= 0) yield* zeros(BLOCK - filled);
    open = -1;
  }
  function* emptyBlocksBefore(end: number) {
    for (; scanned < end; scanned++) {
      if (bat.readUInt32BE(scanned * 4) === UNALLOCATED) continue;
      signal?.throwIfAborted();
      yield BITMAP;
      yield* zeros(BLOCK);
    }
  }
  for await (const { index, data } of checkedBlocks(disk, count, signal)) {
    const block = Math.floor(index / PER_BLOCK);
    if (bat.readUInt32BE(block * 4) === UNALLOCATED) throw new DiskWriterError(`block ${index} holds data but allocated() did not list it`);
    if (block !== open) {
      yield* close();
      yield* emptyBlocksBefore(block);
      yield BITMAP;
      open = block;
      filled = 0;
      scanned = block + 1;
    }
    const at = (index % PER_BLOCK) * EXPORT_BLOCK;
    yield* zeros(at - filled);
    yield data;
    filled = at + data.length;
  }
  yield* close();
  yield* emptyBlocksBefore(entries);
  yield tail;
};
