// XFS reads against file systems made by mkfs.xfs from a protofile (no mounting): every format a
// lookup meets (shortform, block, leaf and node directories; local, extent and B-tree forks;
// inline and remote symlinks), v5 and v4, then the same images patched with xfs_db to lie.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { open } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { bufferSource, fileSource, sliceSource, type FileSource } from "../src/formats/disk/source.js";
import { FileSystemError, type FileSystem } from "../src/inspect/fs/filesystem.js";
import { openXfs } from "../src/inspect/fs/xfs.js";
import { run, scratch } from "./helpers/tools.js";

const dir = scratch("kiln-xfs-");
const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");

const osRelease = Buffer.from('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n');
const small = randomBytes(5000);
const big = randomBytes(4 * 1024 * 1024 + 123);
const deep = Buffer.from("five levels down\n");
/** Longer than an inode's literal area, so the link is stored in a block of its own. */
const remoteTarget = `/usr/lib/${"./".repeat(200)}os-release`;
const MANY = 3000;
const manyName = (i: number) => `entry-with-a-longish-name-${String(i).padStart(5, "0")}`;

/** A protofile (mkfs.xfs(8) -p): the root, then per entry "name mode uid gid [source|target]", "$" closing a directory. */
function protofile(): string {
  const files = join(dir, "host");
  writeFileSync(`${files}-os-release`, osRelease);
  writeFileSync(`${files}-small`, small);
  writeFileSync(`${files}-big`, big);
  writeFileSync(`${files}-deep`, deep);
  writeFileSync(`${files}-empty`, "");
  const lines = ["kiln", "0 0", "d--755 0 0"];
  lines.push("etc d--755 0 0", "os-release l--777 0 0 ../usr/lib/os-release", "$");
  lines.push("usr d--755 0 0", "lib d--755 0 0", `os-release ---644 0 0 ${files}-os-release`, "$");
  lines.push("bin d--755 0 0", `small ---755 0 0 ${files}-small`, `big ---755 0 0 ${files}-big`, `empty ---644 0 0 ${files}-empty`, "$", "$");
  lines.push("a d--755 0 0", "b d--755 0 0", "c d--755 0 0", "d d--755 0 0", `deep.txt ---644 0 0 ${files}-deep`, "$", "$", "$", "$");
  // One 4 KiB block of entries (block form), then a few blocks and a leaf (leaf form).
  lines.push("blockdir d--755 0 0", ...Array.from({ length: 40 }, (_, i) => `file${i} ---644 0 0 ${files}-empty`), `last ---644 0 0 ${files}-deep`, "$");
  lines.push("leafdir d--755 0 0", ...Array.from({ length: 400 }, (_, i) => `file${i} ---644 0 0 ${files}-empty`), `last ---644 0 0 ${files}-deep`, "$");
  // Each file takes a block as its entry is added, so the directory's blocks interleave with
  // them: many extents (a B-tree fork) and a node directory with a free index.
  lines.push("many d--755 0 0", ...Array.from({ length: MANY }, (_, i) => `${manyName(i)} ---644 0 0 ${files}-deep`), "$");
  lines.push("abs l--777 0 0 /usr/lib/os-release", "lib l--777 0 0 usr/lib", `remote l--777 0 0 ${remoteTarget}`);
  lines.push("loop1 l--777 0 0 /loop2", "loop2 l--777 0 0 loop1", "dangling l--777 0 0 /nowhere");
  lines.push("$");
  const path = join(dir, "proto");
  writeFileSync(path, `${lines.join("\n")}\n`);
  return path;
}

/** mkfs.xfs refuses file systems under 300 MiB; the file stays sparse. */
async function makeXfs(name: string, options: string[]): Promise<string> {
  const image = join(dir, name);
  const handle = await open(image, "w");
  await handle.truncate(300 * 1024 * 1024);
  await handle.close();
  await run("mkfs.xfs", ["-q", ...options, "-p", join(dir, "proto"), image]);
  return image;
}

/** xfs_db commands on an image; "-x" writes (recomputing v5 CRCs as the kernel would). */
const xfsDb = (image: string, commands: string[], write = false) => run("xfs_db", [write ? "-x" : "-r", ...commands.flatMap((c) => ["-c", c]), image]);

/** One field as xfs_db prints it ("name = value"). */
async function field(image: string, commands: string[], name: string): Promise<string> {
  const out = await xfsDb(image, [...commands, `p ${name}`]);
  const match = new RegExp(`^${name.replace(/[[\].]/g, "\\$&")} = (.*)$`, "m").exec(out);
  assert.ok(match, `xfs_db printed no ${name}: ${out}`);
  return match[1]!;
}

