// btrfs, read-only and just enough to read a few small files by path. Everything below follows
// the on-disk format as btrfs.readthedocs.io ("On-disk format") and the kernel's
// include/uapi/linux/btrfs_tree.h / fs/btrfs/ctree.h lay it out:
//
//   superblock (64 KiB)  ->  sys_chunk_array: enough chunks to read the chunk tree
//   chunk tree           ->  every chunk: logical range -> stripes on devices
//   root tree            ->  ROOT_ITEM of the default subvolume (normally FS_TREE, id 5)
//   fs tree              ->  INODE_ITEM, DIR_ITEM (keyed by name hash), EXTENT_DATA
//
// Every tree block is checked before use (checksum, its own address, fsid, level, generation,
// item bounds, key order), every logical address must land in a chunk and on this device, and
// every walk is bounded, so a hostile image costs a few thousand block reads at most.
import { createHash } from "node:crypto";
import { inflateRawSync } from "node:zlib";
import { Xxh64 } from "@aws-sdk/checksums/xxh";
import type { ByteSource } from "../../formats/disk/source.js";
import { FS_LIMITS, FileSystemError, type FileSystem, type FileSystemOpener } from "./filesystem.js";

const SUPERBLOCK_OFFSET = 0x10000;
const SUPERBLOCK_BYTES = 4096;
const MAGIC = Buffer.from("_BHRfS_M", "latin1");
/** struct btrfs_super_block: sys_chunk_array[BTRFS_SYSTEM_CHUNK_ARRAY_SIZE] at 0x32b. */
const SYS_CHUNK_ARRAY_OFFSET = 0x32b;
const SYS_CHUNK_ARRAY_MAX = 2048;
/** BTRFS_MAX_LEVEL: a tree has at most 8 levels (0 = leaves). */
const MAX_LEVEL = Math.min(8, FS_LIMITS.treeDepth);
/** Tree blocks one open or one readFile may visit; a real lookup needs a handful. */
const WALK_BLOCKS = 4096;
/** Verified tree blocks kept, so repeated lookups do not reread the upper levels. */
const CACHED_BLOCKS = 64;
/** BTRFS_MAX_COMPRESSED / BTRFS_MAX_UNCOMPRESSED: a compressed extent is at most 128 KiB either way. */
const MAX_COMPRESSED_BYTES = 128 * 1024;
/** PATH_MAX: a longer symlink target is not one Linux would follow. */
const MAX_SYMLINK_BYTES = 4095;

// Item key types (btrfs_tree.h).
const INODE_ITEM = 1;
const DIR_ITEM = 84;
const EXTENT_DATA = 108;
const ROOT_ITEM = 132;
const CHUNK_ITEM = 228;

// Well-known object ids (btrfs_tree.h).
const FS_TREE_OBJECTID = 5n;
const ROOT_TREE_DIR_OBJECTID = 6n;
const FIRST_CHUNK_TREE_OBJECTID = 256n;

// struct btrfs_header is 101 bytes; then struct btrfs_item (25) per leaf item or struct
// btrfs_key_ptr (33) per node pointer. A leaf item's offset counts from the end of the header.
const HEADER_BYTES = 101;
const ITEM_BYTES = 25;
const KEY_PTR_BYTES = 33;
const KEY_BYTES = 17;

// Chunk type bits (BTRFS_BLOCK_GROUP_*): the profiles that spread one copy over several devices.
const STRIPED_PROFILES: [number, string][] = [
  [1 << 3, "RAID0"],
  [1 << 6, "RAID10"],
  [1 << 7, "RAID5"],
  [1 << 8, "RAID6"],
];

// Incompat features that change how the trees are found or addresses mapped.
const INCOMPAT_METADATA_UUID = 1n << 10n;
const INCOMPAT_EXTENT_TREE_V2 = 1n << 13n;
const INCOMPAT_RAID_STRIPE_TREE = 1n << 14n;

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;

interface Key {
  objectid: bigint;
  type: number;
  offset: bigint;
}

interface Item {
  key: Key;
  data: Buffer;
}

interface TreeBlock {
  logical: bigint;
  level: number;
  generation: bigint;
  /** Leaves: each item's key; nodes: the first key of each child. */
  keys: Key[];
  items: Item[];
  children: { logical: bigint; generation: bigint }[];
}

interface TreeRoot {
  logical: bigint;
  level: number;
}

interface Subvolume {
  tree: TreeRoot;
  /** The inode of the subvolume's top directory (root_dirid, normally 256). */
  dirid: bigint;
}

