// NTFS, read-only and only as far as inspection needs: find a file by path through the $I30
// directory indexes and read its unnamed $DATA stream. Field offsets follow the on-disk structs
// NTFS_BOOT_SECTOR, MFT_RECORD, ATTR_RECORD, INDEX_ROOT, INDEX_BLOCK, INDEX_ENTRY and
// FILE_NAME_ATTR as ntfs-3g's include/ntfs-3g/layout.h (and Linux's fs/ntfs/layout.h before
// 6.9) document them; reparse tags are from [MS-FSCC] 2.1.2.1.
//
// Not read, and refused with a FileSystemError when met: compressed and encrypted streams, and
// records whose attributes spill into an $ATTRIBUTE_LIST. Reparse points are not followed: a
// symbolic link or junction reads as no file, any other reparse point (WOF-compressed system
// files, deduplicated files) is refused because its data is not where $DATA says.
import type { ByteSource } from "../../formats/disk/source.js";
import { FS_LIMITS, FileSystemError, type FileSystemOpener } from "./filesystem.js";
import { checkMaxBytes, plainComponents } from "./plain-path.js";

const OEM_ID = "NTFS    ";
/** The update sequence array protects every 512 bytes of a record, whatever the sector size. */
const USA_STRIDE = 512;

// ATTR_TYPES
const AT_ATTRIBUTE_LIST = 0x20;
const AT_FILE_NAME = 0x30;
const AT_DATA = 0x80;
const AT_INDEX_ROOT = 0x90;
const AT_INDEX_ALLOCATION = 0xa0;
const AT_REPARSE_POINT = 0xc0;
const AT_END = 0xffffffff;

// ATTR_FLAGS
const ATTR_COMPRESSION_MASK = 0x00ff;
const ATTR_IS_ENCRYPTED = 0x4000;

// MFT_RECORD_FLAGS
const MFT_RECORD_IN_USE = 0x0001;
const MFT_RECORD_IS_DIRECTORY = 0x0002;

// INDEX_ENTRY_FLAGS
const INDEX_ENTRY_NODE = 0x0001;
const INDEX_ENTRY_END = 0x0002;

const FILE_MFT = 0;
const FILE_ROOT = 5;
const FILE_UPCASE = 10;
/** $UpCase maps every UTF-16 unit: 65536 little-endian u16. */
const UPCASE_BYTES = 65536 * 2;
const COLLATION_FILE_NAME = 0x01;
/** [MS-FSCC] 2.1.2.1: bit 29 of a reparse tag marks a name surrogate (symbolic link, junction). */
const REPARSE_NAME_SURROGATE = 0x20000000;
/** Windows formats clusters of up to 2 MiB. */
const MAX_CLUSTER_BYTES = 2 * 1024 * 1024;
/** The most bytes one device read asks for, so a large read never holds two copies whole. */
const READ_PIECE = 1024 * 1024;

/** A stretch of a non-resident attribute: `length` clusters from VCN `vcn`, at `lcn` or sparse. */
interface Run {
  vcn: number;
  lcn: number | undefined;
  length: number;
}

interface Attribute {
  type: number;
  name: string;
  flags: number;
  /** The value, when resident. */
  value?: Buffer;
  /** Non-resident: where the mapping pairs lie in `record`, decoded when first read. */
  mappingPairs?: Buffer;
  lowestVcn: number;
  highestVcn: number;
  dataSize: number;
  initializedSize: number;
  runs?: Run[];
  /** The MFT record it lives in, for messages. */
  record: number;
}

interface MftRecord {
  number: number;
  sequence: number;
  flags: number;
  attributes: Attribute[];
}

export const openNtfs: FileSystemOpener = async (source) => {
  if (source.size < 512) return undefined;
  const boot = await source.read(0, 512);
  // The OEM id is what says NTFS: FAT boot sectors share the jump, the BPB layout and 0x55AA.
  if (boot.toString("latin1", 3, 11) !== OEM_ID) return undefined;
  const volume = new Ntfs(source, parseBoot(boot, source.size));
  await volume.load();
  return { type: "ntfs", readFile: (path, maxBytes) => volume.readFile(path, maxBytes) };
};

