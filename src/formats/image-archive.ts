// The Kiln image archive: an AMI and the data of its snapshots as one stream, written by
// CreateStoreImageTask and read by CreateRestoreImageTask (docs/image-archive.md). It is written
// and read front to back, never held whole:
//
//   "KILNAMI\0"  u32 version  u32 manifest length  manifest (UTF-8 JSON)
//   per non-zero block, in snapshot then block order:
//     "B"  u32 snapshot  u32 block  SHA-256 of the data (32 bytes)  data (blockSize bytes)
//   "E"  digest (32 bytes)  "KILNEND\0"
//
// Every block is bound to its SHA-256, and the closing digest is the SHA-256 of every byte before
// it except block data, so it covers the manifest, every record and (through their hashes) every
// byte of data, for the cost of hashing each block once.
import { createHash, type Hash } from "node:crypto";

export const ARCHIVE_VERSION = 1;
export const MAGIC = Buffer.from("KILNAMI\0", "latin1");
export const END_MAGIC = Buffer.from("KILNEND\0", "latin1");
const MAX_MANIFEST_BYTES = 1024 * 1024;
const BLOCK_RECORD = 0x42; // "B"
const END_RECORD = 0x45; // "E"
const BLOCK_HEADER_BYTES = 1 + 4 + 4 + 32;

export interface ArchivedMapping {
  deviceName: string;
  virtualName?: string;
  noDevice?: boolean;
  ebs?: {
    /** Index into the manifest's snapshots. */
    snapshot?: number;
    volumeSize?: number;
    volumeType?: string;
    iops?: number;
    throughput?: number;
    deleteOnTermination?: boolean;
    encrypted?: boolean;
  };
}

export interface ArchiveManifest {
  format: "kiln-image-archive";
  version: number;
  blockSize: number;
  storedAt: string;
  image: {
    sourceImageId: string;
    sourceRegion: string;
    ownerId: string;
    name: string;
    description: string;
    architecture: string;
    virtualizationType: string;
    rootDeviceName: string;
    bootMode?: string;
    enaSupport: boolean;
    sriovNetSupport?: string;
    tpmSupport?: string;
    imdsSupport?: string;
    /** EC2's UEFI data (formats/uefi/aws-uefi-data.ts): the firmware variables the image boots with. */
    uefiData?: string;
    platform?: string;
    platformDetails?: string;
    usageOperation?: string;
    kernelId?: string;
    ramdiskId?: string;
    creationDate: string;
    blockDeviceMappings: ArchivedMapping[];
  };
  snapshots: { sourceSnapshotId: string; volumeSize: number; description: string; blocks: number }[];
}

export interface ArchivedBlock {
  snapshot: number;
  block: number;
  /** SHA-256 hex of the data, as the archive states it. */
  sha256: string;
  data: Buffer;
}

/** Why an archive cannot be read: foreign, wrong version, truncated or corrupted. */
export class ArchiveError extends Error {}

function u32(value: number): Buffer {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(value);
  return out;
}

/** The archive's bytes, produced as the blocks are; `onDigest` gets the closing digest. */
export async function* writeArchive(
  manifest: ArchiveManifest,
  blocks: AsyncIterable<ArchivedBlock>,
  onDigest?: (digest: Buffer) => void,
): AsyncGenerator<Buffer> {
  const digest = createHash("sha256");
  const emit = (part: Buffer) => {
    digest.update(part);
    return part;
  };
  const json = Buffer.from(JSON.stringify(manifest), "utf8");
  yield emit(Buffer.concat([MAGIC, u32(ARCHIVE_VERSION), u32(json.length), json]));
  for await (const block of blocks) {
    const header = Buffer.alloc(BLOCK_HEADER_BYTES);
    header[0] = BLOCK_RECORD;
    header.writeUInt32BE(block.snapshot, 1);
    header.writeUInt32BE(block.block, 5);
    Buffer.from(block.sha256, "hex").copy(header, 9);
    yield emit(header);
    yield block.data;
  }
  const end = Buffer.from([END_RECORD]);
  digest.update(end);
  const final = digest.digest();
  onDigest?.(final);
  yield Buffer.concat([end, final, END_MAGIC]);
}

/** Reads exact byte counts from a stream of buffers, keeping at most what one read needs. */
class ByteReader {
  private buffered: Buffer[] = [];
  private size = 0;
  private done = false;
  constructor(private readonly source: AsyncIterator<Buffer>) {}

  /** Exactly `n` bytes, or undefined if the stream ends first. */
  async read(n: number): Promise<Buffer | undefined> {
    while (this.size < n && !this.done) {
      const next = await this.source.next();
      if (next.done) this.done = true;
      else {
        this.buffered.push(next.value);
        this.size += next.value.length;
      }
    }
    if (this.size < n) return undefined;
    const all = this.buffered.length === 1 ? this.buffered[0]! : Buffer.concat(this.buffered, this.size);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.buffered = rest.length ? [rest] : [];
    this.size = rest.length;
    return out;
  }

  async atEnd(): Promise<boolean> {
    return (await this.read(1)) === undefined;
  }
}