interface Chunk {
  logical: number;
  length: number;
  type: number;
  stripes: { devid: bigint; offset: number }[];
}

interface Inode {
  mode: number;
  size: number;
}

// CRC-32C (Castagnoli, reflected 0x82f63b78) from a given seed, without the final inversion: the
// kernel's crc32c(seed, data, len). The checksums package's Crc32c always starts from ~0, and the
// directory name hash needs seed ~1, so the table lives here.
const CRC32C_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let j = 0; j < 8; j++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    table[i] = c >>> 0;
  }
  return table;
})();

function crc32c(seed: number, data: Uint8Array): number {
  let crc = seed >>> 0;
  for (let i = 0; i < data.length; i++) crc = (crc >>> 8) ^ CRC32C_TABLE[(crc ^ data[i]!) & 0xff]!;
  return crc >>> 0;
}

/** btrfs_name_hash(): crc32c((u32)~1, name, len), the offset of a DIR_ITEM key. */
export function btrfsNameHash(name: Uint8Array): number {
  return crc32c(0xfffffffe, name);
}

function compareKeys(a: Key, b: Key): number {
  if (a.objectid !== b.objectid) return a.objectid < b.objectid ? -1 : 1;
  if (a.type !== b.type) return a.type - b.type;
  return a.offset === b.offset ? 0 : a.offset < b.offset ? -1 : 1;
}

/** struct btrfs_disk_key: __le64 objectid, u8 type, __le64 offset. */
function readKey(bytes: Buffer, at: number): Key {
  return { objectid: bytes.readBigUInt64LE(at), type: bytes[at + 8]!, offset: bytes.readBigUInt64LE(at + 9) };
}

/** A u64 field used as a byte count or address; beyond 2^53 it is no real disk's. */
function safe(value: bigint, what: string): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new FileSystemError(`btrfs ${what} is out of range (${value})`);
  return Number(value);
}

/** Counts tree blocks visited, so no walk, however the trees are wired, runs unbounded. */
class Budget {
  private left = WALK_BLOCKS;
  spend(): void {
    if (--this.left < 0) throw new FileSystemError(`btrfs metadata walk visited more than ${WALK_BLOCKS} tree blocks`);
  }
}

type Checksum = (data: Buffer) => Promise<Buffer>;

/** The csum_type of the superblock (BTRFS_CSUM_TYPE_*); each digest is stored little-endian. */
function checksumFor(type: number): { size: number; digest: Checksum } {
  switch (type) {
    case 0:
      return {
        size: 4,
        digest: async (data) => {
          const out = Buffer.alloc(4);
          out.writeUInt32LE((crc32c(0xffffffff, data) ^ 0xffffffff) >>> 0);
          return out;
        },
      };
    case 1:
      return {
        size: 8,
        digest: async (data) => {
          const hash = new Xxh64();
          hash.update(data);
          // The package gives the canonical (big-endian) form; btrfs stores the u64 little-endian.
          return Buffer.from(await hash.digest()).reverse();
        },
      };
    case 2:
      return { size: 32, digest: async (data) => createHash("sha256").update(data).digest() };
    case 3:
      throw new FileSystemError("btrfs checksum type blake2b is not supported");
    default:
      throw new FileSystemError(`btrfs checksum type ${type} is unknown`);
  }
}

/**
 * Reads the superblock at 64 KiB; undefined when its magic is not "_BHRfS_M". Only the primary
 * superblock is read: the mirrors at 64 MiB and 256 GiB are copies for repair tools.
 */
