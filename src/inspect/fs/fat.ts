// FAT12, FAT16 and FAT32 (EFI system partitions are any of the three, by size), read-only: find a
// file by path, matching long (VFAT) or 8.3 names case-insensitively, and read it through its
// cluster chain. Sections cited are those of Microsoft's "FAT32 File System Specification"
// (fatgen103, 1.03): "Boot Sector and BPB", "FAT Type Determination", "FAT Data Structure",
// "FAT Directory Structure" and "FAT Long Directory Entries". FAT has no links.
import type { ByteSource } from "../../formats/disk/source.js";
import { FS_LIMITS, FileSystemError, type FileSystem, type FileSystemOpener } from "./filesystem.js";
import { checkMaxBytes, foldName, plainComponents } from "./plain-path.js";

// DIR_Attr bits
const ATTR_VOLUME_ID = 0x08;
const ATTR_DIRECTORY = 0x10;
const ATTR_LONG_NAME = 0x0f;
const ATTR_LONG_NAME_MASK = 0x3f;
const LAST_LONG_ENTRY = 0x40;
const ENTRY_BYTES = 32;
/** "FAT Long Directory Entries": 255 characters at most, 13 per entry. */
const MAX_LONG_ENTRIES = 20;
/** The most bytes one device read asks for. */
const READ_PIECE = 1024 * 1024;
/** FAT bytes kept in memory, in pieces of FAT_PIECE (a FAT32 FAT can be hundreds of MiB). */
const FAT_PIECE = 64 * 1024;
const FAT_PIECES_KEPT = 16;

type FatType = 12 | 16 | 32;

interface Geometry {
  type: FatType;
  clusterBytes: number;
  /** Byte offset of the FAT in use. */
  fatOffset: number;
  fatBytes: number;
  /** FAT12/16: the fixed root directory; FAT32: its first cluster. */
  root: { offset: number; bytes: number } | { cluster: number };
  dataOffset: number;
  volumeBytes: number;
  /** The highest valid cluster number (clusters are numbered from 2). */
  maxCluster: number;
}

interface Entry {
  name: string;
  attributes: number;
  cluster: number;
  size: number;
}

type Directory = { offset: number; bytes: number } | { cluster: number };

export const openFat: FileSystemOpener = async (source) => {
  if (source.size < 512) return undefined;
  const geometry = parseBootSector(await source.read(0, 512), source.size);
  if (!geometry) return undefined;
  const fat = new Fat(source, geometry);
  return { type: "fat", readFile: (path, maxBytes) => fat.readFile(path, maxBytes) } satisfies FileSystem;
};

/**
 * "Boot Sector and BPB". Undefined when the sector is not a FAT boot sector at all (NTFS and
 * exFAT share the jump and 0x55AA but name themselves in the OEM id and zero the FAT fields);
 * a FileSystemError when it is one whose numbers do not add up.
 */
