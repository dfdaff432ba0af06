// VHD (Microsoft's "Virtual Hard Disk Image Format Specification", October 2006), fixed and
// dynamic. A differencing disk needs its parent, which an import does not have: refused.
//
// Fixed:   [disk data][footer]
// Dynamic: [footer copy][dynamic header][BAT][block: sector bitmap + data]...[footer]
import { DiskImageError } from "./errors.js";
import { readExtent } from "./extent-slots.js";
import { DISK_LIMITS, type DiskImage, type DiskImageOpener } from "./image.js";
import type { ByteSource } from "./source.js";

const FOOTER = 512;
const SECTOR = 512;
const DYNAMIC_HEADER = 1024;
const UNALLOCATED = 0xffffffff;
/** BAT entries read at a time: 256 KiB of table, whatever the disk's size. */
const BAT_WINDOW = 64 * 1024;

const DISK_TYPE = { fixed: 2, dynamic: 3, differencing: 4 } as const;

interface Footer {
  dataOffset: bigint;
  currentSize: number;
  diskType: number;
}

/** The spec's checksum: the one's complement of the sum of every byte but the checksum's own four. */
function checksumOf(bytes: Buffer, checksumAt: number): number {
  let sum = 0;
  for (let i = 0; i < bytes.length; i++) if (i < checksumAt || i >= checksumAt + 4) sum += bytes[i]!;
  return ~sum >>> 0;
}

function parseFooter(bytes: Buffer): Footer | undefined {
  if (bytes.toString("latin1", 0, 8) !== "conectix") return undefined;
  if (bytes.readUInt32BE(64) !== checksumOf(bytes, 64)) throw new DiskImageError("the VHD footer's checksum is wrong");
  // "File Format Version ... must be initialized to 0x00010000".
  if (bytes.readUInt32BE(12) >>> 16 !== 1) throw new DiskImageError(`unsupported VHD format version 0x${bytes.readUInt32BE(12).toString(16)}`);
  const currentSize = Number(bytes.readBigUInt64BE(48));
  return { dataOffset: bytes.readBigUInt64BE(16), currentSize, diskType: bytes.readUInt32BE(60) };
}

/** True when the file ends (or, for a dynamic disk, begins) with a VHD footer. */
export async function looksLikeVhd(source: ByteSource): Promise<boolean> {
  if (source.size < FOOTER) return false;
  const tail = await source.read(source.size - FOOTER, FOOTER);
  const head = await source.read(0, FOOTER);
  return tail.toString("latin1", 0, 8) === "conectix" || head.toString("latin1", 0, 8) === "conectix";
}

export const openVhd: DiskImageOpener = async (source) => {
  if (source.size < FOOTER) throw new DiskImageError("the file is too short to be a VHD");
  // The footer closes the file; a dynamic disk also opens with a copy of it, which stands in
  // when the end was cut off (the data read later will then say the file is truncated).
  const footer = parseFooter(await source.read(source.size - FOOTER, FOOTER)) ?? parseFooter(await source.read(0, FOOTER));
  if (!footer) throw new DiskImageError('the file has no VHD footer ("conectix")');
  const { currentSize, diskType } = footer;
  if (currentSize === 0 || !Number.isSafeInteger(currentSize) || currentSize > DISK_LIMITS.virtualSize) {
    throw new DiskImageError(`the VHD declares a disk of ${footer.currentSize} bytes, which Kiln cannot accept`);
  }
  if (diskType === DISK_TYPE.differencing) throw new DiskImageError("VHD differencing disks (with a parent) are not supported");
  if (diskType === DISK_TYPE.fixed) return fixedVhd(source, currentSize);
  if (diskType === DISK_TYPE.dynamic) return dynamicVhd(source, footer);
  throw new DiskImageError(`unknown VHD disk type ${diskType}`);
};