export const openBtrfs: FileSystemOpener = async (source) => {
  if (source.size < SUPERBLOCK_OFFSET + SUPERBLOCK_BYTES) return undefined;
  const sb = await source.read(SUPERBLOCK_OFFSET, SUPERBLOCK_BYTES);
  if (!sb.subarray(0x40, 0x48).equals(MAGIC)) return undefined;

  const { size: csumSize, digest } = checksumFor(sb.readUInt16LE(0xc4));
  if (!(await digest(sb.subarray(0x20))).equals(sb.subarray(0, csumSize))) throw new FileSystemError("btrfs superblock has a bad checksum");
  if (sb.readBigUInt64LE(0x30) !== BigInt(SUPERBLOCK_OFFSET)) throw new FileSystemError("btrfs superblock does not say it is at 64 KiB");

  const numDevices = sb.readBigUInt64LE(0x88);
  if (numDevices !== 1n) throw new FileSystemError(`btrfs spans ${numDevices} devices; Kiln reads single-device file systems only`);
  const sectorSize = sb.readUInt32LE(0x90);
  const nodeSize = sb.readUInt32LE(0x94);
  const powerOfTwo = (n: number) => n > 0 && (n & (n - 1)) === 0;
  if (!powerOfTwo(sectorSize) || sectorSize < 4096 || sectorSize > 65536)
    throw new FileSystemError(`btrfs sector size ${sectorSize} is not a power of two from 4096 to 65536`);
  if (!powerOfTwo(nodeSize) || nodeSize < sectorSize || nodeSize > 65536)
    throw new FileSystemError(`btrfs node size ${nodeSize} is not a power of two from the sector size to 65536`);

  const incompat = sb.readBigUInt64LE(0xbc);
  if (incompat & INCOMPAT_EXTENT_TREE_V2) throw new FileSystemError("btrfs extent-tree-v2 is not supported");
  if (incompat & INCOMPAT_RAID_STRIPE_TREE) throw new FileSystemError("btrfs raid-stripe-tree is not supported");
  // With METADATA_UUID, tree block headers carry metadata_uuid instead of the (changed) fsid.
  const fsid = Buffer.from(incompat & INCOMPAT_METADATA_UUID ? sb.subarray(0x23b, 0x24b) : sb.subarray(0x20, 0x30));

  const rootLevel = sb[0xc6]!;
  const chunkRootLevel = sb[0xc7]!;
  // struct btrfs_dev_item starts at 0xc9 with its devid: the device this image is.
  const devid = sb.readBigUInt64LE(0xc9);

  const arraySize = sb.readUInt32LE(0xa0);
  if (arraySize > SYS_CHUNK_ARRAY_MAX) throw new FileSystemError(`btrfs superblock's chunk array is ${arraySize} bytes, more than ${SYS_CHUNK_ARRAY_MAX}`);
  const array = sb.subarray(SYS_CHUNK_ARRAY_OFFSET, SYS_CHUNK_ARRAY_OFFSET + arraySize);
  const bootstrap: Chunk[] = [];
  // The array is (struct btrfs_disk_key, struct btrfs_chunk with its stripes) pairs.
  for (let at = 0; at < array.length; ) {
    if (at + KEY_BYTES > array.length) throw new FileSystemError("btrfs superblock's chunk array ends inside a key");
    const key = readKey(array, at);
    if (key.type !== CHUNK_ITEM) throw new FileSystemError(`btrfs superblock's chunk array holds a key of type ${key.type}`);
    const chunk = parseChunk(array.subarray(at + KEY_BYTES), key.offset, "superblock's chunk array");
    bootstrap.push(chunk);
    at += KEY_BYTES + 48 + 32 * chunk.stripes.length;
  }
  if (!bootstrap.length) throw new FileSystemError("btrfs superblock's chunk array is empty");

  const fs = new Btrfs(source, { nodeSize, csumSize, digest, fsid, devid }, bootstrap);
  await fs.loadChunks({ logical: sb.readBigUInt64LE(0x58), level: chunkRootLevel });
  await fs.findDefaultSubvolume({ logical: sb.readBigUInt64LE(0x50), level: rootLevel });
  return fs;
};

/** struct btrfs_chunk (48 bytes) and its num_stripes struct btrfs_stripe (32 bytes each). */
function parseChunk(bytes: Buffer, logical: bigint, where: string): Chunk {
  if (bytes.length < 48) throw new FileSystemError(`btrfs chunk at logical ${logical} in the ${where} is cut short`);
  const stripeCount = bytes.readUInt16LE(0x2c);
  if (stripeCount === 0 || 48 + 32 * stripeCount > bytes.length)
    throw new FileSystemError(`btrfs chunk at logical ${logical} in the ${where} claims ${stripeCount} stripes`);
  const length = safe(bytes.readBigUInt64LE(0), "chunk length");
  const start = safe(logical, "chunk address");
  if (length === 0 || !Number.isSafeInteger(start + length)) throw new FileSystemError(`btrfs chunk at logical ${logical} has length ${length}`);
  const stripes = [];
  for (let i = 0; i < stripeCount; i++) {
    const at = 48 + 32 * i;
    stripes.push({ devid: bytes.readBigUInt64LE(at), offset: safe(bytes.readBigUInt64LE(at + 8), "stripe offset") });
  }
  return { logical: start, length, type: safe(bytes.readBigUInt64LE(0x18), "chunk type"), stripes };
}

class Btrfs implements FileSystem {
  readonly type = "btrfs" as const;
  private chunks: Chunk[] = [];
  private readonly cache = new Map<bigint, TreeBlock>();
  private rootTree!: TreeRoot;
  private top!: Subvolume;
  private readonly subvolumes = new Map<bigint, Subvolume>();