function parseBootSector(boot: Buffer, sourceSize: number): Geometry | undefined {
  const oem = boot.toString("latin1", 3, 11);
  if (oem === "NTFS    " || oem === "EXFAT   ") return undefined;
  if (boot.readUInt16LE(510) !== 0xaa55 || (boot[0] !== 0xeb && boot[0] !== 0xe9)) return undefined;
  const sectorBytes = boot.readUInt16LE(11);
  const sectorsPerCluster = boot[13]!;
  const reserved = boot.readUInt16LE(14);
  const fats = boot[16]!;
  const rootEntries = boot.readUInt16LE(17);
  const media = boot[21]!;
  const fatSectors16 = boot.readUInt16LE(22);
  const fatSectors32 = boot.readUInt32LE(36);
  const totalSectors = boot.readUInt16LE(19) || boot.readUInt32LE(32);
  const fatSectors = fatSectors16 || fatSectors32;
  if (
    ![512, 1024, 2048, 4096].includes(sectorBytes) ||
    ![1, 2, 4, 8, 16, 32, 64, 128].includes(sectorsPerCluster) ||
    reserved === 0 ||
    fats === 0 ||
    (media !== 0xf0 && media < 0xf8) ||
    totalSectors === 0 ||
    fatSectors === 0
  ) {
    return undefined;
  }

  // The layout says FAT32 (no 16-bit FAT size, as the Linux driver decides); the cluster count
  // then tells FAT12 from FAT16 ("FAT Type Determination").
  const fat32 = fatSectors16 === 0;
  if (fat32 !== (rootEntries === 0))
    throw new FileSystemError(`FAT boot sector: ${rootEntries} fixed root entries with a ${fat32 ? "FAT32" : "FAT12/16"} layout`);
  const rootSectors = Math.ceil((rootEntries * ENTRY_BYTES) / sectorBytes);
  const dataSector = reserved + fats * fatSectors + rootSectors;
  if (dataSector >= totalSectors) throw new FileSystemError(`FAT boot sector: the data area starts at sector ${dataSector} of ${totalSectors}`);
  if (totalSectors * sectorBytes > sourceSize)
    throw new FileSystemError(`FAT volume claims ${totalSectors * sectorBytes} bytes but its partition holds ${sourceSize}`);
  const clusters = Math.floor((totalSectors - dataSector) / sectorsPerCluster);
  const type: FatType = fat32 ? 32 : clusters < 4085 ? 12 : 16;
  // Cluster numbers past these collide with the bad-cluster and end-of-chain marks.
  const limit = { 12: 0xff4, 16: 0xfff4, 32: 0x0ffffff5 }[type];
  if (clusters < 1 || clusters > limit) throw new FileSystemError(`FAT${type} volume with ${clusters} clusters`);
  const fatBytes = fatSectors * sectorBytes;
  if (Math.ceil(((clusters + 2) * type) / 8) > fatBytes) throw new FileSystemError(`FAT of ${fatBytes} bytes is too small for ${clusters} clusters`);

  // BPB_ExtFlags (FAT32): with bit 7 set only the FAT numbered in bits 0-3 is kept up to date.
  let activeFat = 0;
  if (fat32 && boot.readUInt16LE(40) & 0x80) {
    activeFat = boot.readUInt16LE(40) & 0x0f;
    if (activeFat >= fats) throw new FileSystemError(`FAT boot sector: active FAT ${activeFat} of ${fats}`);
  }
  const clusterBytes = sectorBytes * sectorsPerCluster;
  const maxCluster = clusters + 1;
  let root: Geometry["root"];
  if (fat32) {
    const cluster = boot.readUInt32LE(44);
    if (cluster < 2 || cluster > maxCluster) throw new FileSystemError(`FAT32 root directory cluster ${cluster} is outside the data area`);
    root = { cluster };
  } else {
    root = { offset: (reserved + fats * fatSectors) * sectorBytes, bytes: rootEntries * ENTRY_BYTES };
  }
  return {
    type,
    clusterBytes,
    fatOffset: (reserved + activeFat * fatSectors) * sectorBytes,
    fatBytes,
    root,
    dataOffset: dataSector * sectorBytes,
    volumeBytes: totalSectors * sectorBytes,
    maxCluster,
  };
}

class Fat {
  private readonly fatPieces = new Map<number, Promise<Buffer>>();
  /** Chain marks: at or above `end` the chain ends; `bad` is a bad cluster ("FAT Data Structure"). */
  private readonly end: number;
  private readonly bad: number;

  constructor(
    private readonly source: ByteSource,
    private readonly geometry: Geometry,
  ) {
    this.end = { 12: 0xff8, 16: 0xfff8, 32: 0x0ffffff8 }[geometry.type];
    this.bad = this.end - 1;
  }

  async readFile(path: string, maxBytes: number): Promise<Buffer | undefined> {
    checkMaxBytes(maxBytes);
    const components = plainComponents(path);
    if (!components?.length) return undefined;
    let directory: Directory = this.geometry.root;
    for (const [index, name] of components.entries()) {
      const entry = await this.find(directory, name);
      if (!entry) return undefined;
      const last = index === components.length - 1;
      if (entry.attributes & ATTR_DIRECTORY) {
        if (last) return undefined;
        // Only ".." may name cluster 0 (the root), and lookups never follow dot entries.
        if (entry.cluster === 0) throw new FileSystemError(`directory "${entry.name}" has no first cluster`);
        directory = { cluster: entry.cluster };
      } else {
        if (!last) return undefined;
        return this.readChain(entry, Math.min(entry.size, maxBytes));
      }
    }
    return undefined;
  }

