// ext2, ext3 and ext4, read-only and only as far as inspection needs: find a file by path and
// read its first bytes. The layout is the kernel's Documentation/filesystems/ext4/ (the structs
// are ext4_super_block, ext4_group_desc, ext4_inode, ext4_dir_entry_2 in fs/ext4/ext4.h and
// ext4_extent_header/_idx/ext4_extent in fs/ext4/ext4_extents.h). ext2 and ext3 are the same
// layout with fewer features, so one reader serves all three.
//
// Nothing here writes, and no checksum is verified: every block number, entry length and count
// is checked against the file system's bounds before it is used, which is what keeps a hostile
// image from costing more than the few blocks a lookup needs.
import type { ByteSource } from "../../formats/disk/source.js";
import { FileSystemError, FS_LIMITS, type FileSystem, type FileSystemOpener } from "./filesystem.js";

const SUPERBLOCK_OFFSET = 1024;
const SUPERBLOCK_BYTES = 1024;
const EXT_MAGIC = 0xef53;
const ROOT_INODE = 2;
const GOOD_OLD_INODE_SIZE = 128;

// s_feature_compat
const COMPAT_SPARSE_SUPER2 = 0x200;
// s_feature_ro_compat. A reader may ignore every read-only-compatible feature (that is what the
// class means); these few only tell where superblock backups and i_blocks units are.
const RO_COMPAT_SPARSE_SUPER = 0x1;
const RO_COMPAT_HUGE_FILE = 0x8;
const RO_COMPAT_GDT_CSUM = 0x10;
const RO_COMPAT_BIGALLOC = 0x200;
const RO_COMPAT_METADATA_CSUM = 0x400;
// s_feature_incompat: a bit Kiln does not know may move data it relies on, so it refuses it.
const INCOMPAT_COMPRESSION = 0x1;
const INCOMPAT_FILETYPE = 0x2;
const INCOMPAT_RECOVER = 0x4;
const INCOMPAT_JOURNAL_DEV = 0x8;
const INCOMPAT_META_BG = 0x10;
const INCOMPAT_EXTENTS = 0x40;
const INCOMPAT_64BIT = 0x80;
const INCOMPAT_MMP = 0x100;
const INCOMPAT_FLEX_BG = 0x200;
const INCOMPAT_EA_INODE = 0x400;
const INCOMPAT_DIRDATA = 0x1000;
const INCOMPAT_CSUM_SEED = 0x2000;
const INCOMPAT_LARGEDIR = 0x4000;
const INCOMPAT_INLINE_DATA = 0x8000;
const INCOMPAT_ENCRYPT = 0x10000;
const INCOMPAT_CASEFOLD = 0x20000;

// Why each accepted bit is harmless to a reader that only looks files up:
//  filetype     the ext4_dir_entry_2 type byte; name_len is then one byte.
//  recover      the journal holds transactions not yet replayed. Kiln reads the checkpointed
//               metadata, which is consistent as of the last checkpoint; what it misses are the
//               writes of the last seconds before the image was taken, never the release files
//               an installer wrote long before. Replaying would mean writing to the source.
//  meta_bg      descriptor blocks live in each meta group (descriptorBlock below).
//  extents, 64bit, inline_data   read below.
//  mmp          one reserved block guarding against two hosts mounting; nothing to read.
//  flex_bg      packs bitmaps and inode tables together; descriptors still locate them.
//  ea_inode     large xattr values in inodes of their own; only system.data is read, in-inode.
//  csum_seed    where the checksum seed comes from; checksums are not verified.
//  largedir     3-level htrees and directories over 2 GiB; the scan is linear and bounded.
const ACCEPTED_INCOMPAT =
  INCOMPAT_FILETYPE |
  INCOMPAT_RECOVER |
  INCOMPAT_META_BG |
  INCOMPAT_EXTENTS |
  INCOMPAT_64BIT |
  INCOMPAT_MMP |
  INCOMPAT_FLEX_BG |
  INCOMPAT_EA_INODE |
  INCOMPAT_CSUM_SEED |
  INCOMPAT_LARGEDIR |
  INCOMPAT_INLINE_DATA;
const REFUSED_INCOMPAT: [number, string][] = [
  [INCOMPAT_COMPRESSION, "compression"],
  [INCOMPAT_DIRDATA, "dirdata"],
  // Encrypted names and contents cannot be read without the key.
  [INCOMPAT_ENCRYPT, "encrypt"],
  // Case-folded directories match names by Unicode folding, which a byte compare gets wrong.
  [INCOMPAT_CASEFOLD, "casefold"],
];

// ext4_inode i_mode file types, and the ext4_dir_entry_2 file_type codes that name them.
const S_IFMT = 0xf000;
const S_IFREG = 0x8000;
const S_IFDIR = 0x4000;
const S_IFLNK = 0xa000;
const DIRENT_TYPES = [0, 0x8000, 0x4000, 0x2000, 0x6000, 0x1000, 0xc000, 0xa000];

