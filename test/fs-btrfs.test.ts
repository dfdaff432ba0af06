// btrfs reader: file systems made by mkfs.btrfs --rootdir (no mount needed), read back by path
// and compared with the host files; then the same images patched into lies.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { closeSync, mkdirSync, openSync, readFileSync, readSync, symlinkSync, writeFileSync } from "node:fs";
import { open, truncate } from "node:fs/promises";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import { deflateSync } from "node:zlib";
import { bufferSource, fileSource } from "../src/formats/disk/source.js";
import { btrfsNameHash, openBtrfs } from "../src/inspect/fs/btrfs.js";
import { FileSystemError, type FileSystem } from "../src/inspect/fs/filesystem.js";
import { run, scratch } from "./helpers/tools.js";
import { crc32c } from "./helpers/checksums.js";

const MiB = 1024 * 1024;
const dir = scratch("kiln-btrfs-");
const root = join(dir, "root");
const OS_RELEASE = 'NAME="Kiln Test Linux"\nID=kilntest\nVERSION_ID="1.0"\nPRETTY_NAME="Kiln Test Linux 1.0"\n';
const ZLIB_TEXT = Array.from({ length: 2000 }, (_, i) => `line ${i} of a file btrfs will hold zlib-compressed\n`)
  .join("")
  .slice(0, 65536);
const INLINE_TEXT = "inline text, compressed in place. ".repeat(40);

/** The host tree every image is made from. */
function makeTree(): void {
  mkdirSync(join(root, "etc"), { recursive: true });
  mkdirSync(join(root, "usr/lib"), { recursive: true });
  mkdirSync(join(root, "usr/bin"), { recursive: true });
  mkdirSync(join(root, "a/b/c/d"), { recursive: true });
  mkdirSync(join(root, "many"));
  writeFileSync(join(root, "usr/lib/os-release"), OS_RELEASE);
  symlinkSync("../usr/lib/os-release", join(root, "etc/os-release"));
  symlinkSync("/usr/lib/os-release", join(root, "abs-link"));
  symlinkSync("/a/b", join(root, "dir-link"));
  symlinkSync("loop2", join(root, "loop1"));
  symlinkSync("loop1", join(root, "loop2"));
  writeFileSync(join(root, "tiny.txt"), "hello\n");
  writeFileSync(join(root, "usr/bin/busybox"), randomBytes(5 * MiB + 12345));
  writeFileSync(join(root, "a/b/c/d/deep.txt"), "deep down\n");
  writeFileSync(join(root, "zlib.txt"), ZLIB_TEXT);
  writeFileSync(join(root, "inline.txt"), INLINE_TEXT);
  for (let i = 0; i < 3000; i++) writeFileSync(join(root, "many", `entry-${i}`), `entry ${i}\n`);
}

/** A sparse image file made by mkfs.btrfs from the host tree. */
async function mkfs(name: string, options: string[] = []): Promise<string> {
  const image = join(dir, name);
  writeFileSync(image, "");
  await truncate(image, 120 * MiB);
  await run("mkfs.btrfs", ["-q", "-f", ...options, "--rootdir", root, image]);
  return image;
}

async function withFs<T>(image: string, use: (fs: FileSystem) => Promise<T>): Promise<T> {
  const source = await fileSource(image);
  try {
    const fs = await openBtrfs(source);
    assert.ok(fs, "the btrfs magic is found");
    return await use(fs);
  } finally {
    await source.close();
  }
}

const host = (path: string) => readFileSync(join(root, path));

// Where things are, as btrfs-progs itself prints them: tree dumps name each leaf's logical
// address and each item's index, offset and size; the chunk tree maps logical to physical.
interface Chunk {
  logical: number;
  length: number;
  stripes: number[];
}

async function chunks(image: string): Promise<Chunk[]> {
  const dump = await run("btrfs", ["inspect-internal", "dump-tree", "-t", "chunk", image]);
  const out: Chunk[] = [];
  for (const part of dump.split(/CHUNK_ITEM /).slice(1)) {
    const logical = Number(/^(\d+)\)/.exec(part)![1]);
    const length = Number(/length (\d+)/.exec(part)![1]);
    const stripes = [...part.split(/item \d+ key/)[0]!.matchAll(/stripe \d+ devid \d+ offset (\d+)/g)].map((m) => Number(m[1]));
    out.push({ logical, length, stripes });
  }
  return out;
}