interface Geometry {
  clusterBytes: number;
  clusters: number;
  mftLcn: number;
  recordBytes: number;
}

function parseBoot(boot: Buffer, sourceSize: number): Geometry {
  if (boot.readUInt16LE(510) !== 0xaa55) throw new FileSystemError("NTFS boot sector lacks its 0x55AA signature");
  const sectorBytes = boot.readUInt16LE(0x0b);
  if (!isPowerOfTwo(sectorBytes) || sectorBytes < 256 || sectorBytes > 4096) throw new FileSystemError(`NTFS boot sector: ${sectorBytes} bytes per sector`);
  // Above 0x80 the byte is a negative shift: 2^(256 - value) sectors (how Windows writes 128 KiB+ clusters).
  const perCluster = boot[0x0d]!;
  const sectorsPerCluster = perCluster <= 0x80 ? perCluster : 256 - perCluster <= 20 ? 2 ** (256 - perCluster) : 0;
  const clusterBytes = sectorBytes * sectorsPerCluster;
  if (!isPowerOfTwo(sectorsPerCluster) || clusterBytes > MAX_CLUSTER_BYTES)
    throw new FileSystemError(`NTFS boot sector: sectors per cluster byte 0x${perCluster.toString(16)}`);
  const sectors = u64(boot, 0x28, "NTFS boot sector: total sectors");
  const clusters = Math.floor((sectors * sectorBytes) / clusterBytes);
  if (clusters < 1 || clusters * clusterBytes > sourceSize) {
    throw new FileSystemError(`NTFS volume claims ${clusters * clusterBytes} bytes but its partition holds ${sourceSize}`);
  }
  const mftLcn = u64(boot, 0x30, "NTFS boot sector: MFT cluster");
  const recordBytes = recordSize(boot.readInt8(0x40), clusterBytes, "MFT record");
  if (mftLcn >= clusters || mftLcn * clusterBytes + recordBytes > clusters * clusterBytes)
    throw new FileSystemError(`NTFS boot sector: the MFT at cluster ${mftLcn} lies outside the volume`);
  return { clusterBytes, clusters, mftLcn, recordBytes };
}

/** clusters_per_mft_record and clusters_per_index_record: clusters if positive, else 2^-value bytes. */
function recordSize(value: number, clusterBytes: number, what: string): number {
  const bytes = value > 0 ? value * clusterBytes : value < 0 && value >= -31 ? 2 ** -value : 0;
  if (!isPowerOfTwo(bytes) || bytes < USA_STRIDE || bytes > 65536)
    throw new FileSystemError(`NTFS ${what} size ${bytes} (encoded ${value}) is not 512 bytes to 64 KiB`);
  return bytes;
}

class Ntfs {
  private readonly volumeBytes: number;
  private mft!: Attribute;
  private records = 0;
  private upcase!: Uint16Array;

  constructor(
    private readonly source: ByteSource,
    private readonly geometry: Geometry,
  ) {
    this.volumeBytes = geometry.clusters * geometry.clusterBytes;
  }