  constructor(
    private readonly source: ByteSource,
    private readonly sb: { nodeSize: number; csumSize: number; digest: Checksum; fsid: Buffer; devid: bigint },
    bootstrap: Chunk[],
  ) {
    this.setChunks(bootstrap);
  }

  private setChunks(chunks: Chunk[]): void {
    const sorted = [...chunks].sort((a, b) => a.logical - b.logical);
    for (let i = 1; i < sorted.length; i++) {
      const before = sorted[i - 1]!;
      if (before.logical + before.length > sorted[i]!.logical)
        throw new FileSystemError(`btrfs chunks at logical ${before.logical} and ${sorted[i]!.logical} overlap`);
    }
    this.chunks = sorted;
  }

  /** Reads every CHUNK_ITEM of the chunk tree (key FIRST_CHUNK_TREE_OBJECTID, CHUNK_ITEM, logical). */
  async loadChunks(root: TreeRoot): Promise<void> {
    const budget = new Budget();
    const chunks: Chunk[] = [];
    for await (const item of this.walk(root, { objectid: FIRST_CHUNK_TREE_OBJECTID, type: CHUNK_ITEM, offset: 0n }, budget)) {
      if (item.key.objectid !== FIRST_CHUNK_TREE_OBJECTID || item.key.type !== CHUNK_ITEM) break;
      chunks.push(parseChunk(item.data, item.key.offset, "chunk tree"));
    }
    if (!chunks.length) throw new FileSystemError("btrfs chunk tree holds no chunks");
    this.setChunks(chunks);
  }

  /**
   * The subvolume a plain mount shows: the root tree directory (objectid 6) names it "default";
   * without that entry it is FS_TREE.
   */
  async findDefaultSubvolume(rootTree: TreeRoot): Promise<void> {
    this.rootTree = rootTree;
    const budget = new Budget();
    const entry = await this.lookup(rootTree, ROOT_TREE_DIR_OBJECTID, Buffer.from("default"), budget);
    const id = entry?.type === ROOT_ITEM ? entry.objectid : FS_TREE_OBJECTID;
    this.top = await this.subvolume(id, budget);
  }

  /** A subvolume's tree, from its ROOT_ITEM (key id, ROOT_ITEM, any offset) in the root tree. */
  private async subvolume(id: bigint, budget: Budget): Promise<Subvolume> {
    const known = this.subvolumes.get(id);
    if (known) return known;
    let found: Item | undefined;
    for await (const item of this.walk(this.rootTree, { objectid: id, type: ROOT_ITEM, offset: 0n }, budget)) {
      if (item.key.objectid === id && item.key.type === ROOT_ITEM) found = item;
      break;
    }
    if (!found) throw new FileSystemError(`btrfs root tree has no subvolume ${id}`);
    // struct btrfs_root_item: inode item (160), generation, root_dirid at 168, bytenr at 176, ... level at 238.
    if (found.data.length < 239) throw new FileSystemError(`btrfs root item of subvolume ${id} is cut short`);
    const subvolume = { tree: { logical: found.data.readBigUInt64LE(176), level: found.data[238]! }, dirid: found.data.readBigUInt64LE(168) };
    this.subvolumes.set(id, subvolume);
    return subvolume;
  }