function fixedVhd(source: ByteSource, virtualSize: number): DiskImage {
  if (source.size - FOOTER < virtualSize)
    throw new DiskImageError(`the fixed VHD holds ${source.size - FOOTER} bytes of its ${virtualSize}-byte disk: truncated`);
  return {
    format: "vhd",
    virtualSize,
    async *extents(signal) {
      for (let offset = 0; offset < virtualSize; offset += DISK_LIMITS.extentBytes) {
        signal?.throwIfAborted();
        yield await readExtent(source, offset, offset, Math.min(DISK_LIMITS.extentBytes, virtualSize - offset));
      }
    },
  };
}

async function dynamicVhd(source: ByteSource, footer: Footer): Promise<DiskImage> {
  const virtualSize = footer.currentSize;
  if (footer.dataOffset > BigInt(source.size - DYNAMIC_HEADER)) throw new DiskImageError("the VHD dynamic header lies outside the file");
  const headerAt = Number(footer.dataOffset);
  const header = await source.read(headerAt, DYNAMIC_HEADER);
  if (header.toString("latin1", 0, 8) !== "cxsparse") throw new DiskImageError('the VHD dynamic header has no "cxsparse" cookie');
  if (header.readUInt32BE(36) !== checksumOf(header, 36)) throw new DiskImageError("the VHD dynamic header's checksum is wrong");
  const tableAt = header.readBigUInt64BE(16);
  const entries = header.readUInt32BE(28);
  const blockSize = header.readUInt32BE(32);
  // The spec's default block is 2 MiB; it must be a power of two number of sectors.
  if (blockSize < SECTOR || blockSize > 256 * 1024 * 1024 || (blockSize & (blockSize - 1)) !== 0) {
    throw new DiskImageError(`the VHD block size ${blockSize} is not a power of two between 512 bytes and 256 MiB`);
  }
  const blocksNeeded = Math.ceil(virtualSize / blockSize);
  if (entries < blocksNeeded) throw new DiskImageError(`the VHD block table has ${entries} entries, too few for a ${virtualSize}-byte disk`);
  const tableBytes = entries * 4;
  if (tableAt > BigInt(source.size - FOOTER - tableBytes) || tableAt < BigInt(FOOTER)) throw new DiskImageError("the VHD block table lies outside the file");
  const batStart = Number(tableAt);
  // Each block is a sector bitmap (one bit per sector, padded to whole sectors), then its data.
  const bitmapBytes = Math.ceil(blockSize / SECTOR / 8 / SECTOR) * SECTOR;
  // Metadata no block may overlap: the footer copy, the dynamic header, the table.
  const metadata: [number, number][] = [
    [0, FOOTER],
    [headerAt, headerAt + DYNAMIC_HEADER],
    [batStart, batStart + tableBytes],
  ];
  const dataEnd = source.size - FOOTER;

  return {
    format: "vhd",
    virtualSize,
    async *extents(signal) {
      let allocatedBytes = 0;
      for (let first = 0; first < blocksNeeded; first += BAT_WINDOW) {
        const count = Math.min(BAT_WINDOW, blocksNeeded - first);
        const table = await source.read(batStart + first * 4, count * 4);
        for (let i = 0; i < count; i++) {
          signal?.throwIfAborted();
          const entry = table.readUInt32BE(i * 4);
          if (entry === UNALLOCATED) continue;
          const block = first + i;
          const dataAt = entry * SECTOR + bitmapBytes;
          const start = entry * SECTOR;
          if (dataAt + blockSize > dataEnd) throw new DiskImageError(`VHD block ${block} lies outside the file`);
          if (metadata.some(([from, to]) => start < to && dataAt + blockSize > from))
            throw new DiskImageError(`VHD block ${block} overlaps the file's header or block table`);
          // A file cannot hold more data than its own size: blocks sharing bytes would let a
          // small file expand into a huge disk.
          allocatedBytes += blockSize;
          if (allocatedBytes > source.size) throw new DiskImageError("the VHD block table names more blocks than the file holds");
          const offset = block * blockSize;
          const length = Math.min(blockSize, virtualSize - offset);
          for (let done = 0; done < length; done += DISK_LIMITS.extentBytes) {
            const piece = Math.min(DISK_LIMITS.extentBytes, length - done);
            yield await readExtent(source, offset + done, dataAt + done, piece);
          }
        }
      }
    },
  };
}