/**
 * mkfs.xfs 6.1 writes a remote symlink's target at the start of its block without the v5 header
 * (struct xfs_dsymlink_hdr) that the kernel and xfs_repair expect; put it there as the kernel does.
 */
async function addSymlinkHeader(image: string, path: string, target: string): Promise<void> {
  const where = await xfsDb(image, [`path ${path}`, "dblock 0", "stack"]);
  const at = Number(/byte offset (\d+)/.exec(where)![1]);
  const ino = Number(/inode (\d+)/.exec(where)![1]);
  const uuid = await field(image, ["sb 0"], "uuid");
  const block = Buffer.alloc(4096);
  Buffer.from(target).copy(block, 56);
  const handle = await open(image, "r+");
  await handle.write(block, 0, block.length, at);
  await handle.close();
  const header = ["magic 0x58534c4d", "offset 0", `bytes ${target.length}`, `owner ${ino}`, `bno ${at / 512}`, `uuid ${uuid}`];
  await xfsDb(image, [`path ${path}`, "dblock 0", "type symlink", ...header.map((h) => `write -d ${h}`)], true);
  assert.match(await field(image, [`path ${path}`, "dblock 0", "type symlink"], "crc"), /\(correct\)/);
}

const sources: FileSource[] = [];
after(() => Promise.all(sources.map((s) => s.close())));

async function openImage(image: string): Promise<FileSystem> {
  const source = await fileSource(image);
  sources.push(source);
  const fs = await openXfs(source);
  assert.ok(fs, "openXfs did not recognise the image");
  assert.equal(fs.type, "xfs");
  return fs;
}

/** Copies only the written parts of a sparse image: most of its 300 MiB are holes. */
const copy = (from: string, to: string) => run("cp", ["--sparse=always", from, to]);

/** A copy of `image` patched by xfs_db. */
async function patched(image: string, name: string, commands: string[]): Promise<string> {
  const copied = join(dir, name);
  await copy(image, copied);
  await xfsDb(copied, commands, true);
  return copied;
}

const rejects = (promise: Promise<unknown>, message: RegExp) =>
  assert.rejects(promise, (error: Error) => {
    assert.ok(error instanceof FileSystemError, `not a FileSystemError: ${error}`);
    assert.match(error.message, message);
    return true;
  });

let v5: string;
let v4: string;
/** v5 before its remote symlink was given its header. */
let v5AsMade: string;

before(async () => {
  protofile();
  v5 = await makeXfs("v5.img", []);
  v5AsMade = join(dir, "v5-as-made.img");
  await copy(v5, v5AsMade);
  await addSymlinkHeader(v5, "/remote", remoteTarget);
  // v4: no CRCs, 256-byte v2 inodes, and no file type in directory entries.
  v4 = await makeXfs("v4.img", ["-m", "crc=0", "-n", "ftype=0"]);
});