  async readFile(path: string, maxBytes: number): Promise<Buffer | undefined> {
    const budget = new Budget();
    let pending = path.split("/");
    if (pending.length > FS_LIMITS.pathComponents) throw new FileSystemError(`path ${path} has more than ${FS_LIMITS.pathComponents} components`);
    // The directories walked so far, so ".." needs no INODE_REF: the walk is always lexical.
    let stack: { subvolume: Subvolume; ino: bigint }[] = [{ subvolume: this.top, ino: this.top.dirid }];
    let hops = 0;
    while (pending.length) {
      const name = pending.shift()!;
      if (name === "" || name === ".") continue;
      if (name === "..") {
        if (stack.length > 1) stack.pop();
        continue;
      }
      const dir = stack[stack.length - 1]!;
      const entry = await this.lookup(dir.subvolume.tree, dir.ino, Buffer.from(name, "utf8"), budget);
      if (!entry) return undefined;
      let next: { subvolume: Subvolume; ino: bigint };
      if (entry.type === ROOT_ITEM) {
        // A subvolume's entry points at its ROOT_ITEM; its top directory is root_dirid there.
        const subvolume = await this.subvolume(entry.objectid, budget);
        next = { subvolume, ino: subvolume.dirid };
      } else if (entry.type === INODE_ITEM) {
        next = { subvolume: dir.subvolume, ino: entry.objectid };
      } else {
        throw new FileSystemError(`btrfs directory entry ${name} points to a key of type ${entry.type}`);
      }
      const inode = await this.inode(next.subvolume.tree, next.ino, budget);
      if (!inode) throw new FileSystemError(`btrfs directory entry ${name} points to missing inode ${next.ino}`);
      switch (inode.mode & S_IFMT) {
        case S_IFDIR:
          stack.push(next);
          break;
        case S_IFLNK: {
          if (++hops > FS_LIMITS.symlinkHops) throw new FileSystemError(`btrfs symbolic links nest deeper than ${FS_LIMITS.symlinkHops} at ${path}`);
          if (inode.size === 0 || inode.size > MAX_SYMLINK_BYTES) throw new FileSystemError(`btrfs symbolic link ${name} is ${inode.size} bytes long`);
          const target = (await this.readData(next.subvolume.tree, next.ino, inode.size, inode.size, budget)).toString("utf8");
          if (target.startsWith("/")) stack = [stack[0]!];
          pending = [...target.split("/"), ...pending];
          if (pending.length > FS_LIMITS.pathComponents)
            throw new FileSystemError(`btrfs symbolic link ${name} makes ${path} longer than ${FS_LIMITS.pathComponents} components`);
          break;
        }
        case S_IFREG:
          // A regular file in the middle of a path is ENOTDIR: no such file.
          if (pending.some((rest) => rest !== "")) return undefined;
          return this.readData(next.subvolume.tree, next.ino, inode.size, maxBytes, budget);
        default:
          return undefined;
      }
    }
    return undefined;
  }

  /**
   * The location key of `name` in directory `dir`: the DIR_ITEM at (dir, DIR_ITEM,
   * btrfs_name_hash(name)) holds every entry whose name has that hash, each a struct
   * btrfs_dir_item (location key, transid, data_len, name_len, type) followed by name and data.
   */
  private async lookup(tree: TreeRoot, dir: bigint, name: Buffer, budget: Budget): Promise<Key | undefined> {
    if (name.length > 255) return undefined;
    const item = await this.find(tree, { objectid: dir, type: DIR_ITEM, offset: BigInt(btrfsNameHash(name)) }, budget);
    if (!item) return undefined;
    const data = item.data;
    for (let at = 0; at < data.length; ) {
      if (at + 30 > data.length) throw new FileSystemError(`btrfs directory item in inode ${dir} is cut short`);
      const dataLength = data.readUInt16LE(at + 25);
      const nameLength = data.readUInt16LE(at + 27);
      const end = at + 30 + nameLength + dataLength;
      if (end > data.length) throw new FileSystemError(`btrfs directory item in inode ${dir} runs past its item`);
      if (data.subarray(at + 30, at + 30 + nameLength).equals(name)) return readKey(data, at);
      at = end;
    }
    return undefined;
  }

  /** struct btrfs_inode_item: size at 16, mode at 52. */
  private async inode(tree: TreeRoot, ino: bigint, budget: Budget): Promise<Inode | undefined> {
    const item = await this.find(tree, { objectid: ino, type: INODE_ITEM, offset: 0n }, budget);
    if (!item) return undefined;
    if (item.data.length < 160) throw new FileSystemError(`btrfs inode item ${ino} is cut short`);
    return { mode: item.data.readUInt32LE(52), size: safe(item.data.readBigUInt64LE(16), `size of inode ${ino}`) };
  }

