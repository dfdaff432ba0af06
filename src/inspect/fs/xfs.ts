// XFS, read-only and only as far as inspection needs: find a file by path and read its first
// bytes. The layout is the one the kernel's XFS writes, as described in "XFS Algorithms & Data
// Structures" (the on-disk format book, Documentation/filesystems/xfs/) and the structs of
// fs/xfs/libxfs/xfs_format.h and xfs_da_format.h, which the field offsets below name.
// Everything is big-endian except the v5 CRC fields (little-endian, see xfs_cksum.h).
//
// Both superblock versions are read: v4, and v5 ("CRC-enabled": self-describing metadata with a
// CRC32C, dinode v3). Every v5 block Kiln trusts has its CRC checked, so a flipped bit stops here
// rather than steering a read. Directory lookups scan the data blocks only (the hash index in
// the leaf and node blocks is an accelerator that lookup does not need), so block, leaf and node
// directories are read the same way.
import { Crc32c } from "@aws-sdk/checksums/crc";
import type { ByteSource } from "../../formats/disk/source.js";
import { FS_LIMITS, FileSystemError, type FileSystem, type FileSystemOpener } from "./filesystem.js";

const SB_MAGIC = 0x58465342; // "XFSB"
const INODE_MAGIC = 0x494e; // "IN"
const BMAP_MAGIC = 0x424d4150; // "BMAP", v4 bmbt block
const BMAP_CRC_MAGIC = 0x424d4133; // "BMA3", v5 bmbt block
const DIR2_BLOCK_MAGIC = 0x58443242; // "XD2B": single-block directory
const DIR2_DATA_MAGIC = 0x58443244; // "XD2D": data block of a leaf or node directory
const DIR3_BLOCK_MAGIC = 0x58444233; // "XDB3"
const DIR3_DATA_MAGIC = 0x58444433; // "XDD3"
const SYMLINK_MAGIC = 0x58534c4d; // "XSLM", v5 remote symlink block header

// di_format (enum xfs_dinode_fmt).
const FMT_LOCAL = 1;
const FMT_EXTENTS = 2;
const FMT_BTREE = 3;

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;

/** XFS_SYMLINK_MAXLEN: the kernel refuses to create a longer link. */
const SYMLINK_MAXLEN = 1024;
/** XFS_DIR2_LEAF_OFFSET: directory data blocks live below 32 GiB of the directory's offsets. */
const DIR2_LEAF_OFFSET = 32 * 1024 ** 3;
/** A bmbt visited for one read may hold at most this many blocks (a hostile tree costs little). */
const MAX_BMBT_BLOCKS = 4096;
/** Directory bytes one readFile may scan in all, across its components and links. */
const LOOKUP_BYTES = 4 * FS_LIMITS.directoryBytes;
/** XFS_DIFLAG_REALTIME: the file's data is on the realtime device, which a partition does not hold. */
const DIFLAG_REALTIME = 0x1;
/** XFS_DIFLAG2_NREXT64: the inode keeps 64-bit extent counters (di_big_nextents). */
const DIFLAG2_NREXT64 = 1n << 4n;
/** Incompatible v5 features up to XFS_SB_FEAT_INCOMPAT_ZONED; of these only FTYPE and NREXT64 (per inode) change what Kiln reads. */
const KNOWN_INCOMPAT = 0x3ff;
const INCOMPAT_FTYPE = 0x1;
const VERSION_DIRV2BIT = 0x2000;
const VERSION_MOREBITSBIT = 0x8000;
const VERSION2_FTYPE = 0x200;

interface Superblock {
  version: 4 | 5;
  blockSize: number;
  dblocks: number;
  agBlocks: number;
  agCount: number;
  agBlkLog: number;
  inodeSize: number;
  inoPBlog: number;
  rootIno: number;
  dirBlockSize: number;
  ftype: boolean;
}

interface Inode {
  ino: number;
  mode: number;
  format: number;
  size: number;
  nextents: number;
  flags: number;
  /** The data fork: the bytes after the core, up to the attribute fork. */
  fork: Buffer;
}

/** One mapping of the data fork: file blocks [offset, offset + count) at fs block `block`. */
interface Mapping {
  offset: number;
  block: number;
  count: number;
  unwritten: boolean;
}

const bad = (reason: string) => new FileSystemError(`XFS: ${reason}`);

const isPowerOfTwo = (n: number) => n > 0 && (n & (n - 1)) === 0;