function physical(map: Chunk[], logical: number): number[] {
  const chunk = map.find((c) => logical >= c.logical && logical < c.logical + c.length);
  assert.ok(chunk, `logical ${logical} is in a chunk`);
  return chunk.stripes.map((s) => s + logical - chunk.logical);
}

interface Located {
  leaf: number;
  index: number;
  /** Offset in the leaf of the item's data. */
  data: number;
  size: number;
}

/** The leaf item with key (inode of `name`, TYPE, offset) in the fs tree. */
async function findItem(image: string, name: string, type: string, offset: number): Promise<Located> {
  const dump = await run("btrfs", ["inspect-internal", "dump-tree", "-t", "fs", image]);
  // The inode's INODE_REF (key: ino INODE_REF parent) names it.
  const ref = new RegExp(`key \\((\\d+) INODE_REF \\d+\\)[^\\n]*\\n\\s+index \\d+ namelen \\d+ name: ${name.replace(".", "\\.")}\\n`).exec(dump);
  assert.ok(ref, `${name} has an INODE_REF`);
  const ino = Number(ref[1]);
  let leaf = 0;
  for (const line of dump.split("\n")) {
    const leafLine = /^leaf (\d+) items/.exec(line);
    if (leafLine) leaf = Number(leafLine[1]);
    const item = /^\titem (\d+) key \((\d+) (\w+) (\d+)\) itemoff (\d+) itemsize (\d+)/.exec(line);
    if (item && Number(item[2]) === ino && item[3] === type && item[4] === String(offset)) {
      return { leaf, index: Number(item[1]), data: 101 + Number(item[5]), size: Number(item[6]) };
    }
  }
  throw new Error(`no item (${ino} ${type} ${offset}) in ${image}`);
}

async function copyImage(image: string, name: string): Promise<string> {
  const copy = join(dir, name);
  await run("cp", ["--sparse=always", image, copy]);
  return copy;
}

/** A btrfs checksum field: the CRC-32C little-endian, by the tests' own CRC-32C (not the library Kiln uses). */
async function crc32cLE(data: Uint8Array): Promise<Buffer> {
  const out = Buffer.alloc(4);
  out.writeUInt32LE(crc32c(data));
  return out;
}

/** Rewrites a tree block (every copy, or only `copies`), restamping its crc32c unless asked not to. */
async function patchBlock(
  image: string,
  logical: number,
  mutate: (block: Buffer) => void,
  options: { copies?: number[]; restamp?: boolean; nodeSize?: number } = {},
): Promise<void> {
  const nodeSize = options.nodeSize ?? 16384;
  const offsets = physical(await chunks(image), logical);
  const handle = await open(image, "r+");
  try {
    for (const [i, at] of offsets.entries()) {
      if (options.copies && !options.copies.includes(i)) continue;
      const block = Buffer.alloc(nodeSize);
      await handle.read(block, 0, nodeSize, at);
      mutate(block);
      if (options.restamp !== false) (await crc32cLE(block.subarray(0x20))).copy(block, 0);
      await handle.write(block, 0, nodeSize, at);
    }
  } finally {
    await handle.close();
  }
}

async function patchBytes(image: string, at: number, bytes: Buffer): Promise<void> {
  const handle = await open(image, "r+");
  try {
    await handle.write(bytes, 0, bytes.length, at);
  } finally {
    await handle.close();
  }
}

async function rejects(image: string, path: string, message: RegExp): Promise<void> {
  await assert.rejects(
    withFs(image, (fs) => fs.readFile(path, 64 * MiB)),
    (error: unknown) => error instanceof FileSystemError && message.test(error.message),
  );
}