  /**
   * The first min(size, maxBytes) bytes of inode `ino`, from its EXTENT_DATA items (key: ino,
   * EXTENT_DATA, file offset), each a struct btrfs_file_extent_item. Bytes no extent covers are
   * holes (NO_HOLES file systems do not record them) and read as zeros.
   */
  private async readData(tree: TreeRoot, ino: bigint, size: number, maxBytes: number, budget: Budget): Promise<Buffer> {
    const want = Math.max(0, Math.floor(Math.min(size, maxBytes)));
    const out = Buffer.alloc(want);
    if (want === 0) return out;
    let covered = 0;
    for await (const item of this.walk(tree, { objectid: ino, type: EXTENT_DATA, offset: 0n }, budget)) {
      if (item.key.objectid !== ino || item.key.type !== EXTENT_DATA) break;
      const start = safe(item.key.offset, `file offset in inode ${ino}`);
      if (start >= want) break;
      const where = `extent of inode ${ino} at file offset ${start}`;
      // Extents never overlap; requiring each to start past the last also bounds the loop.
      if (start < covered) throw new FileSystemError(`btrfs ${where} overlaps the one before`);
      const data = item.data;
      if (data.length < 21) throw new FileSystemError(`btrfs ${where} is cut short`);
      // generation u64, ram_bytes u64 at 8, compression u8 at 16, encryption u8 at 17,
      // other_encoding u16 at 18, type u8 at 20 (0 inline, 1 regular, 2 prealloc).
      const ramBytes = safe(data.readBigUInt64LE(8), `${where}: size`);
      const compression = data[16]!;
      if (data[17] !== 0 || data.readUInt16LE(18) !== 0) throw new FileSystemError(`btrfs ${where} is encrypted or encoded`);
      const kind = data[20]!;
      if (kind === 0) {
        // Inline: the (possibly compressed) bytes follow the 21-byte header inside the leaf.
        const inline = data.subarray(21);
        const plain = compression === 0 ? inline : this.decompress(compression, inline, ramBytes, where);
        if (plain.length === 0) throw new FileSystemError(`btrfs ${where} is empty`);
        plain.copy(out, start, 0, Math.min(plain.length, want - start));
        covered = start + plain.length;
        continue;
      }
      if (kind !== 1 && kind !== 2) throw new FileSystemError(`btrfs ${where} has type ${kind}`);
      if (data.length < 53) throw new FileSystemError(`btrfs ${where} is cut short`);
      // disk_bytenr at 21, disk_num_bytes at 29, offset at 37, num_bytes at 45.
      const diskBytenr = data.readBigUInt64LE(21);
      const diskBytes = safe(data.readBigUInt64LE(29), `${where}: disk size`);
      const offset = safe(data.readBigUInt64LE(37), `${where}: offset`);
      const bytes = safe(data.readBigUInt64LE(45), `${where}: length`);
      if (bytes === 0) throw new FileSystemError(`btrfs ${where} is empty`);
      covered = start + bytes;
      // Prealloc extents and disk_bytenr 0 (an explicit hole) read as zeros.
      if (kind === 2 || diskBytenr === 0n) continue;
      const take = Math.min(bytes, want - start);
      if (compression === 0) {
        if (offset + bytes > diskBytes) throw new FileSystemError(`btrfs ${where} reads past its disk extent`);
        (await this.readLogical(diskBytenr + BigInt(offset), take)).copy(out, start);
      } else {
        // The whole disk extent is one compressed stream of ram_bytes; offset and num_bytes
        // select from the decompressed bytes.
        if (diskBytes > MAX_COMPRESSED_BYTES || ramBytes > MAX_COMPRESSED_BYTES) throw new FileSystemError(`btrfs ${where} is compressed beyond 128 KiB`);
        if (offset + bytes > ramBytes) throw new FileSystemError(`btrfs ${where} reads past its decompressed size`);
        this.checkCompression(compression);
        const plain = this.decompress(compression, await this.readLogical(diskBytenr, diskBytes), ramBytes, where);
        plain.copy(out, start, offset, offset + take);
      }
    }
    return out;
  }

  private checkCompression(compression: number): void {
    // BTRFS_COMPRESS_*: 1 zlib, 2 lzo, 3 zstd.
    if (compression === 1) return;
    const kind = compression === 2 ? "lzo" : compression === 3 ? "zstd" : `type ${compression}`;
    throw new FileSystemError(`btrfs ${kind} compression is not supported`);
  }

  /** Exactly ramBytes bytes (zero-padded, as the kernel does) inflated from `compressed`. */
  private decompress(compression: number, compressed: Buffer, ramBytes: number, where: string): Buffer {
    this.checkCompression(compression);
    if (ramBytes === 0 || ramBytes > MAX_COMPRESSED_BYTES) throw new FileSystemError(`btrfs ${where} claims ${ramBytes} decompressed bytes`);
    // fs/btrfs/zlib.c: a stream with a zlib header (no preset dictionary) is inflated raw after
    // the 2-byte header, so the trailing adler32 and any padding to the sector are not checked.
    const cmf = compressed[0] ?? 0;
    const flg = compressed[1] ?? 0;
    if ((cmf & 0x0f) !== 8 || ((cmf << 8) | flg) % 31 !== 0 || flg & 0x20) throw new FileSystemError(`btrfs ${where} is not a zlib stream`);
    let plain: Buffer;
    try {
      plain = inflateRawSync(compressed.subarray(2), { maxOutputLength: ramBytes });
    } catch {
      throw new FileSystemError(`btrfs ${where} has corrupt or oversized zlib data`);
    }
    if (plain.length === ramBytes) return plain;
    const padded = Buffer.alloc(ramBytes);
    plain.copy(padded);
    return padded;
  }

