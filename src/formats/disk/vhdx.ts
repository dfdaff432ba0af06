// VHDX, Microsoft's [MS-VHDX] (section numbers below are that specification's). The first MiB
// holds the file type identifier, two headers and two region tables; the regions they name hold
// the metadata (block size, disk size, sector size) and the BAT, which maps each payload block of
// the disk to a place in the file, a sector bitmap entry following every chunk ratio of them.
// Fixed and dynamic disks are read; a differencing disk (which needs its parent) and a file whose
// log still has to be replayed are refused. The BAT is read a window at a time.
import { Crc32c } from "@aws-sdk/checksums/crc";
import { DISK_LIMITS, type DiskImage, type DiskImageOpener } from "./image.js";
import { DiskImageError } from "./errors.js";
import { readExtents, type Unit } from "./read-ahead.js";
import type { ByteSource } from "./source.js";

const KiB = 1024;
const MiB = 1024 * KiB;
/** §2.1: the header section, the file's first MiB. */
const HEADER_SECTION_BYTES = MiB;
const HEADER_OFFSETS = [64 * KiB, 128 * KiB];
/** §2.2.2: a header is 4 KiB, its checksum covering all of it. */
const HEADER_BYTES = 4 * KiB;
const REGION_TABLE_OFFSETS = [192 * KiB, 256 * KiB];
/** §2.2.3: a region table is 64 KiB, its checksum covering all of it. */
const REGION_TABLE_BYTES = 64 * KiB;
const MAX_TABLE_ENTRIES = 2047;
/** §2.6.1: the metadata table, at the start of the metadata region. */
const METADATA_TABLE_BYTES = 64 * KiB;
const MAX_METADATA_ITEM_BYTES = MiB;
/** BAT entries read at a time (1 MiB of BAT). */
const BAT_WINDOW = 128 * KiB;

const FILE_SIGNATURE = "vhdxfile";
const HEADER_SIGNATURE = "head";
const REGION_SIGNATURE = "regi";
const METADATA_SIGNATURE = "metadata";

// §2.2.3.2 known regions and §2.6.2 known metadata items.
const BAT_REGION = "2DC27766-F623-4200-9D64-115E9BFD4A08";
const METADATA_REGION = "8B7CA206-4790-4B9A-B8FE-575F050F886E";
const FILE_PARAMETERS = "CAA16737-FA36-4D43-B3B6-33F0AA44E76B";
const VIRTUAL_DISK_SIZE = "2FA54224-CD1B-4876-B211-5DBED83BF4B8";
const VIRTUAL_DISK_ID = "BECA12AB-B2E6-4523-93EF-C309E000C746";
const LOGICAL_SECTOR_SIZE = "8141BF1D-A96F-4709-BA47-F233A8FAAB5F";
const PHYSICAL_SECTOR_SIZE = "CDA348C7-445D-4471-9CC9-E9885251C556";
const PARENT_LOCATOR = "A8D35F2D-B30B-454D-ABF7-D3D84834AB0C";
const KNOWN_METADATA = new Set([FILE_PARAMETERS, VIRTUAL_DISK_SIZE, VIRTUAL_DISK_ID, LOGICAL_SECTOR_SIZE, PHYSICAL_SECTOR_SIZE, PARENT_LOCATOR]);

// §2.5.1.1 payload BAT entry states.
const PAYLOAD_BLOCK_NOT_PRESENT = 0;
const PAYLOAD_BLOCK_UNDEFINED = 1;
const PAYLOAD_BLOCK_ZERO = 2;
const PAYLOAD_BLOCK_UNMAPPED = 3;
/** PAYLOAD_BLOCK_UNMAPPED as the 0.95 draft numbered it; files written to that draft exist. */
const PAYLOAD_BLOCK_UNMAPPED_V095 = 5;
const PAYLOAD_BLOCK_FULLY_PRESENT = 6;
const PAYLOAD_BLOCK_PARTIALLY_PRESENT = 7;

const fail = (reason: string) => new DiskImageError(reason);

/** An MS GUID as written in the file (data1-3 little-endian), in its usual text form. */
function guid(bytes: Buffer, at: number): string {
  const hex = (from: number, to: number) => bytes.subarray(at + from, at + to).toString("hex");
  const le = (from: number, to: number) =>
    Buffer.from(bytes.subarray(at + from, at + to))
      .reverse()
      .toString("hex");
  return `${le(0, 4)}-${le(4, 6)}-${le(6, 8)}-${hex(8, 10)}-${hex(10, 16)}`.toUpperCase();
}