  /** Reads $MFT's own record for where the MFT lies, then the $UpCase table names compare by. */
  async load(): Promise<void> {
    const { mftLcn, clusterBytes, recordBytes } = this.geometry;
    const raw = await this.readVolume(mftLcn * clusterBytes, recordBytes, "MFT record 0");
    // A copy: the fix-up writes into it, and a source may hand out its own memory.
    const record = this.parseRecord(Buffer.from(raw), FILE_MFT);
    const data = this.attribute(record, AT_DATA, "");
    if (!data?.mappingPairs) throw new FileSystemError("MFT record 0 has no non-resident $DATA");
    const runs = this.runs(data);
    if (runs[0]?.lcn !== mftLcn) throw new FileSystemError("MFT record 0's data does not start where the boot sector puts the MFT");
    this.mft = data;
    this.records = Math.floor(data.dataSize / recordBytes);
    if (this.records <= FILE_UPCASE) throw new FileSystemError(`the MFT holds only ${this.records} records`);

    const upcase = this.attribute(await this.record(FILE_UPCASE), AT_DATA, "");
    if (!upcase || upcase.dataSize !== UPCASE_BYTES) throw new FileSystemError("$UpCase is not a 128 KiB table");
    const table = await this.readAttribute(upcase, 0, UPCASE_BYTES);
    this.upcase = new Uint16Array(65536);
    for (let i = 0; i < 65536; i++) this.upcase[i] = table.readUInt16LE(i * 2);
  }

  async readFile(path: string, maxBytes: number): Promise<Buffer | undefined> {
    checkMaxBytes(maxBytes);
    const components = plainComponents(path);
    if (!components) return undefined;
    let record = await this.record(FILE_ROOT);
    for (const name of components) {
      if (!(record.flags & MFT_RECORD_IS_DIRECTORY) || (await this.isLink(record))) return undefined;
      const found = await this.lookup(record, name);
      if (!found) return undefined;
      record = await this.record(found.record);
      if (found.sequence !== 0 && found.sequence !== record.sequence) {
        throw new FileSystemError(`the index entry for "${name}" names MFT record ${found.record}, which has since been reused`);
      }
    }
    if (record.flags & MFT_RECORD_IS_DIRECTORY || (await this.isLink(record))) return undefined;
    const data = this.attribute(record, AT_DATA, "");
    if (!data) throw new FileSystemError(`MFT record ${record.number} is a file without a $DATA stream`);
    return this.readAttribute(data, 0, Math.min(data.dataSize, maxBytes));
  }

  /** A symbolic link or junction, which Kiln does not follow; any other reparse point is refused. */
  private async isLink(record: MftRecord): Promise<boolean> {
    const reparse = this.attribute(record, AT_REPARSE_POINT, "");
    if (!reparse) return false;
    if (reparse.dataSize < 4) throw new FileSystemError(`MFT record ${record.number}: reparse point too short`);
    const tag = (await this.readAttribute(reparse, 0, 4)).readUInt32LE(0);
    if (tag & REPARSE_NAME_SURROGATE) return true;
    throw new FileSystemError(`MFT record ${record.number} is a reparse point (tag 0x${tag.toString(16)}) whose data Kiln cannot read`);
  }

  // --- Directory indexes (B+ trees of FILE_NAME_ATTR keys, ordered by COLLATION_FILE_NAME) ---

