// The ext2/3/4 reader against file systems mke2fs builds from a folder (-d, no mounting): every
// layout variant reads back the host's bytes, and patched copies of them are refused with the
// reason the patch put there.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { closeSync, mkdirSync, openSync, readFileSync, symlinkSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import { bufferSource, type ByteSource } from "../src/formats/disk/source.js";
import { openExt } from "../src/inspect/fs/ext.js";
import { FileSystemError, type FileSystem } from "../src/inspect/fs/filesystem.js";
import { run, scratch } from "./helpers/tools.js";

const dir = scratch("kiln-ext-");
const tree = join(dir, "tree");
const KIB = 1024;
const MANY = 2500;
const LONG_DIR = "a-directory-name-long-enough-to-push-the-link-target-past-sixty-bytes";
const env = { E2FSPROGS_FAKE_TIME: "1700000000" };
const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");
const host = (path: string) => readFileSync(join(tree, path));

/** A file of holes with a line of text at each offset. It ends in data: mke2fs 1.47.0 -d with
 * inline_data cuts a file's trailing hole short. */
function sparse(path: string, islands: number[]) {
  const fd = openSync(join(tree, path), "w");
  try {
    for (const at of islands) writeSync(fd, Buffer.from(`island at ${at}\n`), 0, undefined, at);
  } finally {
    closeSync(fd);
  }
}

/** The tree every image holds: what inspection looks for, and what forces each mapping. */
function makeTree() {
  for (const d of ["etc", "usr/lib", "usr/bin", `usr/share/${LONG_DIR}`, "a/b/c/d", "many", "small"]) mkdirSync(join(tree, d), { recursive: true });
  // Longer than i_block, so an inline_data image keeps its tail in the system.data xattr.
  writeFileSync(join(tree, "usr/lib/os-release"), 'NAME="Kiln Linux"\nID=kiln\nVERSION_ID="1.0"\nPRETTY_NAME="Kiln Linux 1.0 (test)"\n');
  symlinkSync("../usr/lib/os-release", join(tree, "etc/os-release"));
  symlinkSync("/usr/lib/os-release", join(tree, "etc/absolute"));
  writeFileSync(join(tree, `usr/share/${LONG_DIR}/release`), "reached through a slow symlink\n");
  symlinkSync(`../usr/share/${LONG_DIR}/release`, join(tree, "etc/slow"));
  symlinkSync("/nowhere/at/all", join(tree, "etc/dangling"));
  symlinkSync("loop-b", join(tree, "etc/loop-a"));
  symlinkSync("loop-a", join(tree, "etc/loop-b"));
  writeFileSync(join(tree, "etc/hostname"), "kiln\n");
  writeFileSync(join(tree, "a/b/c/d/nested"), "four levels down\n");
  symlinkSync("b/c", join(tree, "a/through"));
  // 5 MB: past the 12 direct and 1024 single-indirect blocks of a 4 KiB ext2 map.
  writeFileSync(join(tree, "usr/bin/big"), randomBytes(5_000_000));
  // 400 one-block islands: 400 extents, a two-level tree on 1 KiB ext4.
  sparse(
    "usr/bin/sparse",
    Array.from({ length: 400 }, (_, i) => i * 8 * KIB),
  );
  // Islands in the direct, single, double and (on 1 KiB blocks, past 64.3 MiB) triple-indirect ranges.
  sparse("usr/bin/deep", [0, 300 * KIB, 10 * 1024 * KIB, 66 * 1024 * KIB]);
  for (let i = 0; i < MANY; i++) writeFileSync(join(tree, `many/entry-${i}`), i % 500 === 7 ? `entry ${i}\n` : "");
  for (const name of ["first-one", "second-one", "third-one", "fourth-one", "fifth-one"]) writeFileSync(join(tree, "small", name), name);
}

interface Variant {
  name: string;
  mkfs: string;
  args: string[];
  /** e2fsck -D: rebuild directories as htrees (mke2fs -d writes them linear). */
  htree?: boolean;
  /** What the image must show for the variant to test what it is for (debugfs command, pattern). */
  proves?: [string, RegExp][];
}