/** CRC-32C of `bytes` with the 4-byte checksum field at `field` taken as zero (§2.2.2, §2.2.3). */
async function checksumMatches(bytes: Buffer, field: number): Promise<boolean> {
  const copy = Buffer.from(bytes);
  copy.writeUInt32LE(0, field);
  const crc = new Crc32c();
  crc.update(copy);
  return Buffer.from(await crc.digest()).readUInt32BE(0) === bytes.readUInt32LE(field);
}

/** A 64-bit little-endian field as a number, or undefined past 2^53. */
function u64(bytes: Buffer, at: number): number | undefined {
  const value = bytes.readBigUInt64LE(at);
  return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : undefined;
}

interface Region {
  name: string;
  offset: number;
  length: number;
}

interface Header {
  sequence: bigint;
  logGuid: string;
  version: number;
  logOffset: number | undefined;
  logLength: number;
}

async function readHeader(source: ByteSource, offset: number): Promise<Header | undefined> {
  const bytes = await source.read(offset, HEADER_BYTES);
  if (bytes.toString("latin1", 0, 4) !== HEADER_SIGNATURE || !(await checksumMatches(bytes, 4))) return undefined;
  return {
    sequence: bytes.readBigUInt64LE(8),
    logGuid: guid(bytes, 48),
    version: bytes.readUInt16LE(66),
    logLength: bytes.readUInt32LE(68),
    logOffset: u64(bytes, 72),
  };
}

/** The region table: the first copy whose signature and checksum hold (§2.2.3). */
async function readRegionTable(source: ByteSource): Promise<Buffer> {
  for (const offset of REGION_TABLE_OFFSETS) {
    const table = await source.read(offset, REGION_TABLE_BYTES);
    if (table.toString("latin1", 0, 4) === REGION_SIGNATURE && (await checksumMatches(table, 4))) return table;
  }
  throw fail("neither VHDX region table is valid");
}