function checkManifest(manifest: ArchiveManifest): ArchiveManifest {
  const bad = (what: string) => new ArchiveError(`the archive's manifest is invalid: ${what}`);
  if (manifest?.format !== "kiln-image-archive") throw bad("it is not a Kiln image archive manifest");
  if (manifest.blockSize !== 512 * 1024) throw bad(`block size ${manifest.blockSize} is not 524288`);
  if (!manifest.image || typeof manifest.image.name !== "string" || !Array.isArray(manifest.image.blockDeviceMappings)) throw bad("it has no image");
  if (!Array.isArray(manifest.snapshots)) throw bad("it has no snapshot list");
  if (manifest.image.uefiData !== undefined && typeof manifest.image.uefiData !== "string") throw bad("its UEFI data is not text");
  for (const snapshot of manifest.snapshots) {
    if (!Number.isInteger(snapshot.volumeSize) || snapshot.volumeSize < 1 || snapshot.volumeSize > 65536)
      throw bad(`a snapshot's size ${snapshot.volumeSize} GiB is out of range`);
    if (!Number.isInteger(snapshot.blocks) || snapshot.blocks < 0) throw bad("a snapshot's block count is not a count");
  }
  for (const mapping of manifest.image.blockDeviceMappings) {
    const index = mapping.ebs?.snapshot;
    if (index !== undefined && (!Number.isInteger(index) || index < 0 || index >= manifest.snapshots.length))
      throw bad(`device ${mapping.deviceName} names no snapshot of the archive`);
  }
  return manifest;
}

/** The manifest at the head of an archive (reads only that far). */
export async function readManifest(source: AsyncIterable<Buffer>): Promise<ArchiveManifest> {
  const iterator = source[Symbol.asyncIterator]();
  try {
    const { manifest } = await readHead(new ByteReader(iterator), createHash("sha256"));
    return manifest;
  } finally {
    await iterator.return?.();
  }
}

async function readHead(reader: ByteReader, digest: Hash): Promise<{ manifest: ArchiveManifest }> {
  const head = await reader.read(16);
  if (!head?.subarray(0, 8).equals(MAGIC)) throw new ArchiveError("the object is not a Kiln image archive");
  const version = head.readUInt32BE(8);
  if (version !== ARCHIVE_VERSION) throw new ArchiveError(`the archive is version ${version}; this Kiln reads version ${ARCHIVE_VERSION}`);
  const length = head.readUInt32BE(12);
  if (length > MAX_MANIFEST_BYTES) throw new ArchiveError("the archive's manifest is larger than 1 MiB");
  const json = await reader.read(length);
  if (!json) throw new ArchiveError("the archive is truncated in its manifest");
  digest.update(head).update(json);
  let parsed: ArchiveManifest;
  try {
    parsed = JSON.parse(json.toString("utf8")) as ArchiveManifest;
  } catch {
    throw new ArchiveError("the archive's manifest is not JSON");
  }
  return { manifest: checkManifest(parsed) };
}

/**
 * Reads an archive front to back: the manifest, then each block with the hash it states (the
 * reader checks the data against it: storing a block hashes it anyway). Throws
 * ArchiveError the moment anything is wrong: blocks out of order or out of range, a hash that does
 * not match, counts that differ from the manifest, a wrong digest, bytes missing or left over.
 */
export async function* readArchive(source: AsyncIterable<Buffer>): AsyncGenerator<ArchiveManifest | ArchivedBlock> {
  const reader = new ByteReader(source[Symbol.asyncIterator]());
  const digest = createHash("sha256");
  const { manifest } = await readHead(reader, digest);
  yield manifest;
  const counts = manifest.snapshots.map(() => 0);
  let previous = { snapshot: 0, block: -1 };
  for (;;) {
    const type = await reader.read(1);
    if (!type) throw new ArchiveError("the archive is truncated: it ends before its end record");
    if (type[0] === END_RECORD) {
      digest.update(type);
      const tail = await reader.read(40);
      if (!tail) throw new ArchiveError("the archive is truncated in its end record");
      if (!tail.subarray(32).equals(END_MAGIC)) throw new ArchiveError("the archive's end record is corrupted");
      if (!tail.subarray(0, 32).equals(digest.digest())) throw new ArchiveError("the archive's digest does not match its contents");
      counts.forEach((count, i) => {
        if (count !== manifest.snapshots[i]!.blocks)
          throw new ArchiveError(`snapshot ${i} of the archive has ${count} blocks; its manifest says ${manifest.snapshots[i]!.blocks}`);
      });
      if (!(await reader.atEnd())) throw new ArchiveError("the archive has bytes after its end record");
      return;
    }
    if (type[0] !== BLOCK_RECORD) throw new ArchiveError(`the archive is corrupted: record type ${type[0]} is unknown`);
    const rest = await reader.read(BLOCK_HEADER_BYTES - 1);
    if (!rest) throw new ArchiveError("the archive is truncated in a block record");
    digest.update(type).update(rest);
    const snapshot = rest.readUInt32BE(0);
    const block = rest.readUInt32BE(4);
    const sha256 = rest.subarray(8, 40).toString("hex");
    const described = manifest.snapshots[snapshot];
    if (!described) throw new ArchiveError(`the archive is corrupted: a block names snapshot ${snapshot}, which it does not hold`);
    if (block >= (described.volumeSize * 1024 ** 3) / manifest.blockSize)
      throw new ArchiveError(`the archive is corrupted: block ${block} is past the end of snapshot ${snapshot}`);
    if (snapshot < previous.snapshot || (snapshot === previous.snapshot && block <= previous.block))
      throw new ArchiveError("the archive is corrupted: its blocks are out of order");
    previous = { snapshot, block };
    const data = await reader.read(manifest.blockSize);
    if (!data) throw new ArchiveError("the archive is truncated in a block's data");
    counts[snapshot]!++;
    yield { snapshot, block, sha256, data };
  }
}