describe("XFS v5", () => {
  let fs: FileSystem;
  before(async () => {
    fs = await openImage(v5);
  });

  it("is the layout the tests mean to cover", async () => {
    assert.match(await field(v5, ["sb 0"], "crc"), /\(correct\)/);
    assert.match(await field(v5, ["path /etc"], "core.format"), /local/);
    assert.match(await field(v5, ["path /blockdir"], "core.format"), /extents/);
    assert.equal(await field(v5, ["path /blockdir"], "core.size"), "4096");
    assert.match(await field(v5, ["path /leafdir"], "core.format"), /extents/);
    const leafMap = await xfsDb(v5, ["path /leafdir", "bmap"]);
    assert.match(leafMap, /data offset 8388608 /, "leafdir has a leaf block");
    assert.doesNotMatch(leafMap, /data offset 16777216 /, "leafdir has no free index");
    assert.match(await field(v5, ["path /many"], "core.format"), /btree/);
    assert.match(await xfsDb(v5, ["path /many", "bmap"]), /data offset 16777216 /, "many is a node directory");
    assert.match(await field(v5, ["path /remote"], "core.format"), /extents/);
    assert.match(await field(v5, ["path /abs"], "core.format"), /local/);
  });

  it("reads files through shortform, block, leaf and node directories", async () => {
    assert.deepEqual(await fs.readFile("/usr/lib/os-release", 4096), osRelease);
    assert.deepEqual(await fs.readFile("/usr/bin/small", 1 << 20), small);
    assert.equal(sha256((await fs.readFile("/usr/bin/big", 64 << 20))!), sha256(big));
    assert.deepEqual(await fs.readFile("/usr/bin/empty", 100), Buffer.alloc(0));
    assert.deepEqual(await fs.readFile("/a/b/c/d/deep.txt", 100), deep);
    assert.deepEqual(await fs.readFile("/blockdir/last", 100), deep);
    assert.deepEqual(await fs.readFile("/leafdir/last", 100), deep);
    assert.deepEqual(await fs.readFile("/leafdir/file399", 100), Buffer.alloc(0));
    for (const i of [0, 1234, MANY - 1]) assert.deepEqual(await fs.readFile(`/many/${manyName(i)}`, 4096), deep, manyName(i));
  });

  it("follows relative, absolute, directory and remote symbolic links", async () => {
    assert.deepEqual(await fs.readFile("/etc/os-release", 4096), osRelease);
    assert.deepEqual(await fs.readFile("/abs", 4096), osRelease);
    assert.deepEqual(await fs.readFile("/lib/os-release", 4096), osRelease);
    // ".." after a link to a directory is the target's parent, as the kernel resolves it.
    assert.deepEqual(await fs.readFile("/lib/../bin/small", 10), small.subarray(0, 10));
    assert.equal(await fs.readFile("/lib/../usr/bin/small", 10), undefined);
    assert.deepEqual(await fs.readFile("/remote", 4096), osRelease);
  });

  it("reads at most maxBytes", async () => {
    assert.deepEqual(await fs.readFile("/usr/bin/big", 1000), big.subarray(0, 1000));
    assert.deepEqual(await fs.readFile("/usr/bin/big", 3 * 4096 + 5), big.subarray(0, 3 * 4096 + 5));
    assert.deepEqual(await fs.readFile("/etc/os-release", 3), osRelease.subarray(0, 3));
    assert.deepEqual(await fs.readFile("/usr/bin/small", 0), Buffer.alloc(0));
  });

  it("gives undefined for what is not a regular file", async () => {
    for (const path of [
      "/missing",
      "/usr/lib/missing",
      "/many/entry",
      `/many/${manyName(MANY)}`,
      "/usr",
      "/",
      "/etc/",
      "/usr/bin/small/x",
      "/missing/x",
      "/dangling",
      "/lib/..",
    ]) {
      assert.equal(await fs.readFile(path, 100), undefined, path);
    }
  });

  it("refuses a symbolic link loop", async () => {
    await rejects(fs.readFile("/loop1", 100), /more than 8 symbolic links/);
  });

  it("reads holes and unwritten extents as zeros", async () => {
    // Split the big file's one extent in three: a 5-block hole before the second, the third unwritten.
    const [offset, block, count] = /^0:\[(\d+),(\d+),(\d+),0\]$/m
      .exec(await xfsDb(v5, ["path /usr/bin/big", "p u3.bmx"]))!
      .slice(1)
      .map(Number) as [number, number, number];
    assert.equal(offset, 0);
    const image = await patched(v5, "holes.img", [
      "path /usr/bin/big",
      "write core.nextents 3",
      "write u3.bmx[0].blockcount 100",
      "write u3.bmx[1].startoff 105",
      `write u3.bmx[1].startblock ${block + 100}`,
      "write u3.bmx[1].blockcount 200",
      "write u3.bmx[2].startoff 305",
      `write u3.bmx[2].startblock ${block + 300}`,
      `write u3.bmx[2].blockcount ${count - 300}`,
      "write u3.bmx[2].extentflag 1",
    ]);
    const expected = Buffer.concat([
      big.subarray(0, 100 * 4096),
      Buffer.alloc(5 * 4096),
      big.subarray(100 * 4096, 300 * 4096),
      Buffer.alloc(big.length),
    ]).subarray(0, big.length);
    const got = await (await openImage(image)).readFile("/usr/bin/big", 64 << 20);
    assert.equal(got!.length, big.length);
    assert.equal(sha256(got!), sha256(expected));
  });
});

describe("XFS v4", () => {
  it("reads the same files without CRCs or directory file types", async () => {
    assert.equal(await field(v4, ["sb 0"], "inodesize"), "256");
    assert.match(await field(v4, ["path /many"], "core.format"), /btree/);
    const fs = await openImage(v4);
    assert.deepEqual(await fs.readFile("/etc/os-release", 4096), osRelease);
    assert.equal(sha256((await fs.readFile("/usr/bin/big", 64 << 20))!), sha256(big));
    assert.deepEqual(await fs.readFile("/a/b/c/d/deep.txt", 100), deep);
    assert.deepEqual(await fs.readFile("/leafdir/last", 100), deep);
    assert.deepEqual(await fs.readFile(`/many/${manyName(MANY - 1)}`, 4096), deep);
    assert.deepEqual(await fs.readFile("/remote", 4096), osRelease);
    assert.equal(await fs.readFile("/many/nothing", 10), undefined);
    await rejects(fs.readFile("/loop2", 100), /more than 8 symbolic links/);
  });
});