// ext4_inode i_flags
const EXT4_HUGE_FILE_FL = 0x40000;
const EXT4_EXTENTS_FL = 0x80000;
const EXT4_INLINE_DATA_FL = 0x10000000;

// ext4_group_desc bg_flags: the group's inode table was never written (lazy_itable_init).
const EXT4_BG_INODE_UNINIT = 0x1;

const EXTENT_MAGIC = 0xf30a;
const EXTENT_ENTRY_BYTES = 12;
/** ee_len above this marks an uninitialised extent (allocated, reads as zeros). */
const EXT_INIT_MAX_LEN = 32768;
const I_BLOCK_OFFSET = 0x28;
const I_BLOCK_BYTES = 60;
const DIRECT_BLOCKS = 12;
/** EXT4_DIR_REC_LEN(1): the smallest directory entry. */
const MIN_REC_LEN = 12;
/** ext4_xattr_ibody_header h_magic, then the in-inode xattr entries. */
const XATTR_MAGIC = 0xea020000;
const XATTR_INDEX_SYSTEM = 7;
/** Blocks one read asks for, so a large file is read in pieces. */
const READ_CHUNK_BLOCKS = 256;
const INODE_CACHE = 256;
const PATH_MAX = 4096;

interface Geometry {
  blockSize: number;
  blocksCount: number;
  firstDataBlock: number;
  blocksPerGroup: number;
  inodesPerGroup: number;
  inodesCount: number;
  inodeSize: number;
  groups: number;
  descSize: number;
  /** Group descriptor blocks that the standard table would take: the meta_bg cut-off is in these. */
  descBlocks: number;
  firstMetaBg: number;
  clusterBytes: number;
  compat: number;
  incompat: number;
  roCompat: number;
  backupGroups: [number, number];
}

interface Inode {
  ino: number;
  raw: Buffer;
  mode: number;
  flags: number;
  size: number;
}

/** Physical blocks behind logical ones; physical 0 is a hole or an uninitialised extent. */
interface Run {
  logical: number;
  count: number;
  physical: number;
}

export const openExt: FileSystemOpener = async (source) => {
  if (source.size < SUPERBLOCK_OFFSET + SUPERBLOCK_BYTES) return undefined;
  const sb = await source.read(SUPERBLOCK_OFFSET, SUPERBLOCK_BYTES);
  if (sb.readUInt16LE(0x38) !== EXT_MAGIC) return undefined;
  const incompat = sb.readUInt32LE(0x60);
  // An external journal device carries the ext superblock but no inodes: there is no file
  // system on it to inspect, as there is none on swap.
  if (incompat & INCOMPAT_JOURNAL_DEV) return undefined;
  const reader = new ExtReader(source, geometry(sb, source.size));
  const root = await reader.inode(ROOT_INODE);
  if ((root.mode & S_IFMT) !== S_IFDIR) throw new FileSystemError("the root inode is not a directory");
  return reader;
};