const VARIANTS: Variant[] = [
  { name: "ext2, 4 KiB blocks (block map to double indirect)", mkfs: "mkfs.ext2", args: ["-b", "4096"], proves: [["stat /usr/bin/big", /\(DIND\)/]] },
  {
    name: "ext2, 1 KiB blocks, 128-byte inodes (triple indirect)",
    mkfs: "mkfs.ext2",
    args: ["-b", "1024", "-I", "128"],
    proves: [["stat /usr/bin/deep", /\(TIND\)/]],
  },
  { name: "ext3 (journal, block map)", mkfs: "mkfs.ext3", args: ["-b", "4096"], proves: [["stats", /has_journal/]] },
  {
    name: "ext4 (extents, 64bit, htree)",
    mkfs: "mkfs.ext4",
    args: ["-b", "4096"],
    htree: true,
    proves: [
      ["stats", /64bit/],
      ["stat /many", /Flags: 0x81000/],
      ["ex /usr/bin/sparse", /^ 1\/ 1/m],
    ],
  },
  {
    name: "ext4, 1 KiB blocks (two-level extent tree)",
    mkfs: "mkfs.ext4",
    args: ["-b", "1024"],
    htree: true,
    proves: [
      ["ex /usr/bin/sparse", /^ 2\/ 2/m],
      ["stat /many", /Flags: 0x81000/],
    ],
  },
  {
    name: "ext4 without 64bit (32-byte descriptors)",
    mkfs: "mkfs.ext4",
    args: ["-b", "4096", "-O", "^64bit"],
    proves: [["stats", /^(?!.*64bit)Filesystem features:.*extent/m]],
  },
  { name: "ext4 without extents (block map)", mkfs: "mkfs.ext4", args: ["-b", "4096", "-O", "^extents,^64bit"], proves: [["stat /usr/bin/big", /\(DIND\)/]] },
  {
    name: "ext4 with inline_data",
    mkfs: "mkfs.ext4",
    args: ["-b", "4096", "-O", "inline_data"],
    // os-release is 79 bytes: 60 in i_block and 19 in the system.data xattr; /a/b is an inline directory.
    proves: [
      ["stat /etc/hostname", /Flags: 0x10000000/],
      ["stat /usr/lib/os-release", /system\.data \(19\)/],
      ["stat /a/b", /Type: directory .*Flags: 0x10000000/],
    ],
  },
  {
    // 64 groups of 512 blocks and 64 inodes, 16 descriptors a block: /many's later entries live in
    // groups (past 18, inode 1153) whose descriptors sit in the second and third meta groups.
    name: "ext4 with meta_bg",
    mkfs: "mkfs.ext4",
    args: ["-b", "1024", "-g", "512", "-i", "8192", "-O", "meta_bg,^resize_inode"],
    proves: [
      ["stats", /meta_bg/],
      [`stat /many/entry-${MANY - 1}`, /Inode: (1[2-9]\d\d|[2-9]\d\d\d)\b/],
    ],
  },
];

const images = new Map<string, Promise<string>>();
let treeMade: Promise<void> | undefined;

function image(variant: Variant): Promise<string> {
  let made = images.get(variant.name);
  if (!made) {
    made = (async () => {
      treeMade ??= Promise.resolve().then(makeTree);
      await treeMade;
      const file = join(dir, `${images.size}.img`);
      await run(variant.mkfs, ["-q", "-F", "-U", "2b1e0c39-6d7e-4b4c-9a55-0f5b4f1d7a01", ...variant.args, "-d", tree, file, "32M"], { env });
      if (variant.htree) await run("e2fsck", ["-f", "-y", "-D", file], { env }).catch(() => undefined); // exits 1 when it rewrote directories
      for (const [command, pattern] of variant.proves ?? []) assert.match(await debugfs(file, command), pattern, `${variant.name}: ${command}`);
      return file;
    })();
    images.set(variant.name, made);
  }
  return made;
}

const debugfs = (file: string, command: string) => run("debugfs", ["-R", command, file]);

async function open(source: ByteSource): Promise<FileSystem> {
  const fs = await openExt(source);
  assert.ok(fs, "openExt found no ext superblock");
  assert.equal(fs.type, "ext");
  return fs;
}