  /** The first item at or after `key`, if its key is exactly `key`. */
  private async find(tree: TreeRoot, key: Key, budget: Budget): Promise<Item | undefined> {
    for await (const item of this.walk(tree, key, budget)) return compareKeys(item.key, key) === 0 ? item : undefined;
    return undefined;
  }

  /**
   * Every item of a tree from the first key at or after `from`, in key order; the caller stops
   * when the keys leave the range it wants. Keys must rise strictly across leaves too, so a tree
   * that points twice at one block cannot make the walk repeat itself.
   */
  private async *walk(root: TreeRoot, from: Key, budget: Budget): AsyncGenerator<Item> {
    if (root.level >= MAX_LEVEL)
      throw new FileSystemError(`btrfs tree at logical ${root.logical} claims level ${root.level}, beyond the ${MAX_LEVEL} levels btrfs allows`);
    const path: { block: TreeBlock; slot: number }[] = [];
    let block = await this.treeBlock(root.logical, root.level, undefined, budget);
    while (block.level > 0) {
      // The last child whose first key is at or below `from`.
      let slot = 0;
      while (slot + 1 < block.keys.length && compareKeys(block.keys[slot + 1]!, from) <= 0) slot++;
      path.push({ block, slot });
      block = await this.child(block, slot, budget);
    }
    let slot = 0;
    while (slot < block.items.length && compareKeys(block.items[slot]!.key, from) < 0) slot++;
    let previous: Key | undefined;
    for (;;) {
      for (; slot < block.items.length; slot++) {
        const item = block.items[slot]!;
        if (previous && compareKeys(previous, item.key) >= 0) throw new FileSystemError(`btrfs tree at logical ${root.logical} has its keys out of order`);
        previous = item.key;
        yield item;
      }
      let depth = path.length - 1;
      while (depth >= 0 && path[depth]!.slot + 1 >= path[depth]!.block.keys.length) depth--;
      if (depth < 0) return;
      path.length = depth + 1;
      const parent = path[depth]!;
      parent.slot++;
      block = await this.child(parent.block, parent.slot, budget);
      while (block.level > 0) {
        path.push({ block, slot: 0 });
        block = await this.child(block, 0, budget);
      }
      slot = 0;
    }
  }

  /** A node's child, which must start with the key the node gives for it (as the kernel checks). */
  private async child(parent: TreeBlock, slot: number, budget: Budget): Promise<TreeBlock> {
    const pointer = parent.children[slot]!;
    const child = await this.treeBlock(pointer.logical, parent.level - 1, pointer.generation, budget);
    const first = child.keys[0];
    if (!first || compareKeys(first, parent.keys[slot]!) !== 0)
      throw new FileSystemError(`btrfs tree block at logical ${pointer.logical} does not start with the key its parent gives`);
    return child;
  }

  /**
   * The tree block at `logical`, verified. With DUP (or RAID1 on one device) a copy that fails
   * its checks is skipped for the next, as the kernel does; all of them failing is an error.
   */
  private async treeBlock(logical: bigint, level: number, generation: bigint | undefined, budget: Budget): Promise<TreeBlock> {
    budget.spend();
    const cached = this.cache.get(logical);
    if (cached) {
      this.checkPlace(cached, level, generation);
      this.cache.delete(logical);
      this.cache.set(logical, cached);
      return cached;
    }
    let failure: unknown;
    for (const physical of this.locate(logical, this.sb.nodeSize)) {
      try {
        const block = await this.parseBlock(await this.source.read(physical, this.sb.nodeSize), logical);
        this.checkPlace(block, level, generation);
        this.cache.set(logical, block);
        if (this.cache.size > CACHED_BLOCKS) this.cache.delete(this.cache.keys().next().value!);
        return block;
      } catch (error) {
        if (!(error instanceof FileSystemError)) throw error;
        failure ??= error;
      }
    }
    throw failure;
  }

  private checkPlace(block: TreeBlock, level: number, generation: bigint | undefined): void {
    if (block.level !== level)
      throw new FileSystemError(`btrfs tree block at logical ${block.logical} is level ${block.level} where level ${level} was expected`);
    if (generation !== undefined && block.generation !== generation) {
      throw new FileSystemError(`btrfs tree block at logical ${block.logical} is generation ${block.generation} where its parent expects ${generation}`);
    }
  }