function geometry(sb: Buffer, sourceSize: number): Geometry {
  const revision = sb.readUInt32LE(0x4c);
  if (revision > 1) throw new FileSystemError(`unknown ext revision ${revision}`);
  // Revision 0 (GOOD_OLD) has no feature fields to trust.
  const compat = revision === 0 ? 0 : sb.readUInt32LE(0x5c);
  const incompat = revision === 0 ? 0 : sb.readUInt32LE(0x60);
  const roCompat = revision === 0 ? 0 : sb.readUInt32LE(0x64);
  for (const [bit, name] of REFUSED_INCOMPAT) {
    if (incompat & bit) throw new FileSystemError(`ext feature ${name} is not supported`);
  }
  const unknown = incompat & ~ACCEPTED_INCOMPAT;
  if (unknown) throw new FileSystemError(`unknown ext incompatible features 0x${unknown.toString(16)}`);

  const logBlockSize = sb.readUInt32LE(0x18);
  // 1 KiB to 64 KiB (EXT4_MIN_BLOCK_LOG_SIZE..EXT4_MAX_BLOCK_LOG_SIZE).
  if (logBlockSize > 6) throw new FileSystemError(`absurd block size 2^${10 + logBlockSize}`);
  const blockSize = 1024 << logBlockSize;
  let clusterBytes = blockSize;
  if (roCompat & RO_COMPAT_BIGALLOC) {
    const logCluster = sb.readUInt32LE(0x1c);
    if (logCluster < logBlockSize || logCluster > 29) throw new FileSystemError(`absurd cluster size 2^${10 + logCluster}`);
    clusterBytes = 1024 * 2 ** logCluster;
  }

  const inodeSize = revision === 0 ? GOOD_OLD_INODE_SIZE : sb.readUInt16LE(0x58);
  if (inodeSize < GOOD_OLD_INODE_SIZE || inodeSize > blockSize || (inodeSize & (inodeSize - 1)) !== 0) {
    throw new FileSystemError(`absurd inode size ${inodeSize}`);
  }
  let descSize = 32;
  if (incompat & INCOMPAT_64BIT) {
    descSize = sb.readUInt16LE(0xfe);
    // EXT4_MIN_DESC_SIZE_64BIT..EXT4_MAX_DESC_SIZE, a power of two.
    if (descSize < 64 || descSize > 1024 || (descSize & (descSize - 1)) !== 0) throw new FileSystemError(`absurd group descriptor size ${descSize}`);
  }

  const blocksCount = sb.readUInt32LE(0x04) + (incompat & INCOMPAT_64BIT ? sb.readUInt32LE(0x150) * 2 ** 32 : 0);
  const firstDataBlock = sb.readUInt32LE(0x14);
  const blocksPerGroup = sb.readUInt32LE(0x20);
  const inodesPerGroup = sb.readUInt32LE(0x28);
  const inodesCount = sb.readUInt32LE(0x00);
  if (blocksCount === 0 || !Number.isSafeInteger(blocksCount * blockSize)) throw new FileSystemError(`absurd block count ${blocksCount}`);
  // The kernel refuses to mount one larger than its device ("bad geometry"), and so does Kiln:
  // every block number checked against the count is then inside the source.
  if (blocksCount * blockSize > sourceSize) {
    throw new FileSystemError(`the file system claims ${blocksCount} blocks of ${blockSize} bytes but its partition holds ${sourceSize} bytes`);
  }
  if (firstDataBlock > 1 || firstDataBlock >= blocksCount) throw new FileSystemError(`absurd first data block ${firstDataBlock}`);
  // One bitmap block describes a group, so a group holds at most 8 * blockSize blocks (clusters).
  const clusterRatio = clusterBytes / blockSize;
  if (blocksPerGroup < 8 || blocksPerGroup > 8 * blockSize * clusterRatio) throw new FileSystemError(`absurd blocks per group ${blocksPerGroup}`);
  if (inodesPerGroup < 1 || inodesPerGroup > 8 * blockSize) throw new FileSystemError(`absurd inodes per group ${inodesPerGroup}`);
  const groups = Math.ceil((blocksCount - firstDataBlock) / blocksPerGroup);
  if (inodesCount < ROOT_INODE || inodesCount > groups * inodesPerGroup) {
    throw new FileSystemError(`${inodesCount} inodes do not fit ${groups} groups of ${inodesPerGroup}`);
  }
  const descBlocks = Math.ceil(groups / (blockSize / descSize));
  const firstMetaBg = incompat & INCOMPAT_META_BG ? sb.readUInt32LE(0x104) : descBlocks;
  if (firstMetaBg > descBlocks) throw new FileSystemError(`first meta block group ${firstMetaBg} is past the last`);
  return {
    blockSize,
    blocksCount,
    firstDataBlock,
    blocksPerGroup,
    inodesPerGroup,
    inodesCount,
    inodeSize,
    groups,
    descSize,
    descBlocks,
    firstMetaBg,
    clusterBytes,
    compat,
    incompat,
    roCompat,
    backupGroups: [sb.readUInt32LE(0x24c), sb.readUInt32LE(0x250)],
  };
}

class ExtReader implements FileSystem {
  readonly type = "ext";
  private readonly inodeTables = new Map<number, { table: number; initialised: number }>();
  private readonly inodes = new Map<number, Inode>();

  constructor(
    private readonly source: ByteSource,
    private readonly g: Geometry,
  ) {}