  /** The entry named `name` (long or 8.3 name, any case) in a directory, scanning to its end mark. */
  private async find(directory: Directory, name: string): Promise<Entry | undefined> {
    const wanted = foldName(name);
    // The long name being gathered: its parts by ordinal, the ordinal expected next, the checksum.
    let long: { parts: string[]; next: number; checksum: number } | undefined;
    for await (const block of this.directoryBlocks(directory)) {
      for (let at = 0; at + ENTRY_BYTES <= block.length; at += ENTRY_BYTES) {
        const entry = block.subarray(at, at + ENTRY_BYTES);
        const first = entry[0]!;
        if (first === 0x00) return undefined; // no entries follow
        if (first === 0xe5) {
          long = undefined;
          continue;
        }
        const attributes = entry[11]!;
        if ((attributes & ATTR_LONG_NAME_MASK) === ATTR_LONG_NAME) {
          // Long entries precede their short entry, last part first, ordinals counting down to 1;
          // anything out of sequence orphans the name, which is then ignored.
          const ordinal = first & ~LAST_LONG_ENTRY;
          if (first & LAST_LONG_ENTRY) long = ordinal >= 1 && ordinal <= MAX_LONG_ENTRIES ? { parts: [], next: ordinal, checksum: entry[13]! } : undefined;
          else if (long && ordinal === long.next - 1 && entry[13] === long.checksum) long.next = ordinal;
          else long = undefined;
          if (long) long.parts[ordinal - 1] = longNamePart(entry);
          continue;
        }
        const longName = long?.next === 1 && long.checksum === shortNameChecksum(entry) ? joinLongName(long.parts) : undefined;
        long = undefined;
        if (attributes & ATTR_VOLUME_ID) continue;
        const shortName = shortNameOf(entry);
        if (shortName === "." || shortName === "..") continue;
        if (foldName(shortName) !== wanted && (longName === undefined || foldName(longName) !== wanted)) continue;
        // DIR_FstClusHI is only meaningful on FAT32 (FAT12/16 kept OS/2 extended attributes there).
        const high = this.geometry.type === 32 ? entry.readUInt16LE(20) : 0;
        return { name: longName ?? shortName, attributes, cluster: high * 0x10000 + entry.readUInt16LE(26), size: entry.readUInt32LE(28) };
      }
    }
    return undefined;
  }

  /** A directory's bytes a piece at a time: the fixed FAT12/16 root, or a cluster chain. */
  private async *directoryBlocks(directory: Directory): AsyncGenerator<Buffer> {
    if ("offset" in directory) {
      for (let at = 0; at < directory.bytes; at += READ_PIECE)
        yield this.readVolume(directory.offset + at, Math.min(READ_PIECE, directory.bytes - at), "the root directory");
      return;
    }
    const most = Math.floor(FS_LIMITS.directoryBytes / this.geometry.clusterBytes);
    const what = `directory at cluster ${directory.cluster}`;
    const seen = new Set<number>();
    for (let cluster = directory.cluster; ; ) {
      this.checkCluster(cluster, seen, what);
      if (seen.size > most) throw new FileSystemError(`${what} is larger than ${FS_LIMITS.directoryBytes} bytes`);
      yield this.readVolume(this.clusterOffset(cluster), this.geometry.clusterBytes, what);
      const next = await this.next(cluster, what);
      if (next === undefined) return;
      cluster = next;
    }
  }

  /** The first `length` bytes of a file, from its chain. */
  private async readChain(entry: Entry, length: number): Promise<Buffer> {
    const what = `file "${entry.name}"`;
    const out = Buffer.alloc(length);
    if (length === 0) return out;
    if (entry.cluster === 0) throw new FileSystemError(`${what} of ${entry.size} bytes has no first cluster`);
    const { clusterBytes } = this.geometry;
    const needed = Math.ceil(length / clusterBytes);
    const seen = new Set<number>();
    // Consecutive clusters (the usual case) become one read.
    let runStart = entry.cluster;
    let runLength = 0;
    let done = 0;
    const flush = async () => {
      for (let at = 0; at < runLength * clusterBytes && done < length; ) {
        const piece = Math.min(READ_PIECE, runLength * clusterBytes - at, length - done);
        (await this.readVolume(this.clusterOffset(runStart) + at, piece, what)).copy(out, done);
        at += piece;
        done += piece;
      }
    };
    for (let cluster: number | undefined = entry.cluster, count = 0; count < needed; count++) {
      if (cluster === undefined) throw new FileSystemError(`${what}: cluster chain ends after ${count} clusters; its ${entry.size} bytes need more`);
      this.checkCluster(cluster, seen, what);
      if (cluster !== runStart + runLength) {
        await flush();
        runStart = cluster;
        runLength = 0;
      }
      runLength++;
      if (count + 1 < needed) cluster = await this.next(cluster, what);
    }
    await flush();
    return out;
  }