/** A u64 that must fit a JavaScript integer. */
function u64(buffer: Buffer, at: number, what: string): number {
  const value = buffer.readBigUInt64BE(at);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw bad(`${what} ${value} is out of range`);
  return Number(value);
}

/** v5 metadata CRC: CRC32C of the block with its CRC field taken as zero, stored little-endian (xfs_cksum.h). */
async function checkCrc(block: Buffer, crcOffset: number, what: string): Promise<void> {
  const crc = new Crc32c();
  crc.update(block.subarray(0, crcOffset));
  crc.update(new Uint8Array(4));
  crc.update(block.subarray(crcOffset + 4));
  const computed = Buffer.from(await crc.digest()).readUInt32BE(0);
  if (computed !== block.readUInt32LE(crcOffset)) throw bad(`${what} fails its CRC check`);
}

export const openXfs: FileSystemOpener = async (source) => {
  if (source.size < 512) return undefined;
  const head = await source.read(0, 512);
  if (head.readUInt32BE(0) !== SB_MAGIC) return undefined;
  const sb = await readSuperblock(source, head);
  return new XfsReader(source, sb);
};

/** struct xfs_dsb: every field used later is checked here against the others and the partition. */
async function readSuperblock(source: ByteSource, head: Buffer): Promise<Superblock> {
  const blockSize = head.readUInt32BE(4);
  const blockLog = head[120]!;
  const sectSize = head.readUInt16BE(102);
  const inodeSize = head.readUInt16BE(104);
  const inoPBlock = head.readUInt16BE(106);
  const inodeLog = head[122]!;
  const inoPBlog = head[123]!;
  const agBlkLog = head[124]!;
  const agBlocks = head.readUInt32BE(84);
  const agCount = head.readUInt32BE(88);
  const versionNum = head.readUInt16BE(100);
  const version = versionNum & 0xf;
  if (version !== 4 && version !== 5) throw bad(`superblock version ${version} is not 4 or 5`);
  // xfs_validate_sb_common's geometry rules, which every later offset computation relies on.
  if (!isPowerOfTwo(blockSize) || blockSize < 512 || blockSize > 65536 || 1 << blockLog !== blockSize) throw bad(`block size ${blockSize} is invalid`);
  if (!isPowerOfTwo(sectSize) || sectSize < 512 || sectSize > blockSize) throw bad(`sector size ${sectSize} is invalid`);
  if (!isPowerOfTwo(inodeSize) || inodeSize < 256 || inodeSize > 2048 || 1 << inodeLog !== inodeSize) throw bad(`inode size ${inodeSize} is invalid`);
  if (version === 5 && inodeSize < 512) throw bad(`inode size ${inodeSize} is too small for a v5 file system`);
  if (inodeSize > blockSize || inoPBlock !== blockSize / inodeSize || 1 << inoPBlog !== inoPBlock)
    throw bad(`inodes per block ${inoPBlock} disagrees with the block and inode sizes`);
  if (agCount < 1 || agBlocks < 1 || agBlkLog > 31 || Math.ceil(Math.log2(agBlocks)) !== agBlkLog)
    throw bad(`allocation group geometry (${agCount} groups of ${agBlocks} blocks) is invalid`);
  const dblocks = u64(head, 8, "data block count");
  if (dblocks > agCount * agBlocks || dblocks <= (agCount - 1) * agBlocks)
    throw bad(`data block count ${dblocks} disagrees with ${agCount} groups of ${agBlocks} blocks`);
  if (dblocks * blockSize > source.size) throw bad(`the file system (${dblocks * blockSize} bytes) is larger than its partition (${source.size} bytes)`);
  if ((versionNum & VERSION_DIRV2BIT) === 0) throw bad("version 1 directories are not supported");
  const dirBlockLog = head[192]!;
  if (blockLog + dirBlockLog > 16) throw bad(`directory block size 2^${blockLog + dirBlockLog} is invalid`);
  let ftype: boolean;
  if (version === 5) {
    const sector = sectSize === 512 ? head : await source.read(0, sectSize);
    await checkCrc(sector, 224, "the superblock");
    const incompat = head.readUInt32BE(216);
    if (incompat & ~KNOWN_INCOMPAT) throw bad(`unknown incompatible features 0x${(incompat & ~KNOWN_INCOMPAT).toString(16)}`);
    ftype = (incompat & INCOMPAT_FTYPE) !== 0;
  } else {
    const features2 = versionNum & VERSION_MOREBITSBIT ? head.readUInt32BE(200) : 0;
    ftype = (features2 & VERSION2_FTYPE) !== 0;
  }
  const rootIno = u64(head, 56, "root inode number");
  return {
    version,
    blockSize,
    dblocks,
    agBlocks,
    agCount,
    agBlkLog,
    inodeSize,
    inoPBlog,
    rootIno,
    dirBlockSize: blockSize << dirBlockLog,
    ftype,
  };
}