  private async lookup(directory: MftRecord, name: string): Promise<{ record: number; sequence: number } | undefined> {
    const where = `directory MFT record ${directory.number}`;
    const root = this.attribute(directory, AT_INDEX_ROOT, "$I30");
    if (!root?.value) throw new FileSystemError(`${where} has no $I30 index root`);
    const value = root.value;
    if (value.length < 32) throw new FileSystemError(`${where}: index root too short`);
    if (value.readUInt32LE(0) !== AT_FILE_NAME || value.readUInt32LE(4) !== COLLATION_FILE_NAME)
      throw new FileSystemError(`${where}: $I30 is not a file name index`);
    const blockBytes = value.readUInt32LE(8);
    const target = this.upcased(name);

    let step = this.searchNode(value, 16, target, `${where} index root`);
    const allocation = this.attribute(directory, AT_INDEX_ALLOCATION, "$I30");
    const visited = new Set<number>();
    let scanned = value.length;
    for (let depth = 1; "child" in step; depth++) {
      if (depth > FS_LIMITS.treeDepth) throw new FileSystemError(`${where}: index deeper than ${FS_LIMITS.treeDepth} levels`);
      if (!allocation) throw new FileSystemError(`${where}: index entry points below the root but there is no $I30 allocation`);
      if (!isPowerOfTwo(blockBytes) || blockBytes < USA_STRIDE || blockBytes > 65536) throw new FileSystemError(`${where}: index block size ${blockBytes}`);
      // Index block VCNs count clusters, or 512-byte units when a block is smaller than a cluster.
      const vcnBytes = blockBytes >= this.geometry.clusterBytes ? this.geometry.clusterBytes : USA_STRIDE;
      const offset = step.child * vcnBytes;
      if (visited.has(step.child)) throw new FileSystemError(`${where}: index block VCN ${step.child} is its own descendant`);
      visited.add(step.child);
      scanned += blockBytes;
      if (scanned > FS_LIMITS.directoryBytes) throw new FileSystemError(`${where}: index larger than ${FS_LIMITS.directoryBytes} bytes`);
      if (!Number.isSafeInteger(offset) || offset + blockBytes > allocation.dataSize)
        throw new FileSystemError(`${where}: index block VCN ${step.child} lies outside its allocation`);
      const block = await this.readAttribute(allocation, offset, blockBytes);
      const label = `${where} index block VCN ${step.child}`;
      this.fixup(block, "INDX", label);
      if (u64(block, 0x10, label) !== step.child) throw new FileSystemError(`${label} says it is VCN ${u64(block, 0x10, label)}`);
      step = this.searchNode(block, 0x18, target, label);
    }
    return "found" in step ? step.found : undefined;
  }

  /**
   * One node's entries (an INDEX_HEADER at `header` in `node`), in collation order: the entry
   * that matches, or the child to descend into (the subnode of the first entry greater than the
   * name, or of the closing entry), or nothing.
   */
  private searchNode(
    node: Buffer,
    header: number,
    target: Uint16Array,
    label: string,
  ): { found: { record: number; sequence: number } } | { child: number } | { none: true } {
    const entriesOffset = node.readUInt32LE(header);
    const indexLength = node.readUInt32LE(header + 4);
    const end = header + indexLength;
    let at = header + entriesOffset;
    if (entriesOffset < 16 || end > node.length || at > end) throw new FileSystemError(`${label}: entries lie outside the node`);
    // Every entry is at least 16 bytes and `at` only grows, so this ends.
    for (;;) {
      if (at + 16 > end) throw new FileSystemError(`${label}: entries run past the node without an end entry`);
      const length = node.readUInt16LE(at + 8);
      const keyLength = node.readUInt16LE(at + 10);
      const flags = node.readUInt16LE(at + 12);
      if (length < 16 || length % 8 !== 0 || at + length > end) throw new FileSystemError(`${label}: index entry of ${length} bytes at ${at}`);
      let child: number | undefined;
      if (flags & INDEX_ENTRY_NODE) {
        if (length < 24) throw new FileSystemError(`${label}: node entry too short for its child VCN`);
        child = u64(node, at + length - 8, `${label}: child VCN`);
      }
      const descend = () => (child === undefined ? { none: true as const } : { child });
      if (flags & INDEX_ENTRY_END) return descend();
      const keyEnd = at + 16 + keyLength;
      if (keyLength < 0x42 || keyEnd > at + length - (child === undefined ? 0 : 8)) throw new FileSystemError(`${label}: file name key of ${keyLength} bytes`);
      const nameLength = node[at + 16 + 0x40]!;
      if (0x42 + nameLength * 2 > keyLength) throw new FileSystemError(`${label}: file name longer than its key`);
      const order = this.compare(target, node, at + 16 + 0x42, nameLength);
      if (order === 0) {
        const reference = node.readBigUInt64LE(at);
        return { found: { record: Number(reference & 0xffffffffffffn), sequence: Number(reference >> 48n) } };
      }
      if (order < 0) return descend();
      at += length;
    }
  }