  /** struct btrfs_header: csum[32], fsid[16], bytenr, flags, chunk_tree_uuid[16], generation, owner, nritems u32, level u8. */
  private async parseBlock(bytes: Buffer, logical: bigint): Promise<TreeBlock> {
    const at = `btrfs tree block at logical ${logical}`;
    if (!(await this.sb.digest(bytes.subarray(0x20))).equals(bytes.subarray(0, this.sb.csumSize))) throw new FileSystemError(`${at} has a bad checksum`);
    if (bytes.readBigUInt64LE(0x30) !== logical) throw new FileSystemError(`${at} says it is at ${bytes.readBigUInt64LE(0x30)}`);
    if (!bytes.subarray(0x20, 0x30).equals(this.sb.fsid)) throw new FileSystemError(`${at} belongs to another file system`);
    const generation = bytes.readBigUInt64LE(0x50);
    const count = bytes.readUInt32LE(0x60);
    const level = bytes[0x64]!;
    const block: TreeBlock = { logical, level, generation, keys: [], items: [], children: [] };
    const room = this.sb.nodeSize - HEADER_BYTES;
    if (level === 0) {
      if (count * ITEM_BYTES > room) throw new FileSystemError(`${at} claims ${count} items, more than fit`);
      const dataStart = HEADER_BYTES + count * ITEM_BYTES;
      for (let i = 0; i < count; i++) {
        const base = HEADER_BYTES + i * ITEM_BYTES;
        const key = readKey(bytes, base);
        // struct btrfs_item: key, then offset and size of its data, counted from the header's end.
        const start = HEADER_BYTES + bytes.readUInt32LE(base + 17);
        const end = start + bytes.readUInt32LE(base + 21);
        if (start < dataStart || end > this.sb.nodeSize) throw new FileSystemError(`${at} has item ${i} outside the leaf`);
        block.keys.push(key);
        block.items.push({ key, data: bytes.subarray(start, end) });
      }
    } else {
      if (level >= MAX_LEVEL) throw new FileSystemError(`${at} claims level ${level}`);
      if (count === 0 || count * KEY_PTR_BYTES > room) throw new FileSystemError(`${at} claims ${count} pointers`);
      for (let i = 0; i < count; i++) {
        // struct btrfs_key_ptr: key, blockptr, generation.
        const base = HEADER_BYTES + i * KEY_PTR_BYTES;
        block.keys.push(readKey(bytes, base));
        block.children.push({ logical: bytes.readBigUInt64LE(base + 17), generation: bytes.readBigUInt64LE(base + 25) });
      }
    }
    for (let i = 1; i < block.keys.length; i++) {
      if (compareKeys(block.keys[i - 1]!, block.keys[i]!) >= 0) throw new FileSystemError(`${at} has its keys out of order`);
    }
    return block;
  }

  /**
   * Where [logical, logical + length) lies on this device: one offset per copy (one for single,
   * two for DUP). The range must sit inside one chunk (no tree block or extent crosses one) and
   * inside the device.
   */
  private locate(logical: bigint, length: number): number[] {
    const address = logical <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(logical) : -1;
    let low = 0;
    let high = this.chunks.length - 1;
    let chunk: Chunk | undefined;
    while (address >= 0 && low <= high) {
      const middle = (low + high) >> 1;
      const candidate = this.chunks[middle]!;
      if (address < candidate.logical) high = middle - 1;
      else if (address >= candidate.logical + candidate.length) low = middle + 1;
      else {
        chunk = candidate;
        break;
      }
    }
    if (!chunk) throw new FileSystemError(`btrfs logical address ${logical} lies in no chunk`);
    if (address + length > chunk.logical + chunk.length) throw new FileSystemError(`btrfs range at logical ${logical} runs past the end of its chunk`);
    const striped = STRIPED_PROFILES.find(([bit]) => chunk.type & bit);
    if (striped) throw new FileSystemError(`btrfs chunk at logical ${chunk.logical} uses the ${striped[1]} profile, which needs other devices`);
    // single, DUP, RAID1/1C3/1C4: every stripe is a whole copy at the same offset into it.
    const copies = chunk.stripes.filter((stripe) => stripe.devid === this.sb.devid);
    if (!copies.length) throw new FileSystemError(`btrfs chunk at logical ${chunk.logical} has no copy on this device`);
    const inside = copies.map((stripe) => stripe.offset + (address - chunk.logical)).filter((physical) => physical + length <= this.source.size);
    if (!inside.length) throw new FileSystemError(`btrfs logical address ${logical} maps past the end of the device`);
    return inside;
  }

  /** Data bytes at a logical address, from the first copy (data carries no checksum here). */
  private async readLogical(logical: bigint, length: number): Promise<Buffer> {
    return this.source.read(this.locate(logical, length)[0]!, length);
  }
}