class XfsReader implements FileSystem {
  readonly type = "xfs" as const;
  private readonly v5: boolean;

  constructor(
    private readonly source: ByteSource,
    private readonly sb: Superblock,
  ) {
    this.v5 = sb.version === 5;
  }

  async readFile(path: string, maxBytes: number): Promise<Buffer | undefined> {
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) throw new RangeError(`maxBytes ${maxBytes} is not a byte count`);
    const inode = await this.resolve(path);
    if (!inode) return undefined;
    return this.readData(inode, Math.min(inode.size, maxBytes));
  }

  /** The regular file at `path`, following symbolic links; undefined when there is none. */
  private async resolve(path: string): Promise<Inode | undefined> {
    const root = this.sb.rootIno;
    // Directories walked so far, so ".." returns to the directory a component came through.
    let stack = [root];
    let pending = components(path);
    let hops = 0;
    let current: Inode | undefined;
    const budget = { bytes: LOOKUP_BYTES };
    while (pending.length > 0) {
      const name = pending.shift()!;
      if (name === "..") {
        if (stack.length > 1) stack.pop();
        current = undefined;
        continue;
      }
      const dir = await this.readInode(stack[stack.length - 1]!);
      if ((dir.mode & S_IFMT) !== S_IFDIR) throw bad(`inode ${dir.ino} is walked as a directory but is not one`);
      const child = await this.lookup(dir, Buffer.from(name, "utf8"), budget);
      if (child === undefined) return undefined;
      const inode = await this.readInode(child);
      const kind = inode.mode & S_IFMT;
      if (kind === S_IFLNK) {
        if (++hops > FS_LIMITS.symlinkHops) throw bad(`more than ${FS_LIMITS.symlinkHops} symbolic links resolving ${path}`);
        const target = await this.readSymlink(inode);
        if (target.startsWith("/")) stack = [root];
        pending = [...components(target), ...pending];
        if (pending.length > FS_LIMITS.pathComponents) throw bad(`symbolic link ${inode.ino} makes a path of more than ${FS_LIMITS.pathComponents} components`);
        current = undefined;
      } else if (kind === S_IFDIR) {
        stack.push(child);
        current = undefined;
      } else if (kind === S_IFREG) {
        if (pending.length > 0) return undefined; // "/file/more": not a directory.
        current = inode;
      } else {
        return undefined;
      }
    }
    return current;
  }

  /** fs block `block` (AG number in the high bits: XFS_FSB_TO_AGNO) as a byte offset, with `count` blocks inside its AG. */
  private blockOffset(block: number, count: number, what: string): number {
    const { agBlkLog, agCount, agBlocks, blockSize, dblocks } = this.sb;
    const ag = Math.floor(block / 2 ** agBlkLog);
    const agBlock = block % 2 ** agBlkLog;
    if (ag >= agCount || count < 1 || agBlock + count > agBlocks) throw bad(`${what} points outside the file system (block ${ag}/${agBlock}, ${count} blocks)`);
    const linear = ag * agBlocks + agBlock;
    if (linear + count > dblocks) throw bad(`${what} points outside the file system (block ${ag}/${agBlock}, ${count} blocks)`);
    return linear * blockSize;
  }

  /** struct xfs_dinode, at the place its number encodes (XFS_INO_TO_AGNO / AGBNO / OFFSET). */
  private async readInode(ino: number): Promise<Inode> {
    const { inoPBlog, inodeSize } = this.sb;
    if (!Number.isSafeInteger(ino) || ino <= 0) throw bad(`inode number ${ino} is invalid`);
    const perBlock = 2 ** inoPBlog;
    // XFS_INO_TO_FSB: an inode number is its fs block number (AG above agblklog bits) then its slot.
    const at = this.blockOffset(Math.floor(ino / perBlock), 1, `inode ${ino}`) + (ino % perBlock) * inodeSize;
    const raw = await this.source.read(at, inodeSize);
    if (raw.readUInt16BE(0) !== INODE_MAGIC) throw bad(`inode ${ino} has a bad magic number`);
    const version = raw[4]!;
    if (this.v5 ? version !== 3 : version !== 1 && version !== 2) throw bad(`inode ${ino} has version ${version}`);
    let coreSize = 100; // The v1/v2 core ends at di_next_unlinked.
    let nextents = raw.readUInt32BE(76);
    if (this.v5) {
      await checkCrc(raw, 100, `inode ${ino}`);
      coreSize = 176;
      if (u64(raw, 152, "inode number") !== ino) throw bad(`inode ${ino} records itself as inode ${raw.readBigUInt64BE(152)}`);
      if (raw.readBigUInt64BE(120) & DIFLAG2_NREXT64) nextents = u64(raw, 24, "extent count");
    }
    const forkOff = raw[82]! * 8;
    const literal = inodeSize - coreSize;
    if (forkOff >= literal) throw bad(`inode ${ino} puts its attribute fork outside the inode`);
    const size = raw.readBigUInt64BE(56);
    if (size > BigInt(Number.MAX_SAFE_INTEGER)) throw bad(`inode ${ino} has size ${size}`);
    return {
      ino,
      mode: raw.readUInt16BE(2),
      format: raw[5]!,
      size: Number(size),
      nextents,
      flags: raw.readUInt16BE(90),
      fork: raw.subarray(coreSize, coreSize + (forkOff || literal)),
    };
  }

  /**
   * The data fork's mappings that overlap file blocks [from, to), in offset order. Extent
   * records (struct xfs_bmbt_rec) come from the inode or from the bmbt leaves under the root in
   * the inode (struct xfs_bmdr_block); only subtrees whose key range meets [from, to) are read.
   */
  private async mappings(inode: Inode, from: number, to: number): Promise<Mapping[]> {
    const what = `inode ${inode.ino}`;
    const out: Mapping[] = [];
    if (inode.format === FMT_EXTENTS) {
      if (inode.nextents * 16 > inode.fork.length) throw bad(`${what} claims ${inode.nextents} extents, more than its fork holds`);
      this.addRecords(out, inode.fork, 0, inode.nextents, from, to, what);
    } else if (inode.format === FMT_BTREE) {
      const level = inode.fork.readUInt16BE(0);
      const count = inode.fork.readUInt16BE(2);
      const maxRecs = Math.floor((inode.fork.length - 4) / 16); // xfs_bmdr_maxrecs
      if (level < 1 || level > FS_LIMITS.treeDepth) throw bad(`${what} has an extent tree of depth ${level}`);
      if (count < 1 || count > maxRecs) throw bad(`${what} has ${count} extent tree roots, more than its fork holds`);
      const budget = { blocks: MAX_BMBT_BLOCKS, seen: new Set<number>() };
      await this.walkNode(out, inode, inode.fork, 4, 4 + maxRecs * 8, count, level, from, to, budget);
    } else {
      throw bad(`${what} has data fork format ${inode.format} where extents are expected`);
    }
    return out;
  }

  /** Records [first, first + count) of a node: keys at keysAt, pointers at ptrsAt (8 bytes each). */
  private async walkNode(
    out: Mapping[],
    inode: Inode,
    node: Buffer,
    keysAt: number,
    ptrsAt: number,
    count: number,
    level: number,
    from: number,
    to: number,
    budget: { blocks: number; seen: Set<number> },
  ): Promise<void> {
    for (let i = 0; i < count; i++) {
      const start = u64(node, keysAt + i * 8, "extent tree key");
      const next = i + 1 < count ? u64(node, keysAt + (i + 1) * 8, "extent tree key") : Infinity;
      if (next <= start) throw bad(`inode ${inode.ino}'s extent tree keys are out of order`);
      if (start >= to || next <= from) continue;
      const child = u64(node, ptrsAt + i * 8, "extent tree pointer");
      if (budget.seen.has(child)) throw bad(`inode ${inode.ino}'s extent tree visits block ${child} twice`);
      budget.seen.add(child);
      if (--budget.blocks < 0) throw bad(`inode ${inode.ino}'s extent tree is larger than ${MAX_BMBT_BLOCKS} blocks`);
      await this.walkBlock(out, inode, child, level - 1, from, to, budget);
    }
  }

  /** A bmbt block (struct xfs_btree_block, long form): v4 header 24 bytes, v5 72 with a CRC at 64. */
  private async walkBlock(
    out: Mapping[],
    inode: Inode,
    block: number,
    level: number,
    from: number,
    to: number,
    budget: { blocks: number; seen: Set<number> },
  ): Promise<void> {
    const what = `extent tree block ${block} of inode ${inode.ino}`;
    const raw = await this.source.read(this.blockOffset(block, 1, what), this.sb.blockSize);
    const magic = raw.readUInt32BE(0);
    let header = 24;
    if (this.v5) {
      if (magic !== BMAP_CRC_MAGIC) throw bad(`${what} has a bad magic number`);
      await checkCrc(raw, 64, what);
      if (u64(raw, 56, "owner") !== inode.ino) throw bad(`${what} belongs to inode ${raw.readBigUInt64BE(56)}`);
      header = 72;
    } else if (magic !== BMAP_MAGIC) {
      throw bad(`${what} has a bad magic number`);
    }
    const blockLevel = raw.readUInt16BE(4);
    const count = raw.readUInt16BE(6);
    // Each step down must lower the level by one, which also bounds the walk by the root's depth.
    if (blockLevel !== level) throw bad(`${what} is at level ${blockLevel}, expected ${level}`);
    const maxRecs = Math.floor((this.sb.blockSize - header) / 16);
    if (count < 1 || count > maxRecs) throw bad(`${what} holds ${count} records`);
    if (level === 0) this.addRecords(out, raw, header, count, from, to, what);
    else await this.walkNode(out, inode, raw, header, header + maxRecs * 8, count, level, from, to, budget);
  }

  /** struct xfs_bmbt_rec: flag:1 startoff:54 startblock:52 blockcount:21, in two big-endian u64s. */
  private addRecords(out: Mapping[], buffer: Buffer, at: number, count: number, from: number, to: number, what: string): void {
    const last = out[out.length - 1];
    let end = last ? last.offset + last.count : 0;
    for (let i = 0; i < count; i++) {
      const l0 = buffer.readBigUInt64BE(at + i * 16);
      const l1 = buffer.readBigUInt64BE(at + i * 16 + 8);
      const unwritten = l0 >> 63n === 1n;
      const offset = Number((l0 & 0x7fffffffffffffffn) >> 9n);
      const block = Number(((l0 & 0x1ffn) << 43n) | (l1 >> 21n));
      const count = Number(l1 & 0x1fffffn);
      if (count === 0) throw bad(`${what} has an empty extent`);
      if (offset < end) throw bad(`${what} has overlapping or unordered extents`);
      end = offset + count;
      if (offset + count <= from || offset >= to) continue;
      this.blockOffset(block, count, what);
      out.push({ offset, block, count, unwritten });
    }
  }

  /** Bytes [0, length) of a file's data through its extent map; holes and unwritten extents read as zeros. */
  private async readData(inode: Inode, length: number): Promise<Buffer> {
    if (inode.flags & DIFLAG_REALTIME) throw bad(`inode ${inode.ino} keeps its data on a realtime device`);
    const out = Buffer.alloc(length);
    if (length === 0) return out;
    const { blockSize } = this.sb;
    for (const map of await this.mappings(inode, 0, Math.ceil(length / blockSize))) {
      if (map.unwritten) continue;
      const start = map.offset * blockSize;
      const end = Math.min(length, (map.offset + map.count) * blockSize);
      const data = await this.source.read(this.blockOffset(map.block, map.count, `inode ${inode.ino}`), end - start);
      data.copy(out, start);
    }
    return out;
  }

  /** The target of a symbolic link: inline in the fork, or in blocks (v5: each with a struct xfs_dsymlink_hdr). */
  private async readSymlink(inode: Inode): Promise<string> {
    const { size, ino } = inode;
    if (size < 1 || size > SYMLINK_MAXLEN) throw bad(`symbolic link ${ino} has length ${size}`);
    if (inode.format === FMT_LOCAL) {
      if (size > inode.fork.length) throw bad(`symbolic link ${ino} is longer than its inode`);
      return inode.fork.subarray(0, size).toString("utf8");
    }
    const { blockSize } = this.sb;
    const header = this.v5 ? 56 : 0;
    const perBlock = blockSize - header;
    const blocks = Math.ceil(size / perBlock);
    const parts: Buffer[] = [];
    let offset = 0;
    for (const map of await this.mappings(inode, 0, blocks)) {
      for (let i = 0; i < map.count && map.offset + i < blocks; i++) {
        if (map.offset + i !== parts.length) throw bad(`symbolic link ${ino} has a hole`);
        const block = map.block + i;
        const what = `symbolic link ${ino} block ${map.offset + i}`;
        const raw = await this.source.read(this.blockOffset(block, 1, what), blockSize);
        const want = Math.min(perBlock, size - offset);
        if (this.v5) {
          if (raw.readUInt32BE(0) !== SYMLINK_MAGIC) throw bad(`${what} has a bad magic number`);
          await checkCrc(raw, 12, what);
          if (raw.readUInt32BE(4) !== offset || raw.readUInt32BE(8) !== want) throw bad(`${what} holds bytes other than the ones expected`);
          if (u64(raw, 32, "owner") !== ino) throw bad(`${what} belongs to inode ${raw.readBigUInt64BE(32)}`);
        }
        parts.push(raw.subarray(header, header + want));
        offset += want;
      }
    }
    if (offset !== size) throw bad(`symbolic link ${ino} is missing blocks`);
    return Buffer.concat(parts).toString("utf8");
  }

  /** The inode number `name` names in directory `dir`, or undefined. */
  private async lookup(dir: Inode, name: Buffer, budget: { bytes: number }): Promise<number | undefined> {
    if (dir.format === FMT_LOCAL) return this.lookupShortForm(dir, name);
    const { dirBlockSize, blockSize } = this.sb;
    // For a directory, di_size covers the data blocks only (the leaf and free index lie above
    // XFS_DIR2_LEAF_OFFSET), so it bounds the scan.
    if (dir.size > FS_LIMITS.directoryBytes) throw bad(`directory ${dir.ino} is ${dir.size} bytes, more than ${FS_LIMITS.directoryBytes}`);
    if (dir.size % dirBlockSize !== 0) throw bad(`directory ${dir.ino} has size ${dir.size}, not a whole number of directory blocks`);
    const perDirBlock = dirBlockSize / blockSize;
    const fsBlocks = dir.size / blockSize;
    if (fsBlocks * blockSize > DIR2_LEAF_OFFSET) throw bad(`directory ${dir.ino} is too large`);
    const maps = await this.mappings(dir, 0, fsBlocks);
    const singleBlock = dir.size === dirBlockSize;
    // Directory blocks whose every fs block is mapped, gathered per directory block (a directory
    // block may span extents); a hole is a data block freed by the kernel.
    let index = 0;
    for (let first = 0; first < fsBlocks; first += perDirBlock) {
      const pieces: Buffer[] = [];
      for (let fsb = first; fsb < first + perDirBlock; fsb++) {
        while (index < maps.length && maps[index]!.offset + maps[index]!.count <= fsb) index++;
        const map = maps[index];
        if (!map || map.offset > fsb) break;
        if (map.unwritten) throw bad(`directory ${dir.ino} has an unwritten extent`);
        const run = Math.min(first + perDirBlock, map.offset + map.count) - fsb;
        pieces.push(await this.source.read(this.blockOffset(map.block + (fsb - map.offset), run, `directory ${dir.ino}`), run * blockSize));
        fsb += run - 1;
      }
      const got = pieces.reduce((sum, piece) => sum + piece.length, 0);
      if (got === 0) continue;
      if (got !== dirBlockSize) throw bad(`directory ${dir.ino} block ${first} is partly unmapped`);
      budget.bytes -= got;
      if (budget.bytes < 0) throw bad(`a lookup scans more than ${LOOKUP_BYTES} bytes of directories`);
      const found = await this.scanDataBlock(dir, first, pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces), singleBlock, name);
      if (found !== undefined) return found;
    }
    return undefined;
  }

  /**
   * One directory data block (struct xfs_dir2_data_hdr, 16 bytes; v5 xfs_dir3_data_hdr, 64 with
   * a CRC at 4): entries (struct xfs_dir2_data_entry) and free runs (xfs_dir2_data_unused)
   * packed to 8 bytes, up to the block's end, or in a single-block directory up to its leaf
   * entries and struct xfs_dir2_block_tail.
   */
  private async scanDataBlock(dir: Inode, fsBlock: number, block: Buffer, singleBlock: boolean, name: Buffer): Promise<number | undefined> {
    const what = `directory ${dir.ino} block ${fsBlock}`;
    const magic = block.readUInt32BE(0);
    const isBlockForm = magic === (this.v5 ? DIR3_BLOCK_MAGIC : DIR2_BLOCK_MAGIC);
    if (!isBlockForm && magic !== (this.v5 ? DIR3_DATA_MAGIC : DIR2_DATA_MAGIC)) throw bad(`${what} has a bad magic number`);
    // A leaf directory may be down to one data block, but a single-block directory has only that.
    if (isBlockForm && !singleBlock) throw bad(`${what} is a single-block directory's block in a larger directory`);
    let start = 16;
    if (this.v5) {
      await checkCrc(block, 4, what);
      if (u64(block, 40, "owner") !== dir.ino) throw bad(`${what} belongs to inode ${block.readBigUInt64BE(40)}`);
      start = 64;
    }
    let end = block.length;
    if (isBlockForm) {
      const leafCount = block.readUInt32BE(block.length - 8);
      end = block.length - 8 - leafCount * 8;
      if (leafCount < 1 || end < start) throw bad(`${what} claims ${leafCount} leaf entries, more than it holds`);
    }
    const ftype = this.sb.ftype ? 1 : 0;
    for (let at = start; at < end; ) {
      if (end - at < 8) throw bad(`${what} has an entry crossing its end`);
      if (block.readUInt16BE(at) === 0xffff) {
        const length = block.readUInt16BE(at + 2);
        if (length < 8 || length % 8 !== 0 || at + length > end) throw bad(`${what} has a free run of ${length} bytes at ${at}`);
        // Every entry and free run ends with its own offset (its tag), which catches a misread length.
        if (block.readUInt16BE(at + length - 2) !== at) throw bad(`${what} has a misplaced free run at ${at}`);
        at += length;
        continue;
      }
      const nameLength = block[at + 8]!;
      // xfs_dir2_data_entsize: inumber, namelen, name, ftype?, tag, rounded up to 8.
      const length = Math.ceil((8 + 1 + nameLength + ftype + 2) / 8) * 8;
      if (nameLength === 0 || at + length > end) throw bad(`${what} has an entry crossing its end at ${at}`);
      if (block.readUInt16BE(at + length - 2) !== at) throw bad(`${what} has a misplaced entry at ${at}`);
      if (nameLength === name.length && block.subarray(at + 9, at + 9 + nameLength).equals(name)) {
        return u64(block, at, `${what} entry inode number`);
      }
      at += length;
    }
    return undefined;
  }

  /** struct xfs_dir2_sf_hdr then xfs_dir2_sf_entry: inode numbers are 4 bytes, or 8 when i8count is set. */
  private lookupShortForm(dir: Inode, name: Buffer): number | undefined {
    const what = `directory ${dir.ino}`;
    if (dir.size > dir.fork.length || dir.size < 6) throw bad(`${what} is ${dir.size} bytes, which its inode cannot hold`);
    const fork = dir.fork.subarray(0, dir.size);
    const count = fork[0]!;
    const inoSize = fork[1]! > 0 ? 8 : 4;
    const ftype = this.sb.ftype ? 1 : 0;
    const readIno = (at: number) => (inoSize === 8 ? u64(fork, at, `${what} entry inode number`) : fork.readUInt32BE(at));
    let at = 2 + inoSize;
    if (at > fork.length) throw bad(`${what} is cut short`);
    for (let i = 0; i < count; i++) {
      if (at + 3 > fork.length) throw bad(`${what} is cut short`);
      const nameLength = fork[at]!;
      const length = 3 + nameLength + ftype + inoSize;
      if (nameLength === 0 || at + length > fork.length) throw bad(`${what} has an entry crossing its end`);
      if (nameLength === name.length && fork.subarray(at + 3, at + 3 + nameLength).equals(name)) return readIno(at + 3 + nameLength + ftype);
      at += length;
    }
    return undefined;
  }
}

/** A path's names, "." and empty ones dropped; a path longer than the limit is refused. */
function components(path: string): string[] {
  const names = path.split("/").filter((name) => name !== "" && name !== ".");
  if (names.length > FS_LIMITS.pathComponents) throw bad(`path ${path.slice(0, 80)} has more than ${FS_LIMITS.pathComponents} components`);
  return names;
}