  private checkCluster(cluster: number, seen: Set<number>, what: string): void {
    if (cluster < 2 || cluster > this.geometry.maxCluster) throw new FileSystemError(`${what}: cluster chain leaves the data area (cluster ${cluster})`);
    if (seen.has(cluster)) throw new FileSystemError(`${what}: cluster chain loops back to cluster ${cluster}`);
    seen.add(cluster);
  }

  /** The cluster after `cluster` in its chain, or undefined at the chain's end. */
  private async next(cluster: number, what: string): Promise<number | undefined> {
    const { type } = this.geometry;
    // FAT12 packs two entries in three bytes; an entry may straddle two pieces.
    const byte = type === 12 ? cluster + (cluster >> 1) : cluster * (type / 8);
    let value = (await this.fatByte(byte)) | ((await this.fatByte(byte + 1)) << 8);
    if (type === 12) value = cluster & 1 ? value >> 4 : value & 0x0fff;
    if (type === 32) value = ((await this.fatByte(byte + 2)) | ((await this.fatByte(byte + 3)) << 8)) * 0x10000 + value;
    if (type === 32) value &= 0x0fffffff; // the top four bits are reserved
    if (value >= this.end) return undefined;
    if (value === this.bad) throw new FileSystemError(`${what}: cluster chain runs into a bad cluster after ${cluster}`);
    if (value === 0) throw new FileSystemError(`${what}: cluster chain runs into a free cluster after ${cluster}`);
    return value;
  }

  private async fatByte(offset: number): Promise<number> {
    const index = Math.floor(offset / FAT_PIECE);
    let piece = this.fatPieces.get(index);
    if (!piece) {
      const start = index * FAT_PIECE;
      piece = this.readVolume(this.geometry.fatOffset + start, Math.min(FAT_PIECE, this.geometry.fatBytes - start), "the FAT");
      this.fatPieces.set(index, piece);
      if (this.fatPieces.size > FAT_PIECES_KEPT) this.fatPieces.delete(this.fatPieces.keys().next().value!);
    }
    return (await piece)[offset % FAT_PIECE]!;
  }

  private clusterOffset(cluster: number): number {
    return this.geometry.dataOffset + (cluster - 2) * this.geometry.clusterBytes;
  }

  private readVolume(offset: number, length: number, what: string): Promise<Buffer> {
    if (offset + length > this.geometry.volumeBytes) throw new FileSystemError(`${what}: ${length} bytes at ${offset} lie outside the volume`);
    return this.source.read(offset, length);
  }
}

/** "FAT Long Directory Entries": LDIR_Name1 (5 UTF-16 units), LDIR_Name2 (6), LDIR_Name3 (2). */
function longNamePart(entry: Buffer): string {
  return entry.toString("utf16le", 1, 11) + entry.toString("utf16le", 14, 26) + entry.toString("utf16le", 28, 32);
}

/** The parts in order, up to the NUL that ends a name not filling its last entry (0xFFFF pads the rest). */
function joinLongName(parts: string[]): string {
  const whole = parts.join("");
  const end = whole.indexOf("\0");
  return end === -1 ? whole : whole.slice(0, end);
}

/** ChkSum() over the 11 bytes of DIR_Name, which every long entry of the name carries. */
function shortNameChecksum(entry: Buffer): number {
  let sum = 0;
  for (let i = 0; i < 11; i++) sum = (((sum & 1) << 7) + (sum >> 1) + entry[i]!) & 0xff;
  return sum;
}

/** DIR_Name as "NAME.EXT" (0x05 in the first byte stands for 0xE5; the OEM code page is read as Latin-1). */
function shortNameOf(entry: Buffer): string {
  const name = Buffer.from(entry.subarray(0, 11));
  if (name[0] === 0x05) name[0] = 0xe5;
  const base = name.toString("latin1", 0, 8).trimEnd();
  const extension = name.toString("latin1", 8, 11).trimEnd();
  return extension ? `${base}.${extension}` : base;
}