  async readFile(path: string, maxBytes: number): Promise<Buffer | undefined> {
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) throw new RangeError(`maxBytes must be a non-negative integer, not ${maxBytes}`);
    const ino = await this.resolve(path);
    if (ino === undefined) return undefined;
    const inode = await this.inode(ino);
    if ((inode.mode & S_IFMT) !== S_IFREG) return undefined;
    return this.content(inode, Math.min(inode.size, maxBytes));
  }

  /** The inode `path` names (from the root, whether or not it starts with "/"), links followed. */
  private async resolve(path: string): Promise<number | undefined> {
    const pending = components(Buffer.from(path, "utf8"));
    if (pending.length > FS_LIMITS.pathComponents) throw new RangeError(`${path} has more than ${FS_LIMITS.pathComponents} components`);
    // Only real directories are pushed, so ".." is a pop, as the kernel's walk gives it.
    const dirs = [ROOT_INODE];
    let hops = 0;
    let steps = 0;
    while (pending.length > 0) {
      if (++steps > FS_LIMITS.pathComponents * (FS_LIMITS.symlinkHops + 1)) throw new FileSystemError(`resolving ${path} takes too many steps`);
      const name = pending.shift()!;
      if (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e) {
        if (dirs.length > 1) dirs.pop();
        continue;
      }
      const dir = await this.inode(dirs[dirs.length - 1]!);
      const entry = await this.lookup(dir, name);
      if (entry === undefined) return undefined;
      const inode = await this.inode(entry.ino);
      const kind = inode.mode & S_IFMT;
      if (entry.type !== 0 && entry.type !== kind) {
        throw new FileSystemError(`directory entry "${name.toString("utf8")}" in inode ${dir.ino} disagrees with the type of inode ${entry.ino}`);
      }
      if (kind === S_IFLNK) {
        if (++hops > FS_LIMITS.symlinkHops) throw new FileSystemError(`more than ${FS_LIMITS.symlinkHops} symbolic links resolving ${path}`);
        const target = await this.readLink(inode);
        const more = components(target);
        if (more.length > FS_LIMITS.pathComponents)
          throw new FileSystemError(`symbolic link ${entry.ino} has more than ${FS_LIMITS.pathComponents} components`);
        if (target[0] === 0x2f) dirs.length = 1;
        pending.unshift(...more);
      } else if (kind === S_IFDIR) {
        dirs.push(entry.ino);
      } else {
        // A file in the middle of a path names nothing.
        return pending.length === 0 ? entry.ino : undefined;
      }
    }
    return dirs[dirs.length - 1];
  }

  async inode(ino: number): Promise<Inode> {
    const cached = this.inodes.get(ino);
    if (cached) return cached;
    const g = this.g;
    if (!Number.isInteger(ino) || ino < 1 || ino > g.inodesCount) throw new FileSystemError(`inode ${ino} is outside the file system's ${g.inodesCount}`);
    const group = Math.floor((ino - 1) / g.inodesPerGroup);
    const index = (ino - 1) % g.inodesPerGroup;
    const { table, initialised } = await this.inodeTable(group);
    // Past the initialised part lies whatever the disk held before mkfs: not an inode.
    if (index >= initialised) throw new FileSystemError(`inode ${ino} lies in the uninitialised part of group ${group}'s inode table`);
    const raw = await this.source.read(table * g.blockSize + index * g.inodeSize, g.inodeSize);
    const mode = raw.readUInt16LE(0x00);
    const flags = raw.readUInt32LE(0x20);
    // i_size_lo and i_size_high; beyond 2^53 it is only ever compared against smaller bounds.
    const size = raw.readUInt32LE(0x04) + raw.readUInt32LE(0x6c) * 2 ** 32;
    const inode = { ino, raw, mode, flags, size };
    if (this.inodes.size >= INODE_CACHE) this.inodes.clear();
    this.inodes.set(ino, inode);
    return inode;
  }

  /** The first block of a group's inode table, checked to lie inside the file system. */
  private async inodeTable(group: number): Promise<{ table: number; initialised: number }> {
    const cached = this.inodeTables.get(group);
    if (cached) return cached;
    const g = this.g;
    const perBlock = g.blockSize / g.descSize;
    const descBlock = this.descriptorBlock(Math.floor(group / perBlock));
    if (descBlock >= g.blocksCount) throw new FileSystemError(`group ${group}'s descriptor is outside the file system`);
    const desc = await this.source.read(descBlock * g.blockSize + (group % perBlock) * g.descSize, g.descSize);
    // ext4_group_desc: bg_inode_table_lo at 0x8, bg_inode_table_hi at 0x28 (64-byte descriptors).
    const table = desc.readUInt32LE(0x08) + (g.descSize >= 64 ? desc.readUInt32LE(0x28) * 2 ** 32 : 0);
    const tableBlocks = Math.ceil((g.inodesPerGroup * g.inodeSize) / g.blockSize);
    if (table <= g.firstDataBlock || table + tableBlocks > g.blocksCount) {
      throw new FileSystemError(`group ${group}'s inode table (block ${table}, ${tableBlocks} blocks) lies outside the file system of ${g.blocksCount} blocks`);
    }
    let initialised = g.inodesPerGroup;
    // bg_flags and bg_itable_unused mean something only when descriptors are checksummed.
    if (g.roCompat & (RO_COMPAT_GDT_CSUM | RO_COMPAT_METADATA_CSUM)) {
      const flags = desc.readUInt16LE(0x12);
      const unused = desc.readUInt16LE(0x1c) + (g.descSize >= 64 ? desc.readUInt16LE(0x32) * 2 ** 16 : 0);
      initialised = flags & EXT4_BG_INODE_UNINIT ? 0 : Math.max(0, g.inodesPerGroup - unused);
    }
    const found = { table, initialised };
    this.inodeTables.set(group, found);
    return found;
  }

  /** e2fsprogs' ext2fs_descriptor_block_loc2: where descriptor block `i` lives. */
  private descriptorBlock(i: number): number {
    const g = this.g;
    // With bigalloc on 1 KiB blocks, block 0 is left to other uses and everything moves by one.
    const adjust = i === 0 && g.blockSize === 1024 && g.clusterBytes > g.blockSize ? 1 : 0;
    if (!(g.incompat & INCOMPAT_META_BG) || i < g.firstMetaBg) return g.firstDataBlock + i + 1 + adjust;
    // meta_bg: descriptor block i is the first block of its meta group's first group, after that
    // group's superblock backup if it keeps one (Documentation/filesystems/ext4/blockgroup.rst).
    const group = (g.blockSize / g.descSize) * i;
    return g.firstDataBlock + group * g.blocksPerGroup + (this.hasSuperblock(group) ? 1 : 0) + adjust;
  }

  /** e2fsprogs' ext2fs_bg_has_super: which groups keep a superblock backup. */
  private hasSuperblock(group: number): boolean {
    const g = this.g;
    if (group === 0) return true;
    if (g.compat & COMPAT_SPARSE_SUPER2) return group === g.backupGroups[0] || group === g.backupGroups[1];
    if (group <= 1 || !(g.roCompat & RO_COMPAT_SPARSE_SUPER)) return true;
    if (!(group & 1)) return false;
    return isPower(group, 3) || isPower(group, 5) || isPower(group, 7);
  }

  /** The entry named `name` in a directory, with the inode type its file_type byte states (0: unstated). */
  private async lookup(dir: Inode, name: Buffer): Promise<{ ino: number; type: number } | undefined> {
    if (name.length === 0 || name.length > 255) return undefined;
    if (dir.flags & EXT4_INLINE_DATA_FL) {
      // An inline directory: i_block holds the parent's inode number and then entries, and the
      // system.data xattr holds more entries (Documentation/filesystems/ext4/inlinedata.rst).
      const { head, tail } = this.inlineData(dir);
      if (dir.size > head.length + tail.length)
        throw new FileSystemError(`inline directory ${dir.ino} claims ${dir.size} bytes but holds ${head.length + tail.length}`);
      return (
        this.scanEntries(head.subarray(4), name, `inline directory ${dir.ino}`) ??
        (tail.length > 0 ? this.scanEntries(tail, name, `inline directory ${dir.ino}`) : undefined)
      );
    }
    if (dir.size > FS_LIMITS.directoryBytes) throw new FileSystemError(`directory ${dir.ino} is ${dir.size} bytes, more than Kiln scans`);
    const bs = this.g.blockSize;
    const blocks = Math.ceil(dir.size / bs);
    // Every directory block, htree or not, is a list of entries: an htree's root and interior
    // nodes hide behind entries that skip them (Documentation/filesystems/ext4/directory.rst),
    // so a linear scan finds every name. Holes are skipped, as the kernel's lookup skips them.
    for (let from = 0; from < blocks; from += READ_CHUNK_BLOCKS) {
      const runs = await this.map(dir, from, Math.min(blocks, from + READ_CHUNK_BLOCKS));
      for (const run of runs) {
        if (run.physical === 0) continue;
        const bytes = await this.source.read(run.physical * bs, run.count * bs);
        for (let i = 0; i < run.count; i++) {
          const found = this.scanEntries(bytes.subarray(i * bs, (i + 1) * bs), name, `directory ${dir.ino} block ${run.logical + i}`);
          if (found) return found;
        }
      }
    }
    return undefined;
  }

  /** ext4_dir_entry_2 records tiling `bytes`, each checked as the kernel's ext4_check_dir_entry does. */
  private scanEntries(bytes: Buffer, name: Buffer, where: string): { ino: number; type: number } | undefined {
    const fileType = (this.g.incompat & INCOMPAT_FILETYPE) !== 0;
    for (let offset = 0; offset < bytes.length; ) {
      if (offset + 8 > bytes.length) throw new FileSystemError(`${where}: the entry at ${offset} runs past its block`);
      const ino = bytes.readUInt32LE(offset);
      const recLen = this.recLen(bytes.readUInt16LE(offset + 4));
      // Without filetype, name_len is 16 bits (ext2_dir_entry).
      const nameLen = fileType ? bytes[offset + 6]! : bytes.readUInt16LE(offset + 6);
      if (recLen < MIN_REC_LEN || recLen % 4 !== 0) throw new FileSystemError(`${where}: the entry at ${offset} has rec_len ${recLen}`);
      if (offset + recLen > bytes.length) throw new FileSystemError(`${where}: the entry at ${offset} has rec_len ${recLen}, past its block`);
      if (8 + nameLen > recLen) throw new FileSystemError(`${where}: the entry at ${offset} has a ${nameLen}-byte name in rec_len ${recLen}`);
      if (ino !== 0 && nameLen === name.length && bytes.compare(name, 0, name.length, offset + 8, offset + 8 + nameLen) === 0) {
        if (ino > this.g.inodesCount) throw new FileSystemError(`${where}: the entry at ${offset} names inode ${ino}, outside the file system`);
        // Only the 3 low bits are a type; codes past 7 are unknown and left unchecked.
        const code = fileType ? bytes[offset + 7]! : 0;
        return { ino, type: DIRENT_TYPES[code] ?? 0 };
      }
      offset += recLen;
    }
    return undefined;
  }

  /** ext4_rec_len_from_disk: 64 KiB blocks store the length's top bits in its low two. */
  private recLen(stored: number): number {
    if (this.g.blockSize < 65536) return stored;
    if (stored === 65535 || stored === 0) return 65536;
    return (stored & 65532) | ((stored & 3) << 16);
  }

  /** A symbolic link's target. */
  private async readLink(inode: Inode): Promise<Buffer> {
    const g = this.g;
    // The kernel keeps a target shorter than a block, and PATH_MAX counts the terminating NUL.
    if (inode.size === 0 || inode.size >= Math.min(g.blockSize, PATH_MAX))
      throw new FileSystemError(`symbolic link ${inode.ino} has a target of ${inode.size} bytes`);
    let target: Buffer;
    if (this.isFastSymlink(inode)) {
      if (inode.size >= I_BLOCK_BYTES) throw new FileSystemError(`fast symbolic link ${inode.ino} claims ${inode.size} bytes`);
      target = inode.raw.subarray(I_BLOCK_OFFSET, I_BLOCK_OFFSET + inode.size);
    } else {
      target = await this.content(inode, inode.size);
    }
    const nul = target.indexOf(0);
    return nul === -1 ? target : target.subarray(0, nul);
  }

  /**
   * The kernel's ext4_inode_is_fast_symlink: the target sits in i_block when the link owns no
   * data blocks (an xattr block aside), or, with ea_inode, when it is shorter than i_block.
   */
  private isFastSymlink(inode: Inode): boolean {
    const g = this.g;
    if (inode.flags & EXT4_INLINE_DATA_FL) return false;
    if (g.incompat & INCOMPAT_EA_INODE) return inode.size < I_BLOCK_BYTES;
    const raw = inode.raw;
    // i_blocks_lo, and l_i_blocks_high with huge_file; counted in fs blocks with EXT4_HUGE_FILE_FL.
    let blocks = raw.readUInt32LE(0x1c);
    if (g.roCompat & RO_COMPAT_HUGE_FILE) {
      blocks += raw.readUInt16LE(0x74) * 2 ** 32;
      if (inode.flags & EXT4_HUGE_FILE_FL) blocks *= g.blockSize / 512;
    }
    const xattrBlock = raw.readUInt32LE(0x68) + (g.incompat & INCOMPAT_64BIT ? raw.readUInt16LE(0x76) * 2 ** 32 : 0);
    return blocks - (xattrBlock !== 0 ? g.clusterBytes / 512 : 0) === 0;
  }

  /** The first `length` bytes of a file (length <= its size); holes read as zeros. */
  private async content(inode: Inode, length: number): Promise<Buffer> {
    if (inode.flags & EXT4_INLINE_DATA_FL) {
      const { head, tail } = this.inlineData(inode);
      if (inode.size > head.length + tail.length)
        throw new FileSystemError(`inline inode ${inode.ino} claims ${inode.size} bytes but holds ${head.length + tail.length}`);
      return Buffer.concat([head, tail]).subarray(0, length);
    }
    const bs = this.g.blockSize;
    const out = Buffer.alloc(length);
    const blocks = Math.ceil(length / bs);
    for (let from = 0; from < blocks; from += READ_CHUNK_BLOCKS) {
      for (const run of await this.map(inode, from, Math.min(blocks, from + READ_CHUNK_BLOCKS))) {
        if (run.physical === 0) continue;
        const start = run.logical * bs;
        const bytes = await this.source.read(run.physical * bs, Math.min(run.count * bs, length - start));
        bytes.copy(out, start);
      }
    }
    return out;
  }

  /** i_block and the in-inode system.data xattr of an inline-data inode. */
  private inlineData(inode: Inode): { head: Buffer; tail: Buffer } {
    if (!(this.g.incompat & INCOMPAT_INLINE_DATA)) throw new FileSystemError(`inode ${inode.ino} is inline but the file system lacks inline_data`);
    const head = inode.raw.subarray(I_BLOCK_OFFSET, I_BLOCK_OFFSET + I_BLOCK_BYTES);
    return { head, tail: this.systemData(inode) };
  }

  /**
   * The value of the "system.data" xattr among the inode's in-inode xattrs (after the 128-byte
   * ext2 inode and i_extra_isize): ext4_xattr_ibody_header, then ext4_xattr_entry records whose
   * e_value_offs count from the first entry, ending at four zero bytes.
   */
  private systemData(inode: Inode): Buffer {
    const raw = inode.raw;
    const none = Buffer.alloc(0);
    if (raw.length <= GOOD_OLD_INODE_SIZE) return none;
    const extra = raw.readUInt16LE(0x80);
    const start = GOOD_OLD_INODE_SIZE + extra;
    if (extra % 4 !== 0 || start + 4 > raw.length) throw new FileSystemError(`inode ${inode.ino} has i_extra_isize ${extra}`);
    if (raw.readUInt32LE(start) !== XATTR_MAGIC) return none;
    const area = raw.subarray(start + 4);
    for (let offset = 0; offset + 4 <= area.length && area.readUInt32LE(offset) !== 0; ) {
      if (offset + 16 > area.length) throw new FileSystemError(`inode ${inode.ino}: an xattr entry runs past the inode`);
      const nameLen = area[offset]!;
      const index = area[offset + 1]!;
      const valueOffset = area.readUInt16LE(offset + 2);
      const valueInode = area.readUInt32LE(offset + 4);
      const valueSize = area.readUInt32LE(offset + 8);
      if (offset + 16 + nameLen > area.length) throw new FileSystemError(`inode ${inode.ino}: an xattr name runs past the inode`);
      if (index === XATTR_INDEX_SYSTEM && nameLen === 4 && area.toString("latin1", offset + 16, offset + 20) === "data") {
        if (valueInode !== 0 || valueOffset + valueSize > area.length) throw new FileSystemError(`inode ${inode.ino}: inline data lies outside the inode`);
        return area.subarray(valueOffset, valueOffset + valueSize);
      }
      // EXT4_XATTR_LEN: the 16-byte entry and its name, padded to 4.
      offset += (16 + nameLen + 3) & ~3;
    }
    return none;
  }

  /** The runs behind logical blocks [from, to) of a file, in order; blocks not covered are holes. */
  private async map(inode: Inode, from: number, to: number): Promise<Run[]> {
    const runs: Run[] = [];
    const iBlock = inode.raw.subarray(I_BLOCK_OFFSET, I_BLOCK_OFFSET + I_BLOCK_BYTES);
    if (inode.flags & EXT4_EXTENTS_FL) {
      const root = header(iBlock, inode.ino, "in the inode");
      if (root.depth > FS_LIMITS.treeDepth) throw new FileSystemError(`inode ${inode.ino}'s extent tree is ${root.depth} levels deep`);
      await this.extents(inode.ino, iBlock, root.depth, 0, 2 ** 32, from, to, runs);
    } else {
      await this.blockMap(inode.ino, iBlock, from, to, runs);
    }
    return runs;
  }

  /**
   * One node of an extent tree covering logical blocks [low, high): an ext4_extent_header, then
   * ext4_extent leaves (depth 0) or ext4_extent_idx entries. Only children that overlap
   * [from, to) are read, and every entry must stay inside its parent's range, in order, so a
   * lookup reads at most depth nodes per block it wants.
   */
  private async extents(ino: number, node: Buffer, depth: number, low: number, high: number, from: number, to: number, runs: Run[]): Promise<void> {
    const where = `inode ${ino}'s extent tree`;
    const { entries } = header(node, ino, "");
    let previousEnd = low;
    for (let i = 0; i < entries; i++) {
      const entry = node.subarray(EXTENT_ENTRY_BYTES * (i + 1), EXTENT_ENTRY_BYTES * (i + 2));
      const logical = entry.readUInt32LE(0);
      if (depth === 0) {
        // ext4_extent: ee_block, ee_len, ee_start_hi, ee_start_lo.
        const stored = entry.readUInt16LE(4);
        const uninitialised = stored > EXT_INIT_MAX_LEN;
        const count = uninitialised ? stored - EXT_INIT_MAX_LEN : stored;
        const physical = entry.readUInt16LE(6) * 2 ** 32 + entry.readUInt32LE(8);
        if (count === 0 || logical < previousEnd || logical + count > high)
          throw new FileSystemError(`${where} has an extent at block ${logical} out of order or range`);
        if (physical <= this.g.firstDataBlock || physical + count > this.g.blocksCount) {
          throw new FileSystemError(
            `${where} has an extent at blocks ${physical}-${physical + count - 1}, outside the file system of ${this.g.blocksCount} blocks`,
          );
        }
        previousEnd = logical + count;
        const start = Math.max(from, logical);
        const end = Math.min(to, logical + count);
        if (start < end) pushRun(runs, start, end - start, uninitialised ? 0 : physical + (start - logical));
      } else {
        // ext4_extent_idx: ei_block, ei_leaf_lo, ei_leaf_hi. Its range ends where the next begins.
        const next = i + 1 < entries ? node.readUInt32LE(EXTENT_ENTRY_BYTES * (i + 2)) : high;
        if (logical < previousEnd || next <= logical || next > high)
          throw new FileSystemError(`${where} has an index at block ${logical} out of order or range`);
        previousEnd = logical + 1;
        if (next <= from || logical >= to) continue;
        const leaf = entry.readUInt32LE(4) + entry.readUInt16LE(8) * 2 ** 32;
        if (leaf <= this.g.firstDataBlock || leaf >= this.g.blocksCount) throw new FileSystemError(`${where} points at block ${leaf}, outside the file system`);
        const child = await this.source.read(leaf * this.g.blockSize, this.g.blockSize);
        const childHeader = header(child, ino, `at block ${leaf}`);
        if (childHeader.depth !== depth - 1) throw new FileSystemError(`${where} node at block ${leaf} has depth ${childHeader.depth}, not ${depth - 1}`);
        await this.extents(ino, child, depth - 1, logical, next, from, to, runs);
      }
    }
  }

  /**
   * The ext2/ext3 block map (Documentation/filesystems/ext4/blockmap.rst): i_block[0..11] map
   * the first 12 blocks, i_block[12], [13] and [14] are single, double and triple indirect
   * blocks of 32-bit block numbers. A zero anywhere is a hole.
   */
  private async blockMap(ino: number, iBlock: Buffer, from: number, to: number, runs: Run[]): Promise<void> {
    for (let b = from; b < Math.min(to, DIRECT_BLOCKS); b++) this.pushMapped(ino, runs, b, iBlock.readUInt32LE(b * 4));
    const perBlock = this.g.blockSize / 4;
    let base = DIRECT_BLOCKS;
    for (let level = 1; level <= 3; level++) {
      const span = perBlock ** level;
      if (from < base + span && to > base) await this.indirect(ino, iBlock.readUInt32LE((DIRECT_BLOCKS + level - 1) * 4), level, base, from, to, runs);
      base += span;
    }
  }

  private async indirect(ino: number, pointer: number, level: number, base: number, from: number, to: number, runs: Run[]): Promise<void> {
    if (pointer === 0) return;
    if (pointer <= this.g.firstDataBlock || pointer >= this.g.blocksCount)
      throw new FileSystemError(`inode ${ino}'s indirect block ${pointer} is outside the file system`);
    const block = await this.source.read(pointer * this.g.blockSize, this.g.blockSize);
    const span = (this.g.blockSize / 4) ** (level - 1);
    const first = Math.max(0, Math.floor((from - base) / span));
    const last = Math.min(this.g.blockSize / 4 - 1, Math.floor((to - 1 - base) / span));
    for (let i = first; i <= last; i++) {
      const child = block.readUInt32LE(i * 4);
      if (level === 1) this.pushMapped(ino, runs, base + i, child);
      else await this.indirect(ino, child, level - 1, base + i * span, from, to, runs);
    }
  }

  private pushMapped(ino: number, runs: Run[], logical: number, physical: number): void {
    if (physical === 0) return;
    if (physical <= this.g.firstDataBlock || physical >= this.g.blocksCount)
      throw new FileSystemError(`inode ${ino}'s block ${logical} maps to block ${physical}, outside the file system`);
    pushRun(runs, logical, 1, physical);
  }
}