const openFile = async (variant: Variant) => open(bufferSource(readFileSync(await image(variant))));

function rejectsWith(promise: Promise<unknown>, message: RegExp) {
  return assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof FileSystemError, `expected FileSystemError, got ${String(error)}`);
    assert.match(error.message, message);
    return true;
  });
}

before(() => {
  treeMade ??= Promise.resolve().then(makeTree);
  return treeMade;
});

for (const variant of VARIANTS) {
  describe(variant.name, () => {
    let fs: FileSystem;
    before(async () => {
      fs = await openFile(variant);
    });

    it("reads os-release through relative, absolute and slow symlinks", async () => {
      const release = host("usr/lib/os-release");
      assert.deepEqual(await fs.readFile("/etc/os-release", 4096), release);
      assert.deepEqual(await fs.readFile("/etc/absolute", 4096), release);
      assert.deepEqual(await fs.readFile("/usr/lib/os-release", 4096), release);
      assert.deepEqual(await fs.readFile("/etc/slow", 4096), host(`usr/share/${LONG_DIR}/release`));
      assert.deepEqual(await fs.readFile("/etc/hostname", 4096), Buffer.from("kiln\n"));
      assert.deepEqual(await fs.readFile("/a/b/c/d/nested", 4096), host("a/b/c/d/nested"));
      assert.deepEqual(await fs.readFile("/a/through/d/nested", 4096), host("a/b/c/d/nested"), "a symlink to a directory mid-path");
      assert.deepEqual(
        await fs.readFile("/a/through/../../../etc/./hostname", 4096),
        Buffer.from("kiln\n"),
        '".." after a symlink leaves the directory it reached',
      );
      for (const name of ["first-one", "fifth-one"]) assert.deepEqual(await fs.readFile(`/small/${name}`, 4096), Buffer.from(name));
    });

    it("reads large, sparse and deeply mapped files byte for byte", async () => {
      for (const path of ["usr/bin/big", "usr/bin/sparse", "usr/bin/deep"]) {
        const bytes = await fs.readFile(`/${path}`, 100 * 1024 * 1024);
        assert.ok(bytes);
        assert.equal(sha256(bytes), sha256(host(path)), path);
      }
    });

    it("reads at most maxBytes", async () => {
      const big = host("usr/bin/big");
      assert.deepEqual(await fs.readFile("/usr/bin/big", 0), Buffer.alloc(0));
      assert.deepEqual(await fs.readFile("/usr/bin/big", 1000), big.subarray(0, 1000));
      assert.deepEqual(await fs.readFile("/usr/bin/big", 1_234_567), big.subarray(0, 1_234_567));
      assert.deepEqual(await fs.readFile("/etc/os-release", 4), Buffer.from("NAME"));
      const deep = await fs.readFile("/usr/bin/deep", 10 * 1024 * KIB + 9);
      assert.deepEqual(deep, host("usr/bin/deep").subarray(0, 10 * 1024 * KIB + 9));
    });

    it(`finds entries among ${MANY} in one directory`, async () => {
      assert.deepEqual(await fs.readFile("/many/entry-7", 100), Buffer.from("entry 7\n"));
      assert.deepEqual(await fs.readFile(`/many/entry-${MANY - 493}`, 100), Buffer.from(`entry ${MANY - 493}\n`));
      assert.deepEqual(await fs.readFile(`/many/entry-${MANY - 1}`, 100), Buffer.alloc(0));
      assert.equal(await fs.readFile(`/many/entry-${MANY}`, 100), undefined);
    });

    it("answers undefined for what is not a regular file", async () => {
      for (const path of ["/etc/missing", "/missing/os-release", "/etc", "/", "/many", "/etc/dangling", "/etc/hostname/below", "/a/through"]) {
        assert.equal(await fs.readFile(path, 100), undefined, path);
      }
    });

    it("refuses a symlink loop", async () => {
      await rejectsWith(fs.readFile("/etc/loop-a", 100), /more than 8 symbolic links resolving \/etc\/loop-a/);
    });
  });
}