describe("XFS that lies", () => {
  it("is not XFS without the XFSB magic", async () => {
    assert.equal(await openXfs(bufferSource(Buffer.alloc(65536))), undefined);
    assert.equal(await openXfs(bufferSource(Buffer.alloc(100))), undefined);
  });

  it("refuses a file system larger than its partition", async () => {
    const source = await fileSource(v5);
    sources.push(source);
    await rejects(openXfs(sliceSource(source, 0, 200 * 1024 * 1024)), /larger than its partition/);
  });

  it("refuses a superblock with impossible geometry", async () => {
    const source = await fileSource(v4);
    sources.push(source);
    const head = Buffer.from(await source.read(0, 1 << 20));
    head.writeUInt32BE(3000, 4); // a block size that is no power of two
    await rejects(openXfs(bufferSource(head)), /block size 3000 is invalid/);
  });

  it("refuses a root inode with a bad magic number", async () => {
    const image = await patched(v5, "root-magic.img", ["inode 128", "write -d core.magic 0x4142"]);
    await rejects((await openImage(image)).readFile("/etc/os-release", 100), /inode 128 has a bad magic number/);
  });

  it("refuses an inode whose CRC does not match", async () => {
    // "write -c" leaves the CRC as it was.
    const image = await patched(v5, "root-crc.img", ["inode 128", "write -c core.mode 040700"]);
    await rejects((await openImage(image)).readFile("/etc/os-release", 100), /inode 128 fails its CRC check/);
  });

  it("refuses a v5 remote symlink block without its header", async () => {
    await rejects((await openImage(v5AsMade)).readFile("/remote", 100), /symbolic link \d+ block 0 has a bad magic number/);
    const lying = await patched(v5, "symlink-bytes.img", ["path /remote", "dblock 0", "type symlink", "write -d bytes 4000"]);
    await rejects((await openImage(lying)).readFile("/remote", 100), /symbolic link \d+ block 0 holds bytes other than the ones expected/);
  });

  it("refuses an extent pointing beyond the file system", async () => {
    const agCount = Number(await field(v5, ["sb 0"], "agcount"));
    const agBlkLog = Number(await field(v5, ["sb 0"], "agblklog"));
    const agBlocks = Number(await field(v5, ["sb 0"], "agblocks"));
    const pastGroups = await patched(v5, "extent-ag.img", ["path /usr/bin/big", `write u3.bmx[0].startblock ${agCount * 2 ** agBlkLog}`]);
    await rejects((await openImage(pastGroups)).readFile("/usr/bin/big", 100), /inode \d+ points outside the file system \(block 4\/0/);
    const pastGroupEnd = await patched(v5, "extent-agblock.img", ["path /usr/bin/big", `write u3.bmx[0].startblock ${agBlocks - 10}`]);
    await rejects((await openImage(pastGroupEnd)).readFile("/usr/bin/big", 100), /inode \d+ points outside the file system/);
  });

  it("refuses an extent tree block at the wrong level", async () => {
    const child = await field(v5, ["path /many"], "u3.bmbt.ptrs[1]");
    const image = await patched(v5, "bmbt-level.img", [`fsblock ${child}`, "type bmapbtd", "write level 1"]);
    await rejects((await openImage(image)).readFile(`/many/${manyName(5)}`, 100), /extent tree block \d+ of inode \d+ is at level 1, expected 0/);
  });

  it("refuses an extent tree that points back at itself", async () => {
    const child = await field(v5, ["path /many"], "u3.bmbt.ptrs[1]");
    const image = await patched(v5, "bmbt-loop.img", ["path /many", "write u3.bmbt.level 2"]);
    // Now the root's child must be a level-1 node; it is a leaf, which stops the walk too.
    await rejects(
      (await openImage(image)).readFile(`/many/${manyName(5)}`, 100),
      new RegExp(`extent tree block ${child} of inode \\d+ is at level 0, expected 1`),
    );
  });

  it("refuses directory blocks whose entries do not add up", async () => {
    const longName = await patched(v5, "dirent-name.img", ["path /blockdir", "dblock 0", "write -d bu[2].namelen 255"]);
    await rejects((await openImage(longName)).readFile("/blockdir/last", 100), /directory \d+ block 0 has a misplaced entry at 96/);
    const tail = await patched(v5, "dirent-tail.img", ["path /blockdir", "dblock 0", "write -d btail.count 1000"]);
    await rejects((await openImage(tail)).readFile("/blockdir/last", 100), /directory \d+ block 0 claims 1000 leaf entries/);
    const form = await patched(v5, "dirent-form.img", ["path /leafdir", "dblock 1", "write -d dhdr.hdr.magic 0x58444233"]);
    await rejects((await openImage(form)).readFile("/leafdir/missing", 100), /directory \d+ block 1 is a single-block directory's block in a larger directory/);
  });
});