  private upcased(name: string): Uint16Array {
    const out = new Uint16Array(name.length);
    for (let i = 0; i < name.length; i++) out[i] = this.upcase[name.charCodeAt(i)]!;
    return out;
  }

  /** ntfs_collate_names, ignoring case: units through $UpCase, then length. */
  private compare(target: Uint16Array, node: Buffer, at: number, length: number): number {
    const common = Math.min(target.length, length);
    for (let i = 0; i < common; i++) {
      const other = this.upcase[node.readUInt16LE(at + i * 2)]!;
      if (target[i] !== other) return target[i]! < other ? -1 : 1;
    }
    return target.length - length;
  }

  // --- MFT records ---

  private async record(number: number): Promise<MftRecord> {
    if (!Number.isSafeInteger(number) || number < 0 || number >= this.records)
      throw new FileSystemError(`MFT record ${number} is beyond the MFT's ${this.records} records`);
    const { recordBytes } = this.geometry;
    const raw = await this.readAttribute(this.mft, number * recordBytes, recordBytes);
    return this.parseRecord(Buffer.from(raw), number);
  }

  /** MFT_RECORD and its ATTR_RECORDs, every offset checked against the record. */
  private parseRecord(raw: Buffer, number: number): MftRecord {
    const label = `MFT record ${number}`;
    this.fixup(raw, "FILE", label);
    const attrsOffset = raw.readUInt16LE(0x14);
    const flags = raw.readUInt16LE(0x16);
    const bytesInUse = raw.readUInt32LE(0x18);
    if (!(flags & MFT_RECORD_IN_USE)) throw new FileSystemError(`${label} is not in use`);
    if (bytesInUse > raw.length || attrsOffset % 8 !== 0 || attrsOffset < 0x30 || attrsOffset + 8 > bytesInUse)
      throw new FileSystemError(`${label}: header offsets outside the record`);
    if (raw.readBigUInt64LE(0x20) !== 0n) throw new FileSystemError(`${label} is an extension record, not a file`);
    const attributes: Attribute[] = [];
    // Each attribute is at least 24 bytes and `at` only grows, so this ends.
    for (let at = attrsOffset; ; ) {
      if (at + 8 > bytesInUse) throw new FileSystemError(`${label}: attributes run past the record without an end marker`);
      const type = raw.readUInt32LE(at);
      if (type === AT_END) break;
      const length = raw.readUInt32LE(at + 4);
      if (length < 24 || length % 8 !== 0 || at + length > bytesInUse)
        throw new FileSystemError(`${label}: attribute 0x${type.toString(16)} of ${length} bytes at ${at}`);
      const attr = raw.subarray(at, at + length);
      const nameLength = attr[9]!;
      const nameOffset = attr.readUInt16LE(10);
      if (nameOffset + nameLength * 2 > length) throw new FileSystemError(`${label}: attribute 0x${type.toString(16)} name outside the attribute`);
      const name = attr.toString("utf16le", nameOffset, nameOffset + nameLength * 2);
      const common = { type, name, flags: attr.readUInt16LE(12), record: number };
      if (attr[8] === 0) {
        const valueLength = attr.readUInt32LE(16);
        const valueOffset = attr.readUInt16LE(20);
        if (valueOffset + valueLength > length) throw new FileSystemError(`${label}: attribute 0x${type.toString(16)} value outside the attribute`);
        const value = attr.subarray(valueOffset, valueOffset + valueLength);
        attributes.push({ ...common, value, lowestVcn: 0, highestVcn: 0, dataSize: valueLength, initializedSize: valueLength });
      } else {
        if (length < 0x40) throw new FileSystemError(`${label}: non-resident attribute 0x${type.toString(16)} too short`);
        const pairsOffset = attr.readUInt16LE(0x20);
        if (pairsOffset < 0x40 || pairsOffset >= length)
          throw new FileSystemError(`${label}: attribute 0x${type.toString(16)} mapping pairs outside the attribute`);
        const what = `${label}: attribute 0x${type.toString(16)}`;
        const lowestVcn = u64(attr, 0x10, what);
        // An empty stream has highest VCN -1.
        const highestVcn = Number(attr.readBigInt64LE(0x18));
        const dataSize = u64(attr, 0x30, what);
        const initializedSize = u64(attr, 0x38, what);
        if (highestVcn < lowestVcn - 1 || !Number.isSafeInteger(highestVcn)) throw new FileSystemError(`${what}: VCNs ${lowestVcn} to ${highestVcn}`);
        if (initializedSize > dataSize) throw new FileSystemError(`${what}: initialized size ${initializedSize} beyond its size ${dataSize}`);
        attributes.push({ ...common, mappingPairs: attr.subarray(pairsOffset), lowestVcn, highestVcn, dataSize, initializedSize });
      }
      at += length;
    }
    return { number, sequence: raw.readUInt16LE(0x10), flags, attributes };
  }