export const openVhdx: DiskImageOpener = async (source) => {
  if (source.size < HEADER_SECTION_BYTES) throw fail(`the file is ${source.size} bytes, too small for a VHDX header section`);
  const identifier = await source.read(0, 8);
  if (identifier.toString("latin1") !== FILE_SIGNATURE) throw fail("not a VHDX file (no vhdxfile identifier)");

  // §2.2.2.1: of the valid headers, the one with the greater sequence number is current.
  const [first, second] = await Promise.all(HEADER_OFFSETS.map((offset) => readHeader(source, offset)));
  const header = first && second ? (second.sequence > first.sequence ? second : first) : (first ?? second);
  if (!header) throw fail("neither VHDX header is valid");
  if (header.version !== 1) throw fail(`VHDX version ${header.version} is not supported`);
  if (header.logGuid !== "00000000-0000-0000-0000-000000000000") throw fail("VHDX log must be replayed first");

  const regions: Region[] = [{ name: "the header section", offset: 0, length: HEADER_SECTION_BYTES }];
  if (header.logLength > 0) {
    const { logOffset, logLength } = header;
    if (logOffset === undefined || logOffset % MiB !== 0 || logLength % MiB !== 0) throw fail("VHDX log is not aligned to 1 MiB");
    regions.push(place(source, "the log", logOffset, logLength, regions));
  }

  const table = await readRegionTable(source);
  const regionCount = table.readUInt32LE(8);
  if (regionCount > MAX_TABLE_ENTRIES) throw fail(`VHDX region table has ${regionCount} entries (at most ${MAX_TABLE_ENTRIES})`);
  let bat: Region | undefined;
  let metadata: Region | undefined;
  for (let i = 0; i < regionCount; i++) {
    const at = 16 + i * 32;
    const id = guid(table, at);
    const offset = u64(table, at + 16);
    const length = table.readUInt32LE(at + 24);
    const required = (table.readUInt32LE(at + 28) & 1) !== 0;
    if (id !== BAT_REGION && id !== METADATA_REGION) {
      if (required) throw fail(`VHDX region ${id} is required but not known to Kiln`);
      continue;
    }
    const name = id === BAT_REGION ? "the BAT" : "the metadata region";
    if ((id === BAT_REGION ? bat : metadata) !== undefined) throw fail(`VHDX region table names ${name} twice`);
    // §2.2.3.2: FileOffset and Length are multiples of 1 MiB, the offset at least 1 MiB.
    if (offset === undefined || offset % MiB !== 0 || length % MiB !== 0 || length === 0)
      throw fail(`VHDX region table places ${name} at an unaligned offset or size`);
    const region = place(source, name, offset, length, regions);
    regions.push(region);
    if (id === BAT_REGION) bat = region;
    else metadata = region;
  }
  if (!bat) throw fail("VHDX region table has no BAT");
  if (!metadata) throw fail("VHDX region table has no metadata region");

  const items = await readMetadata(source, metadata);
  const parameters = items.get(FILE_PARAMETERS);
  const sizeItem = items.get(VIRTUAL_DISK_SIZE);
  const logicalItem = items.get(LOGICAL_SECTOR_SIZE);
  const physicalItem = items.get(PHYSICAL_SECTOR_SIZE);
  if (!parameters || parameters.length < 8) throw fail("VHDX metadata has no File Parameters");
  if (!sizeItem || sizeItem.length < 8) throw fail("VHDX metadata has no Virtual Disk Size");
  if (!logicalItem || logicalItem.length < 4) throw fail("VHDX metadata has no Logical Sector Size");

  // §2.6.2.1 File Parameters: BlockSize, then LeaveBlocksAllocated (bit 0) and HasParent (bit 1).
  if (parameters.readUInt32LE(4) & 2) throw fail("VHDX differencing disks (with a parent) are not supported");
  const blockSize = parameters.readUInt32LE(0);
  if (blockSize < MiB || blockSize > 256 * MiB || (blockSize & (blockSize - 1)) !== 0)
    throw fail(`VHDX block size ${blockSize} is not a power of two from 1 MiB to 256 MiB`);
  // §2.6.2.4/2.6.2.5: sector sizes are 512 or 4096.
  const logicalSectorSize = logicalItem.readUInt32LE(0);
  if (logicalSectorSize !== 512 && logicalSectorSize !== 4096) throw fail(`VHDX logical sector size ${logicalSectorSize} is not 512 or 4096`);
  if (physicalItem) {
    const physical = physicalItem.length >= 4 ? physicalItem.readUInt32LE(0) : 0;
    if (physical !== 512 && physical !== 4096) throw fail(`VHDX physical sector size ${physical} is not 512 or 4096`);
  }
  // §2.6.2.2 Virtual Disk Size: a multiple of the logical sector size.
  const sizeField = sizeItem.readBigUInt64LE(0);
  if (sizeField > BigInt(DISK_LIMITS.virtualSize)) throw fail(`VHDX virtual size ${sizeField} exceeds Kiln's limit of ${DISK_LIMITS.virtualSize} bytes`);
  const virtualSize = Number(sizeField);
  if (virtualSize % logicalSectorSize !== 0) throw fail(`VHDX virtual size ${virtualSize} is not a multiple of the ${logicalSectorSize}-byte sector`);

  // §2.5: a sector bitmap entry follows every chunk ratio payload entries.
  const chunkRatio = (2 ** 23 * logicalSectorSize) / blockSize;
  const dataBlocks = Math.ceil(virtualSize / blockSize);
  const batEntries = dataBlocks === 0 ? 0 : dataBlocks + Math.floor((dataBlocks - 1) / chunkRatio);
  if (batEntries * 8 > bat.length) throw fail(`VHDX BAT holds ${bat.length / 8} entries, too few for the virtual size (${batEntries})`);
  const batRegion = bat;

  async function* units(): AsyncGenerator<Unit> {
    // Each byte of the file holds at most one block's data: more mapped data than the file has
    // means blocks share their place, and a small file could make terabytes of work.
    let storedBytes = 0;
    let window: Buffer | undefined;
    let windowStart = 0;
    for (let block = 0; block < dataBlocks; block++) {
      const index = block + Math.floor(block / chunkRatio);
      if (!window || index >= windowStart + window.length / 8) {
        windowStart = index;
        const count = Math.min(BAT_WINDOW / 8, batEntries - index);
        window = await source.read(batRegion.offset + index * 8, count * 8);
      }
      const at = (index - windowStart) * 8;
      const lo = window.readUInt32LE(at);
      const hi = window.readUInt32LE(at + 4);
      const state = lo & 7;
      switch (state) {
        case PAYLOAD_BLOCK_NOT_PRESENT:
        case PAYLOAD_BLOCK_UNDEFINED:
        case PAYLOAD_BLOCK_ZERO:
        case PAYLOAD_BLOCK_UNMAPPED:
        case PAYLOAD_BLOCK_UNMAPPED_V095:
          // Contents undefined or zero with no parent to consult: Kiln reads zeros.
          continue;
        case PAYLOAD_BLOCK_PARTIALLY_PRESENT:
          throw fail(`VHDX block ${block} is partially present, which only a differencing disk may be`);
        case PAYLOAD_BLOCK_FULLY_PRESENT:
          break;
        default:
          throw fail(`VHDX block ${block} has the reserved state ${state}`);
      }
      // §2.5.1: FileOffsetMB is bits 20-63.
      const host = (hi * 4096 + (lo >>> 20)) * MiB;
      const offset = block * blockSize;
      const length = Math.min(blockSize, virtualSize - offset);
      if (!Number.isSafeInteger(host) || host + length > source.size) throw fail(`VHDX BAT entry for block ${block} points outside the file`);
      for (const region of regions) {
        if (host < region.offset + region.length && region.offset < host + length) throw fail(`VHDX block ${block} overlaps ${region.name}`);
      }
      storedBytes += length;
      if (storedBytes > source.size) throw fail("VHDX BAT maps more data than the file holds");
      yield { offset, length, host };
    }
  }

  const image: DiskImage = {
    format: "vhdx",
    virtualSize,
    extents: (signal) => readExtents(source, units(), signal),
  };
  return image;
};

