// The partition table of a disk: GPT (UEFI specification 2.10, §5.3), else MBR with its
// extended-partition chain, else none (a file system on the whole disk).
import { crc32 } from "node:zlib";
import type { ByteSource } from "../formats/disk/source.js";

const SECTOR = 512;
const MAX_GPT_ENTRIES = 1024;
const MAX_LOGICAL = 128;

export const EFI_SYSTEM_PARTITION = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
const MBR_EFI_TYPE = 0xef;
const MBR_PROTECTIVE = 0xee;
const MBR_EXTENDED = new Set([0x05, 0x0f, 0x85]);

export interface Partition {
  /** 1-based, as the operating system numbers it. */
  number: number;
  /** Byte offset and length on the disk. */
  start: number;
  size: number;
  /** A GPT type GUID (lowercase), or an MBR type as two hex digits. */
  type: string;
  efiSystem: boolean;
}

export interface PartitionTable {
  scheme: "gpt" | "mbr" | "none";
  partitions: Partition[];
}

export async function readPartitions(disk: ByteSource): Promise<PartitionTable> {
  if (disk.size < 2 * SECTOR) return { scheme: "none", partitions: [] };
  const mbr = await disk.read(0, SECTOR);
  if (mbr.readUInt16LE(510) !== 0xaa55) return { scheme: "none", partitions: [] };
  const primaries = [0, 1, 2, 3].map((i) => mbr.subarray(446 + i * 16, 446 + (i + 1) * 16));
  if (primaries.some((entry) => entry[4] === MBR_PROTECTIVE)) {
    const gpt = (await readGpt(disk, 1)) ?? (await readGpt(disk, Math.floor(disk.size / SECTOR) - 1));
    if (gpt) return { scheme: "gpt", partitions: gpt };
  }
  // A boot sector of a file system (FAT, NTFS) also ends in 0x55AA: its "entries" are code and
  // BPB bytes, so entries that leave the disk or have a bad status byte mean no table.
  const partitions: Partition[] = [];
  for (const [i, entry] of primaries.entries()) {
    const type = entry[4]!;
    const first = entry.readUInt32LE(8);
    const count = entry.readUInt32LE(12);
    if (type === 0 || count === 0) continue;
    if ((entry[0]! & 0x7f) !== 0 || (first + count) * SECTOR > disk.size) return { scheme: "none", partitions: [] };
    if (MBR_EXTENDED.has(type)) {
      partitions.push(...(await readLogical(disk, first)));
      continue;
    }
    partitions.push({ number: i + 1, start: first * SECTOR, size: count * SECTOR, type: hex(type), efiSystem: type === MBR_EFI_TYPE });
  }
  return { scheme: partitions.length ? "mbr" : "none", partitions };
}

async function readGpt(disk: ByteSource, lba: number): Promise<Partition[] | undefined> {
  if (lba < 1 || (lba + 1) * SECTOR > disk.size) return undefined;
  const header = await disk.read(lba * SECTOR, SECTOR);
  if (header.toString("latin1", 0, 8) !== "EFI PART") return undefined;
  const headerSize = header.readUInt32LE(12);
  if (headerSize < 92 || headerSize > SECTOR) return undefined;
  const copy = Buffer.from(header.subarray(0, headerSize));
  copy.writeUInt32LE(0, 16);
  if (crc32(copy) !== header.readUInt32LE(16)) return undefined;
  const entriesAt = Number(header.readBigUInt64LE(72));
  const count = header.readUInt32LE(80);
  const entrySize = header.readUInt32LE(84);
  if (count > MAX_GPT_ENTRIES || entrySize < 128 || entrySize > 4096 || entrySize % 8 !== 0) return undefined;
  if (!Number.isSafeInteger(entriesAt) || entriesAt * SECTOR + count * entrySize > disk.size) return undefined;
  const entries = await disk.read(entriesAt * SECTOR, count * entrySize);
  if (crc32(entries) !== header.readUInt32LE(88)) return undefined;
  const partitions: Partition[] = [];
  for (let i = 0; i < count; i++) {
    const entry = entries.subarray(i * entrySize, (i + 1) * entrySize);
    const type = guid(entry.subarray(0, 16));
    if (type === "00000000-0000-0000-0000-000000000000") continue;
    const first = Number(entry.readBigUInt64LE(32));
    const last = Number(entry.readBigUInt64LE(40));
    if (last < first || (last + 1) * SECTOR > disk.size) continue;
    partitions.push({ number: i + 1, start: first * SECTOR, size: (last - first + 1) * SECTOR, type, efiSystem: type === EFI_SYSTEM_PARTITION });
  }
  return partitions;
}

/** Logical partitions: a chain of extended boot records, each relative to the extended partition. */
async function readLogical(disk: ByteSource, extendedStart: number): Promise<Partition[]> {
  const partitions: Partition[] = [];
  const seen = new Set<number>();
  let ebrAt = extendedStart;
  while (partitions.length < MAX_LOGICAL && !seen.has(ebrAt) && (ebrAt + 1) * SECTOR <= disk.size) {
    seen.add(ebrAt);
    const ebr = await disk.read(ebrAt * SECTOR, SECTOR);
    if (ebr.readUInt16LE(510) !== 0xaa55) break;
    const own = ebr.subarray(446, 462);
    const next = ebr.subarray(462, 478);
    const first = ebrAt + own.readUInt32LE(8);
    const count = own.readUInt32LE(12);
    if (own[4] !== 0 && count > 0 && (first + count) * SECTOR <= disk.size) {
      partitions.push({ number: 5 + partitions.length, start: first * SECTOR, size: count * SECTOR, type: hex(own[4]!), efiSystem: false });
    }
    if (next[4] === 0 || next.readUInt32LE(8) === 0) break;
    ebrAt = extendedStart + next.readUInt32LE(8);
  }
  return partitions;
}

const hex = (type: number) => type.toString(16).padStart(2, "0");

/** A GUID as text: the first three fields are little-endian on disk. */
function guid(bytes: Buffer): string {
  const h = bytes.toString("hex");
  const swap = (s: string) => s.match(/../g)!.reverse().join("");
  return `${swap(h.slice(0, 8))}-${swap(h.slice(8, 12))}-${swap(h.slice(12, 16))}-${h.slice(16, 20)}-${h.slice(20)}`;
}