  /** The attribute of a type and name; Kiln reads no record whose attributes continue elsewhere. */
  private attribute(record: MftRecord, type: number, name: string): Attribute | undefined {
    if (record.attributes.some((attr) => attr.type === AT_ATTRIBUTE_LIST)) {
      throw new FileSystemError(`MFT record ${record.number} keeps its attributes in an $ATTRIBUTE_LIST, which Kiln does not read`);
    }
    return record.attributes.find((attr) => attr.type === type && attr.name === name);
  }

  /**
   * Multi-sector transfer protection: the last two bytes of every 512 bytes must equal the update
   * sequence number, and the array holds what belongs there. A mismatch is a torn or corrupt write.
   */
  private fixup(block: Buffer, magic: string, label: string): void {
    const found = block.toString("latin1", 0, 4);
    if (found !== magic) throw new FileSystemError(`${label} is not a ${magic} record${found === "BAAD" ? " (marked bad)" : ""}`);
    const usaOffset = block.readUInt16LE(4);
    const usaCount = block.readUInt16LE(6);
    if (usaOffset % 2 !== 0 || usaCount - 1 !== block.length / USA_STRIDE || usaOffset + usaCount * 2 > USA_STRIDE - 2) {
      throw new FileSystemError(`${label}: update sequence array does not fit the record`);
    }
    const usn = block.readUInt16LE(usaOffset);
    for (let i = 1; i < usaCount; i++) {
      const end = i * USA_STRIDE - 2;
      if (block.readUInt16LE(end) !== usn) throw new FileSystemError(`${label} fails its update sequence check in sector ${i - 1}`);
      block.writeUInt16LE(block.readUInt16LE(usaOffset + i * 2), end);
    }
  }

  // --- Attribute data ---