/** A region of the file, checked to lie inside it and clear of the ones placed before. */
function place(source: ByteSource, name: string, offset: number, length: number, placed: readonly Region[]): Region {
  if (offset + length > source.size) throw fail(`VHDX ${name} lies outside the file`);
  for (const other of placed) {
    if (offset < other.offset + other.length && other.offset < offset + length) throw fail(`VHDX ${name} overlaps ${other.name}`);
  }
  return { name, offset, length };
}

/** The known metadata items' bytes by item id (§2.6.1), refusing unknown required items. */
async function readMetadata(source: ByteSource, region: Region): Promise<Map<string, Buffer>> {
  const table = await source.read(region.offset, METADATA_TABLE_BYTES);
  if (table.toString("latin1", 0, 8) !== METADATA_SIGNATURE) throw fail("VHDX metadata table has no signature");
  const count = table.readUInt16LE(10);
  if (count > MAX_TABLE_ENTRIES) throw fail(`VHDX metadata table has ${count} entries (at most ${MAX_TABLE_ENTRIES})`);
  const items = new Map<string, Buffer>();
  for (let i = 0; i < count; i++) {
    const at = 32 + i * 32;
    const id = guid(table, at);
    const offset = table.readUInt32LE(at + 16);
    const length = table.readUInt32LE(at + 20);
    const flags = table.readUInt32LE(at + 24);
    const isUser = (flags & 1) !== 0;
    const isRequired = (flags & 4) !== 0;
    if (isUser || !KNOWN_METADATA.has(id)) {
      if (isRequired) throw fail(`VHDX metadata item ${id} is required but not known to Kiln`);
      continue;
    }
    if (items.has(id)) throw fail(`VHDX metadata item ${id} appears twice`);
    // §2.6.1.2: an item lies at least 64 KiB into the region, is at most 1 MiB, and fits in it.
    if (length === 0) continue;
    if (offset < METADATA_TABLE_BYTES || length > MAX_METADATA_ITEM_BYTES || offset + length > region.length)
      throw fail(`VHDX metadata item ${id} lies outside the metadata region`);
    if (id === PARENT_LOCATOR || id === VIRTUAL_DISK_ID) {
      items.set(id, Buffer.alloc(0)); // not read: a parent is refused through File Parameters, the id is not needed
      continue;
    }
    items.set(id, await source.read(region.offset + offset, Math.min(length, 8)));
  }
  return items;
}