/** An ext4_extent_header, checked: magic, and no more entries than the node has room for. */
function header(node: Buffer, ino: number, where: string): { entries: number; depth: number } {
  const at = where ? ` ${where}` : "";
  if (node.readUInt16LE(0) !== EXTENT_MAGIC) throw new FileSystemError(`inode ${ino}'s extent tree node${at} has a bad magic`);
  const entries = node.readUInt16LE(2);
  const max = node.readUInt16LE(4);
  if (entries > max || EXTENT_ENTRY_BYTES * (max + 1) > node.length)
    throw new FileSystemError(`inode ${ino}'s extent tree node${at} claims ${entries} of ${max} entries`);
  return { entries, depth: node.readUInt16LE(6) };
}

/** Appends a run, merged with the last when they continue each other. */
function pushRun(runs: Run[], logical: number, count: number, physical: number): void {
  const last = runs[runs.length - 1];
  if (
    last &&
    last.logical + last.count === logical &&
    ((last.physical === 0 && physical === 0) || (last.physical !== 0 && last.physical + last.count === physical))
  ) {
    last.count += count;
  } else {
    runs.push({ logical, count, physical });
  }
}

/** Path components as bytes, without empty ones and ".". */
function components(path: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let start = 0;
  for (let i = 0; i <= path.length; i++) {
    if (i === path.length || path[i] === 0x2f) {
      const part = path.subarray(start, i);
      if (part.length > 0 && !(part.length === 1 && part[0] === 0x2e)) out.push(part);
      start = i + 1;
    }
  }
  return out;
}

function isPower(value: number, base: number): boolean {
  let n = base;
  while (n < value) n *= base;
  return n === value;
}