describe("btrfs", () => {
  let plain: string;
  let small: string;
  let sha: string;

  before(async () => {
    makeTree();
    // Default: crc32c, 16 KiB nodes, DUP metadata. Then 4 KiB nodes (a deeper tree) with
    // xxhash64 and single metadata, and sha256.
    plain = await mkfs("plain.img");
    small = await mkfs("small.img", ["--csum", "xxhash", "-n", "4096", "-m", "single"]);
    sha = await mkfs("sha.img", ["--csum", "sha256"]);
  });

  it("has fixtures whose fs trees are several levels deep", async () => {
    const level = async (image: string) => {
      const dump = await run("btrfs", ["inspect-internal", "dump-tree", "-t", "fs", image]);
      return Number(/^(?:node|leaf) \d+ level (\d+)/m.exec(dump)?.[1] ?? 0);
    };
    assert.ok((await level(plain)) >= 1);
    assert.ok((await level(small)) >= 2);
  });

  it("has a CRC-32C of its own that gives the superblock checksum mkfs.btrfs wrote", () => {
    // The tests restamp tree blocks with it: it must agree with btrfs-progs, an outside writer.
    const superblock = Buffer.alloc(4096);
    const file = openSync(plain, "r");
    try {
      assert.equal(readSync(file, superblock, 0, 4096, 65536), 4096);
    } finally {
      closeSync(file);
    }
    assert.equal(superblock.toString("latin1", 0x40, 0x48), "_BHRfS_M");
    assert.equal(superblock.readUInt16LE(0xc4), 0, "the superblock's checksum type is crc32c");
    assert.equal(crc32c(superblock.subarray(0x20)), superblock.readUInt32LE(0));
  });

  it("hashes names as btrfs_name_hash does", () => {
    // The root tree's DIR_ITEM for "default", as btrfs inspect-internal dump-tree prints it.
    assert.equal(btrfsNameHash(Buffer.from("default")), 2378154706);
  });

  for (const [name, image] of [
    ["crc32c, 16 KiB nodes, DUP", () => plain],
    ["xxhash64, 4 KiB nodes", () => small],
    ["sha256", () => sha],
  ] as const) {
    it(`reads files back byte for byte (${name})`, async () => {
      await withFs(image(), async (fs) => {
        assert.equal(fs.type, "btrfs");
        assert.deepEqual(await fs.readFile("/etc/os-release", 4096), Buffer.from(OS_RELEASE));
        assert.deepEqual(await fs.readFile("/abs-link", 4096), Buffer.from(OS_RELEASE));
        assert.deepEqual(await fs.readFile("/tiny.txt", 4096), Buffer.from("hello\n"));
        assert.deepEqual(await fs.readFile("/a/b/c/d/deep.txt", 4096), Buffer.from("deep down\n"));
        assert.deepEqual(await fs.readFile("/dir-link/c/../c/d/deep.txt", 4096), Buffer.from("deep down\n"));
        assert.deepEqual(await fs.readFile("/usr/lib/../../etc/./os-release", 4096), Buffer.from(OS_RELEASE));
        assert.deepEqual(await fs.readFile("/usr/bin/busybox", 64 * MiB), host("usr/bin/busybox"));
        assert.deepEqual(await fs.readFile("/zlib.txt", MiB), Buffer.from(ZLIB_TEXT));
        for (const i of [0, 1, 777, 1999, 2999]) assert.deepEqual(await fs.readFile(`/many/entry-${i}`, 100), Buffer.from(`entry ${i}\n`));
      });
    });
  }

  it("keeps to maxBytes, across extent boundaries too", async () => {
    await withFs(plain, async (fs) => {
      const busybox = host("usr/bin/busybox");
      assert.deepEqual(await fs.readFile("/usr/bin/busybox", 1000), busybox.subarray(0, 1000));
      assert.deepEqual(await fs.readFile("/usr/bin/busybox", MiB + 10), busybox.subarray(0, MiB + 10));
      assert.deepEqual(await fs.readFile("/usr/bin/busybox", 0), Buffer.alloc(0));
      assert.deepEqual(await fs.readFile("/etc/os-release", 4), Buffer.from("NAME"));
    });
  });

  it("answers undefined for what is not a regular file", async () => {
    await withFs(small, async (fs) => {
      for (const path of ["/nope", "/etc/nope", "/usr/lib", "/", "/many", "/dir-link", "/tiny.txt/x", "/many/entry-3000", "/many/entry-0x"]) {
        assert.equal(await fs.readFile(path, 4096), undefined, path);
      }
    });
  });

  it("resolves undefined when there is no btrfs magic", async () => {
    assert.equal(await openBtrfs(bufferSource(Buffer.alloc(2 * MiB))), undefined);
    assert.equal(await openBtrfs(bufferSource(Buffer.alloc(4096))), undefined);
  });

  it("reads zlib extents, regular and inline", async () => {
    const image = await copyImage(plain, "zlib.img");
    const map = await chunks(image);
    // Regular: compress the file's 64 KiB extent in place and mark the extent zlib, as the
    // kernel writes it: one zlib stream, padded with zeros to the sector.
    const regular = await findItem(image, "zlib.txt", "EXTENT_DATA", 0);
    const compressed = deflateSync(Buffer.from(ZLIB_TEXT));
    const diskBytes = Math.ceil(compressed.length / 4096) * 4096;
    let diskBytenr = 0;
    await patchBlock(image, regular.leaf, (block) => {
      const item = block.subarray(regular.data);
      diskBytenr = Number(item.readBigUInt64LE(21));
      item[16] = 1;
      item.writeBigUInt64LE(BigInt(diskBytes), 29);
    });
    await patchBytes(image, physical(map, diskBytenr)[0]!, Buffer.concat([compressed, Buffer.alloc(diskBytes - compressed.length)]));
    // Inline: the compressed bytes replace the plain ones and the item shrinks to fit them.
    const inline = await findItem(image, "inline.txt", "EXTENT_DATA", 0);
    const small = deflateSync(Buffer.from(INLINE_TEXT));
    await patchBlock(image, inline.leaf, (block) => {
      const item = block.subarray(inline.data);
      item[16] = 1;
      small.copy(item, 21);
      block.writeUInt32LE(21 + small.length, 101 + inline.index * 25 + 21);
    });
    await withFs(image, async (fs) => {
      assert.deepEqual(await fs.readFile("/zlib.txt", MiB), Buffer.from(ZLIB_TEXT));
      assert.deepEqual(await fs.readFile("/zlib.txt", 70000), Buffer.from(ZLIB_TEXT));
      assert.deepEqual(await fs.readFile("/inline.txt", 4096), Buffer.from(INLINE_TEXT));
    });
    // lzo and zstd extents are refused by name.
    for (const [kind, type] of [
      ["lzo", 2],
      ["zstd", 3],
    ] as const) {
      await patchBlock(image, regular.leaf, (block) => (block[regular.data + 16] = type));
      await rejects(image, "/zlib.txt", new RegExp(`^btrfs ${kind} compression is not supported$`));
    }
  });

  it("reads an extent with no disk bytes as a hole", async () => {
    const image = await copyImage(plain, "hole.img");
    const second = await findItem(image, "busybox", "EXTENT_DATA", MiB);
    await patchBlock(image, second.leaf, (block) => block.writeBigUInt64LE(0n, second.data + 21));
    const expected = Buffer.from(host("usr/bin/busybox"));
    expected.fill(0, MiB, 2 * MiB);
    await withFs(image, async (fs) => assert.deepEqual(await fs.readFile("/usr/bin/busybox", 64 * MiB), expected));
  });

  it("uses the other DUP copy of a block with a bad checksum, and refuses when both are bad", async () => {
    const image = await copyImage(plain, "csum.img");
    const extent = await findItem(image, "busybox", "EXTENT_DATA", 0);
    const flip = (block: Buffer) => (block[extent.data + 30] = block[extent.data + 30]! ^ 0xff);
    await patchBlock(image, extent.leaf, flip, { copies: [0], restamp: false });
    await withFs(image, async (fs) => assert.deepEqual(await fs.readFile("/usr/bin/busybox", 64 * MiB), host("usr/bin/busybox")));
    await patchBlock(image, extent.leaf, flip, { copies: [1], restamp: false });
    await rejects(image, "/usr/bin/busybox", new RegExp(`^btrfs tree block at logical ${extent.leaf} has a bad checksum$`));
  });

  it("refuses an extent outside every chunk", async () => {
    const image = await copyImage(plain, "nochunk.img");
    const extent = await findItem(image, "busybox", "EXTENT_DATA", 0);
    await patchBlock(image, extent.leaf, (block) => block.writeBigUInt64LE(1n << 40n, extent.data + 21));
    await rejects(image, "/usr/bin/busybox", /^btrfs logical address 1099511627776 lies in no chunk$/);
    // The other files still read.
    await withFs(image, async (fs) => assert.deepEqual(await fs.readFile("/etc/os-release", 4096), Buffer.from(OS_RELEASE)));
  });

  it("refuses an extent that reads past its disk extent, overlapping extents, and an item outside its leaf", async () => {
    const image = await copyImage(plain, "lies.img");
    const extent = await findItem(image, "busybox", "EXTENT_DATA", 0);
    await patchBlock(image, extent.leaf, (block) => block.writeBigUInt64LE(BigInt(4 * MiB), extent.data + 45));
    await rejects(image, "/usr/bin/busybox", /reads past its disk extent$/);
    await patchBlock(image, extent.leaf, (block) => block.writeBigUInt64LE(BigInt(MiB), extent.data + 45));
    // The next extent's key moved back into this one.
    const second = await findItem(image, "busybox", "EXTENT_DATA", MiB);
    assert.ok(second.index > 0, "the second extent is not the first item of its leaf");
    await patchBlock(image, second.leaf, (block) => block.writeBigUInt64LE(BigInt(MiB / 2), 101 + second.index * 25 + 9));
    await rejects(image, "/usr/bin/busybox", /^btrfs extent of inode \d+ at file offset 524288 overlaps the one before$/);
    await patchBlock(image, extent.leaf, (block) => block.writeUInt32LE(0xfff0, 101 + extent.index * 25 + 17));
    await rejects(image, "/usr/bin/busybox", new RegExp(`^btrfs tree block at logical ${extent.leaf} has item ${extent.index} outside the leaf$`));
  });

  it("refuses a node that points back at itself", async () => {
    const image = await copyImage(plain, "cycle.img");
    // The fs tree of this image has a root node over leaves (the 3000-entry directory).
    const dump = await run("btrfs", ["inspect-internal", "dump-tree", "-t", "fs", image]);
    const node = /^node (\d+) level 1 items/m.exec(dump);
    assert.ok(node, "the fs tree has a level-1 node");
    const logical = Number(node[1]);
    await patchBlock(image, logical, (block) => {
      const generation = block.readBigUInt64LE(0x50);
      for (let i = 0; i < block.readUInt32LE(0x60); i++) {
        block.writeBigUInt64LE(BigInt(logical), 101 + i * 33 + 17);
        block.writeBigUInt64LE(generation, 101 + i * 33 + 25);
      }
    });
    await rejects(image, "/tiny.txt", new RegExp(`^btrfs tree block at logical ${logical} is level 1 where level 0 was expected$`));
  });

  it("follows the default subvolume, and refuses one the root tree does not hold", async () => {
    const image = await copyImage(plain, "default.img");
    // The root tree directory (objectid 6) names the default subvolume "default"; mkfs points it
    // at FS_TREE (5). Point it at subvolume 300 instead.
    const dump = await run("btrfs", ["inspect-internal", "dump-tree", "-t", "root", image]);
    const leaf = Number(/^leaf (\d+) items/m.exec(dump)![1]);
    const item = /item \d+ key \(ROOT_TREE_DIR DIR_ITEM 2378154706\) itemoff (\d+)/.exec(dump);
    assert.ok(item, "the root tree has the default entry");
    await patchBlock(image, leaf, (block) => {
      const location = 101 + Number(item[1]);
      assert.equal(block.readBigUInt64LE(location), 5n);
      block.writeBigUInt64LE(300n, location);
    });
    await assert.rejects(
      withFs(image, async () => undefined),
      /^FileSystemError: btrfs root tree has no subvolume 300$/,
    );
  });

  it("refuses a symlink loop", async () => {
    await rejects(plain, "/loop1", /^btrfs symbolic links nest deeper than 8 at \/loop1$/);
  });

  it("refuses a file cut short, several devices, and blake2b checksums", async () => {
    const cut = await copyImage(plain, "cut.img");
    await truncate(cut, 32 * MiB);
    await assert.rejects(
      withFs(cut, async () => undefined),
      (error: unknown) => error instanceof FileSystemError && /maps past the end of the device$/.test(error.message),
    );

    const twoDevices = await copyImage(plain, "two.img");
    const handle = await open(twoDevices, "r+");
    const sb = Buffer.alloc(4096);
    await handle.read(sb, 0, 4096, 0x10000);
    sb.writeBigUInt64LE(2n, 0x88);
    (await crc32cLE(sb.subarray(0x20))).copy(sb, 0);
    await handle.write(sb, 0, 4096, 0x10000);
    await handle.close();
    await assert.rejects(
      withFs(twoDevices, async () => undefined),
      /^FileSystemError: btrfs spans 2 devices; Kiln reads single-device file systems only$/,
    );

    const blake = await mkfs("blake.img", ["--csum", "blake2"]);
    await assert.rejects(
      withFs(blake, async () => undefined),
      /^FileSystemError: btrfs checksum type blake2b is not supported$/,
    );
  });
});