describe("not ext", () => {
  it("answers undefined without the magic", async () => {
    assert.equal(await openExt(bufferSource(Buffer.alloc(4 * 1024 * 1024))), undefined);
    assert.equal(await openExt(bufferSource(Buffer.alloc(1000))), undefined);
    const fat = join(dir, "fat.img");
    await run("mkfs.vfat", ["-C", fat, "4096"]);
    assert.equal(await openExt(bufferSource(readFileSync(fat))), undefined);
  });

  it("answers undefined for an external journal device", async () => {
    const journal = join(dir, "journal.img");
    await run("mke2fs", ["-q", "-F", "-O", "journal_dev", "-b", "4096", journal, "8M"], { env });
    const bytes = readFileSync(journal);
    assert.equal(bytes.readUInt16LE(1024 + 0x38), 0xef53);
    assert.equal(await openExt(bufferSource(bytes)), undefined);
  });
});

// Patched copies of real images. Offsets come from the images themselves (debugfs imap, the
// superblock) and the struct layouts in Documentation/filesystems/ext4/.
describe("hostile ext images", () => {
  const ext4 = VARIANTS.find((v) => v.name.startsWith("ext4 (extents"))!;
  const ext2 = VARIANTS.find((v) => v.name.startsWith("ext2, 4 KiB"))!;

  async function copy(variant: Variant) {
    const file = await image(variant);
    return { file, bytes: Buffer.from(readFileSync(file)), blockSize: 1024 << readFileSync(file).readUInt32LE(1024 + 0x18) };
  }

  /** Byte offset of a file's inode, from debugfs imap. */
  async function inodeAt(file: string, path: string, blockSize: number): Promise<number> {
    const found = /located at block (\d+), offset 0x([0-9a-f]+)/.exec(await debugfs(file, `imap ${path}`));
    assert.ok(found, `imap ${path}`);
    return Number(found[1]) * blockSize + parseInt(found[2]!, 16);
  }

  async function firstBlock(file: string, path: string): Promise<number> {
    const blocks = (await debugfs(file, `blocks ${path}`)).trim().split(/\s+/).map(Number);
    assert.ok(blocks[0]! > 0, `blocks ${path}`);
    return blocks[0]!;
  }

  it("refuses a directory entry whose rec_len runs past its block", async () => {
    const { file, bytes, blockSize } = await copy(ext4);
    const block = await firstBlock(file, "/etc");
    // The first entry is "."; ext4_dir_entry_2.rec_len is at +4.
    assert.equal(bytes.toString("latin1", block * blockSize + 8, block * blockSize + 9), ".");
    bytes.writeUInt16LE(blockSize + 64, block * blockSize + 4);
    const fs = await open(bufferSource(bytes));
    await rejectsWith(fs.readFile("/etc/hostname", 100), new RegExp(`block 0: the entry at 0 has rec_len ${blockSize + 64}, past its block`));
  });

  it("refuses a directory entry whose name runs past its rec_len", async () => {
    const { file, bytes, blockSize } = await copy(ext4);
    const at = (await firstBlock(file, "/etc")) * blockSize;
    bytes[at + 6] = 200; // name_len of "." (rec_len 12)
    const fs = await open(bufferSource(bytes));
    await rejectsWith(fs.readFile("/etc/hostname", 100), /the entry at 0 has a 200-byte name in rec_len 12/);
  });

  it("refuses an extent pointing beyond the file system", async () => {
    const { file, bytes, blockSize } = await copy(ext4);
    const inode = await inodeAt(file, "/usr/bin/big", blockSize);
    const iBlock = inode + 0x28;
    assert.equal(bytes.readUInt16LE(iBlock), 0xf30a);
    assert.equal(bytes.readUInt16LE(iBlock + 6), 0, "big is a depth-0 tree");
    const blocks = bytes.readUInt32LE(1024 + 0x04);
    bytes.writeUInt32LE(blocks + 10, iBlock + 12 + 8); // the first ext4_extent's ee_start_lo
    const fs = await open(bufferSource(bytes));
    await rejectsWith(fs.readFile("/usr/bin/big", 100), /inode \d+'s extent tree has an extent at blocks \d+-\d+, outside the file system of \d+ blocks/);
    assert.deepEqual(await fs.readFile("/etc/hostname", 100), Buffer.from("kiln\n"), "the rest of the file system still reads");
  });

  it("refuses an extent tree node with a bad magic, and a node that lies about its depth", async () => {
    const { file, bytes, blockSize } = await copy(ext4);
    const iBlock = (await inodeAt(file, "/usr/bin/sparse", blockSize)) + 0x28;
    assert.equal(bytes.readUInt16LE(iBlock + 6), 1, "sparse is a depth-1 tree");
    const leaf = bytes.readUInt32LE(iBlock + 12 + 4); // the first ext4_extent_idx's ei_leaf_lo

    const badMagic = Buffer.from(bytes);
    badMagic.writeUInt16LE(0xf30b, leaf * blockSize);
    await rejectsWith((await open(bufferSource(badMagic))).readFile("/usr/bin/sparse", 100), new RegExp(`extent tree node at block ${leaf} has a bad magic`));

    const deeper = Buffer.from(bytes);
    deeper.writeUInt16LE(2, iBlock + 6);
    await rejectsWith((await open(bufferSource(deeper))).readFile("/usr/bin/sparse", 100), new RegExp(`node at block ${leaf} has depth 0, not 1`));

    const tooDeep = Buffer.from(bytes);
    tooDeep.writeUInt16LE(17, iBlock + 6);
    await rejectsWith((await open(bufferSource(tooDeep))).readFile("/usr/bin/sparse", 100), /extent tree is 17 levels deep/);

    // A leaf that claims more entries than a block holds.
    const overfull = Buffer.from(bytes);
    overfull.writeUInt16LE(blockSize, leaf * blockSize + 2);
    await rejectsWith((await open(bufferSource(overfull))).readFile("/usr/bin/sparse", 100), /claims 4096 of \d+ entries/);
  });

  it("reads an uninitialised extent as zeros", async () => {
    const { file, bytes, blockSize } = await copy(ext4);
    const iBlock = (await inodeAt(file, "/usr/bin/big", blockSize)) + 0x28;
    const extents = bytes.readUInt16LE(iBlock + 2);
    const length = bytes.readUInt16LE(iBlock + 12 + 4);
    assert.ok(length < 32768);
    bytes.writeUInt16LE(length + 32768, iBlock + 12 + 4);
    const read = await (await open(bufferSource(bytes))).readFile("/usr/bin/big", 10_000_000);
    const expected = Buffer.from(host("usr/bin/big"));
    expected.fill(0, 0, Math.min(expected.length, length * blockSize));
    assert.ok(extents >= 1 && length * blockSize > 0);
    assert.equal(sha256(read!), sha256(expected));
  });

  it("refuses an indirect block outside the file system", async () => {
    const { file, bytes, blockSize } = await copy(ext2);
    const iBlock = (await inodeAt(file, "/usr/bin/big", blockSize)) + 0x28;
    bytes.writeUInt32LE(0x7fffffff, iBlock + 13 * 4); // i_block[13], the double-indirect block
    const fs = await open(bufferSource(bytes));
    await rejectsWith(fs.readFile("/usr/bin/big", 10_000_000), /inode \d+'s indirect block 2147483647 is outside the file system/);
    // The direct and single-indirect range never needs it.
    assert.deepEqual(await fs.readFile("/usr/bin/big", 100_000), host("usr/bin/big").subarray(0, 100_000));
  });

  it("refuses a group descriptor whose inode table is outside the file system", async () => {
    const { file, bytes, blockSize } = await copy(ext4);
    const found = /Group descriptors at (\d+)/.exec(await run("dumpe2fs", [file]));
    assert.ok(found);
    const desc = Number(found[1]) * blockSize;
    bytes.writeUInt32LE(0xfffffff0, desc + 0x08); // group 0's bg_inode_table_lo
    await rejectsWith(openExt(bufferSource(bytes)), /group 0's inode table \(block 4294967280, \d+ blocks\) lies outside the file system of 8192 blocks/);
  });

  it("refuses a directory entry naming an inode past the last", async () => {
    const { file, bytes, blockSize } = await copy(ext2);
    const at = (await firstBlock(file, "/etc")) * blockSize;
    // Walk /etc's first block to "hostname" and point it past s_inodes_count.
    let offset = 0;
    while (bytes.toString("latin1", at + offset + 8, at + offset + 8 + bytes[at + offset + 6]!) !== "hostname") offset += bytes.readUInt16LE(at + offset + 4);
    bytes.writeUInt32LE(bytes.readUInt32LE(1024) + 1, at + offset);
    await rejectsWith((await open(bufferSource(bytes))).readFile("/etc/hostname", 100), /names inode \d+, outside the file system/);
  });

  it("refuses a directory entry whose type byte disagrees with its inode", async () => {
    const { file, bytes, blockSize } = await copy(ext4);
    const at = (await firstBlock(file, "/etc")) * blockSize;
    let offset = 0;
    while (bytes.toString("latin1", at + offset + 8, at + offset + 8 + bytes[at + offset + 6]!) !== "hostname") offset += bytes.readUInt16LE(at + offset + 4);
    assert.equal(bytes[at + offset + 7], 1, "EXT4_FT_REG_FILE");
    bytes[at + offset + 7] = 2; // EXT4_FT_DIR
    await rejectsWith(
      (await open(bufferSource(bytes))).readFile("/etc/hostname", 100),
      /directory entry "hostname" in inode \d+ disagrees with the type of inode \d+/,
    );
  });

  it("refuses sizes past the bounds: a huge directory, inline data longer than the inode", async () => {
    const { file, bytes, blockSize } = await copy(ext4);
    const etc = await inodeAt(file, "/etc", blockSize);
    bytes.writeUInt32LE(0x10000000, etc + 0x04); // i_size_lo: 256 MiB of directory
    await rejectsWith((await open(bufferSource(bytes))).readFile("/etc/hostname", 100), /directory \d+ is 268435456 bytes, more than Kiln scans/);

    const inline = VARIANTS.find((v) => v.name.includes("inline_data"))!;
    const patched = await copy(inline);
    const hostname = await inodeAt(patched.file, "/etc/hostname", patched.blockSize);
    patched.bytes.writeUInt32LE(500, hostname + 0x04);
    await rejectsWith((await open(bufferSource(patched.bytes))).readFile("/etc/hostname", 100), /inline inode \d+ claims 500 bytes but holds 60/);
  });

  it("refuses a truncated image, and superblocks that lie", async () => {
    const { bytes } = await copy(ext4);
    await rejectsWith(openExt(bufferSource(bytes.subarray(0, bytes.length / 2))), /claims 8192 blocks of 4096 bytes but its partition holds 16777216 bytes/);

    const patched = (offset: number, value: number, width = 4) => {
      const copy = Buffer.from(bytes);
      if (width === 4) copy.writeUInt32LE(value, 1024 + offset);
      else copy.writeUInt16LE(value, 1024 + offset);
      return bufferSource(copy);
    };
    const incompat = bytes.readUInt32LE(1024 + 0x60);
    await rejectsWith(openExt(patched(0x60, incompat | 0x10000)), /ext feature encrypt is not supported/);
    await rejectsWith(openExt(patched(0x60, incompat | 0x20000)), /ext feature casefold is not supported/);
    await rejectsWith(openExt(patched(0x60, incompat | 0x400000)), /unknown ext incompatible features 0x400000/);
    await rejectsWith(openExt(patched(0x18, 9)), /absurd block size 2\^19/);
    await rejectsWith(openExt(patched(0x58, 100, 2)), /absurd inode size 100/);
    await rejectsWith(openExt(patched(0x28, 0)), /absurd inodes per group 0/);
    await rejectsWith(openExt(patched(0x00, 0xffffffff)), /inodes do not fit/);
  });

  it("reads through a journal that needs recovery", async () => {
    // needs_recovery: the checkpointed metadata is what Kiln reads (see ext.ts).
    const { bytes } = await copy(VARIANTS.find((v) => v.name.startsWith("ext3"))!);
    bytes.writeUInt32LE(bytes.readUInt32LE(1024 + 0x60) | 0x4, 1024 + 0x60);
    const fs = await open(bufferSource(bytes));
    assert.deepEqual(await fs.readFile("/etc/os-release", 4096), host("usr/lib/os-release"));
  });
});