  /**
   * Mapping pairs: a header byte (low nibble: bytes of the run length, high nibble: bytes of the
   * signed LCN delta, none for a sparse run), the two numbers little-endian, until a zero byte.
   */
  private runs(attr: Attribute): Run[] {
    if (attr.runs) return attr.runs;
    const pairs = attr.mappingPairs!;
    const what = `MFT record ${attr.record}: attribute 0x${attr.type.toString(16)}`;
    if (attr.lowestVcn !== 0)
      throw new FileSystemError(`${what} starts at VCN ${attr.lowestVcn}; its other extents are in an attribute list Kiln does not read`);
    const runs: Run[] = [];
    let vcn = attr.lowestVcn;
    let lcn = 0;
    // Each pair is at least two bytes and `at` only grows, so this ends.
    for (let at = 0; ; ) {
      if (at >= pairs.length) throw new FileSystemError(`${what}: mapping pairs run past the attribute`);
      const header = pairs[at]!;
      if (header === 0) break;
      const lengthBytes = header & 0x0f;
      const deltaBytes = header >> 4;
      if (lengthBytes === 0 || lengthBytes > 8 || deltaBytes > 8 || at + 1 + lengthBytes + deltaBytes > pairs.length)
        throw new FileSystemError(`${what}: malformed mapping pair at ${at}`);
      const length = Number(littleEndian(pairs, at + 1, lengthBytes, false));
      if (length < 1 || length > this.geometry.clusters) throw new FileSystemError(`${what}: data run of ${length} clusters`);
      let start: number | undefined;
      if (deltaBytes > 0) {
        lcn += Number(littleEndian(pairs, at + 1 + lengthBytes, deltaBytes, true));
        if (!Number.isSafeInteger(lcn) || lcn < 0 || lcn + length > this.geometry.clusters) {
          throw new FileSystemError(`${what}: data run at cluster ${lcn} (+${length}) lies outside the volume's ${this.geometry.clusters} clusters`);
        }
        start = lcn;
      }
      runs.push({ vcn, lcn: start, length });
      vcn += length;
      at += 1 + lengthBytes + deltaBytes;
    }
    if (vcn !== attr.highestVcn + 1) throw new FileSystemError(`${what}: data runs cover ${vcn} clusters, its header ${attr.highestVcn + 1}`);
    if (attr.dataSize > vcn * this.geometry.clusterBytes) throw new FileSystemError(`${what}: size ${attr.dataSize} is beyond its ${vcn} clusters`);
    attr.runs = runs;
    return runs;
  }

  /** Bytes [offset, offset + length) of an attribute's value; sparse runs and bytes past the initialized size read as zeros. */
  private async readAttribute(attr: Attribute, offset: number, length: number): Promise<Buffer> {
    const what = `MFT record ${attr.record}: attribute 0x${attr.type.toString(16)}`;
    if (offset + length > attr.dataSize) throw new FileSystemError(`${what}: ${length} bytes wanted at ${offset} of ${attr.dataSize}`);
    if (attr.flags & ATTR_COMPRESSION_MASK) throw new FileSystemError(`${what} is compressed, which Kiln does not read`);
    if (attr.flags & ATTR_IS_ENCRYPTED) throw new FileSystemError(`${what} is encrypted`);
    if (attr.value) return attr.value.subarray(offset, offset + length);
    const { clusterBytes } = this.geometry;
    const out = Buffer.alloc(length);
    const readable = Math.min(offset + length, attr.initializedSize);
    for (const run of this.runs(attr)) {
      const runStart = run.vcn * clusterBytes;
      const from = Math.max(offset, runStart);
      const to = Math.min(readable, runStart + run.length * clusterBytes);
      if (run.lcn === undefined || from >= to) continue;
      for (let at = from; at < to; at += READ_PIECE) {
        const piece = Math.min(READ_PIECE, to - at);
        (await this.readVolume(run.lcn * clusterBytes + (at - runStart), piece, what)).copy(out, at - offset);
      }
    }
    return out;
  }

  private readVolume(offset: number, length: number, what: string): Promise<Buffer> {
    if (offset + length > this.volumeBytes) throw new FileSystemError(`${what}: ${length} bytes at ${offset} lie outside the volume`);
    return this.source.read(offset, length);
  }
}

function isPowerOfTwo(value: number): boolean {
  return Number.isSafeInteger(value) && value > 0 && 2 ** Math.round(Math.log2(value)) === value;
}

function u64(buffer: Buffer, offset: number, what: string): number {
  const value = buffer.readBigUInt64LE(offset);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new FileSystemError(`${what}: ${value} is out of range`);
  return Number(value);
}

/** An unsigned or two's-complement little-endian integer of 1 to 8 bytes. */
function littleEndian(buffer: Buffer, offset: number, bytes: number, signed: boolean): bigint {
  let value = 0n;
  for (let i = bytes - 1; i >= 0; i--) value = (value << 8n) | BigInt(buffer[offset + i]!);
  if (signed && buffer[offset + bytes - 1]! & 0x80) value -= 1n << BigInt(bytes * 8);
  return value;
}
