// The VHDX and QCOW2 readers against images made by qemu-img and qemu-io from one raw disk: the
// reassembled disk must equal the raw file byte for byte, and patched copies of real images
// (truncated, tables pointing outside the file, lying sizes, bombs) must be refused.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { readFileSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import { deflateRawSync } from "node:zlib";
import { DiskImageError } from "../src/formats/disk/errors.js";
import { DISK_LIMITS, type DiskImageOpener } from "../src/formats/disk/image.js";
import { openQcow2 } from "../src/formats/disk/qcow2.js";
import { fileSource } from "../src/formats/disk/source.js";
import { openVhdx } from "../src/formats/disk/vhdx.js";
import { crc32c } from "./helpers/checksums.js";
import { qcowEntries } from "./helpers/qcow2-layout.js";
import { run, scratch } from "./helpers/tools.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const dir = scratch("kiln-vhdx-qcow2-");
const RAW = join(dir, "disk.raw");
/** Not a multiple of any cluster or block size: the last one is partial. */
const RAW_SIZE = 32 * MiB + 1536;
let rawSha = "";

/** Text-like bytes that compress well. */
function text(length: number, seed: number): Buffer {
  const lines: string[] = [];
  let size = 0;
  for (let n = 0; size < length; n++) {
    const line = `line ${seed}.${n}: the quick brown fox jumps over the lazy dog\n`;
    lines.push(line);
    size += line.length;
  }
  return Buffer.from(lines.join(""), "latin1").subarray(0, length);
}

function makeRaw(): Buffer {
  const disk = Buffer.alloc(RAW_SIZE);
  randomBytes(MiB).copy(disk, 0);
  text(MiB, 1).copy(disk, MiB);
  // [2 MiB, 6 MiB) stays zero: whole 1 MiB and 2 MiB units with nothing in them.
  disk.fill(0xab, 6 * MiB, 8 * MiB);
  randomBytes(512 * KiB).copy(disk, 8 * MiB);
  // Random and compressible pieces whose edges fall inside clusters.
  for (let at = 20 * MiB, i = 0; at < 28 * MiB; i++) {
    const piece = i % 2 ? text(56 * KiB, i) : randomBytes(40 * KiB);
    piece.copy(disk, at, 0, Math.min(piece.length, 28 * MiB - at));
    at += piece.length;
  }
  // Lone non-zero bytes in a sea of zeros.
  disk.fill(0x11, 29 * MiB + 3 * 512, 29 * MiB + 4 * 512);
  disk.fill(0x22, 30 * MiB + 4096 + 17, 30 * MiB + 4096 + 117);
  disk[31 * MiB + 65535] = 0x33;
  randomBytes(1536).copy(disk, 32 * MiB);
  return disk;
}

const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

interface ReadBack {
  virtualSize: number;
  sha: string;
  extents: number;
  dataBytes: number;
  disk: Buffer;
}

/** Opens a file and reassembles its disk, checking the extents' order, bounds and sizes. */
async function readBack(open: DiskImageOpener, path: string): Promise<ReadBack> {
  const source = await fileSource(path);
  try {
    const image = await open(source);
    const disk = Buffer.alloc(image.virtualSize);
    let end = 0;
    let extents = 0;
    let dataBytes = 0;
    for await (const { offset, data } of image.extents()) {
      assert.ok(offset >= end, `extent at ${offset} overlaps or precedes the previous one ending at ${end}`);
      assert.ok(data.length > 0 && data.length <= DISK_LIMITS.extentBytes, `extent of ${data.length} bytes`);
      assert.ok(offset + data.length <= image.virtualSize, "extent past the disk's end");
      data.copy(disk, offset);
      end = offset + data.length;
      extents++;
      dataBytes += data.length;
    }
    return { virtualSize: image.virtualSize, sha: sha256(disk), extents, dataBytes, disk };
  } finally {
    await source.close();
  }
}

/** Checks a sparse disk's extents against the ranges written to it (the rest reads as zeros). */
async function assertSparse(
  open: DiskImageOpener,
  path: string,
  virtualSize: number,
  written: [offset: number, length: number, byte: number][],
): Promise<void> {
  const source = await fileSource(path);
  try {
    const image = await open(source);
    assert.equal(image.virtualSize, virtualSize);
    let end = 0;
    let found = 0;
    for await (const { offset, data } of image.extents()) {
      assert.ok(offset >= end && data.length <= DISK_LIMITS.extentBytes && offset + data.length <= virtualSize);
      end = offset + data.length;
      const expected = Buffer.alloc(data.length);
      for (const [at, length, byte] of written) {
        const from = Math.max(at, offset);
        const to = Math.min(at + length, end);
        if (from < to) {
          expected.fill(byte, from - offset, to - offset);
          found += to - from;
        }
      }
      assert.ok(data.equals(expected), `extent at ${offset} differs from what was written`);
    }
    assert.equal(
      found,
      written.reduce((sum, [, length]) => sum + length, 0),
      "some written data was not yielded",
    );
  } finally {
    await source.close();
  }
}

async function assertRefused(open: DiskImageOpener, path: string, reason: RegExp): Promise<void> {
  await assert.rejects(readBack(open, path), (error: unknown) => {
    assert.ok(error instanceof DiskImageError, `expected a DiskImageError, got ${String(error)}`);
    assert.match(error.message, reason);
    return true;
  });
}

async function assertSameDisk(open: DiskImageOpener, path: string): Promise<ReadBack> {
  const back = await readBack(open, path);
  assert.equal(back.virtualSize, RAW_SIZE);
  assert.equal(back.sha, rawSha, "the reassembled disk differs from the raw file");
  // Coalescing: the raw disk's data lies in a few runs, so a few 4 MiB extents carry it.
  assert.ok(back.extents <= 12, `${back.extents} extents for a few runs of data`);
  return back;
}

/** A patched copy of `from`. */
function patched(from: string, name: string, edit: (bytes: Buffer) => Buffer | undefined): string {
  const bytes = readFileSync(from);
  const out = edit(bytes) ?? bytes;
  const path = join(dir, name);
  writeFileSync(path, out);
  return path;
}

/**
 * Rewrites the CRC-32C at `field` of the structure at [at, at + length), with the tests' own
 * CRC-32C (not the library Kiln checks VHDX with); "VHDX" below checks it against qemu-img's.
 */
async function reseal(bytes: Buffer, at: number, length: number, field = 4): Promise<void> {
  bytes.writeUInt32LE(0, at + field);
  bytes.writeUInt32LE(crc32c(bytes.subarray(at, at + length)), at + field);
}

before(async () => {
  const disk = makeRaw();
  writeFileSync(RAW, disk);
  rawSha = sha256(disk);
});

// --- QCOW2 ---------------------------------------------------------------------------------

describe("QCOW2", () => {
  const qcow = (name: string, ...options: string[]) => {
    const path = join(dir, name);
    return run("qemu-img", ["convert", "-f", "raw", "-O", "qcow2", ...options, RAW, path]).then(() => path);
  };
  let v3: string;
  let compressed: string;
  before(async () => {
    [v3, compressed] = await Promise.all([qcow("v3.qcow2", "-o", "compat=1.1"), qcow("v3c.qcow2", "-c", "-o", "compat=1.1")]);
  });

  for (const [name, options] of [
    ["version 2, 64 KiB clusters", ["-o", "compat=0.10"]],
    ["version 3, 4 KiB clusters", ["-o", "compat=1.1,cluster_size=4k"]],
    ["version 3, 2 MiB clusters", ["-o", "compat=1.1,cluster_size=2M"]],
    ["version 2, compressed, 64 KiB clusters", ["-c", "-o", "compat=0.10"]],
    ["version 3, compressed, 4 KiB clusters", ["-c", "-o", "compat=1.1,cluster_size=4k"]],
    ["version 3, compressed, 2 MiB clusters", ["-c", "-o", "compat=1.1,cluster_size=2M"]],
  ] as const) {
    it(`reads ${name} as the raw disk`, async () => {
      const path = await qcow(`${name.replace(/\W+/g, "-")}.qcow2`, ...options);
      if (options[0] === "-c")
        assert.ok(
          qcowEntries(readFileSync(path)).entries.some((entry) => entry.compressed),
          "the fixture has no compressed cluster",
        );
      await assertSameDisk(openQcow2, path);
    });
  }

  it("reads version 3 with 64 KiB clusters, and compressed, as the raw disk", async () => {
    const plain = await assertSameDisk(openQcow2, v3);
    const packed = await assertSameDisk(openQcow2, compressed);
    assert.ok(qcowEntries(readFileSync(compressed)).entries.filter((entry) => entry.compressed).length > 16);
    // Holes are skipped: less data than the disk's size comes back.
    assert.ok(plain.dataBytes < RAW_SIZE / 2 && packed.dataBytes < RAW_SIZE / 2);
  });

  it("reads a sparse 1 GiB disk of 512-byte clusters across L1 windows", async () => {
    const path = join(dir, "sparse-512.qcow2");
    await run("qemu-img", ["create", "-q", "-f", "qcow2", "-o", "cluster_size=512", path, "1G"]);
    // One L1 entry maps 32 KiB here, so 256 MiB is where a window of 8192 entries ends.
    const written: [number, number, number][] = [
      [0, 512, 0x61],
      [256 * MiB - 512, 1024, 0x62],
      [700 * MiB, 64 * KiB, 0x63],
      [1024 * MiB - 512, 512, 0x64],
    ];
    await run("qemu-io", ["-f", "qcow2", ...written.flatMap(([at, length, byte]) => ["-c", `write -q -P ${byte} ${at} ${length}`]), path]);
    await assertSparse(openQcow2, path, 1024 * MiB, written);
  });

  it("reads zero clusters (still allocated, and unmapped) as zeros", async () => {
    const path = join(dir, "zero.qcow2");
    await run("qemu-img", ["create", "-q", "-f", "qcow2", "-o", "compat=1.1", path, "4M"]);
    await run("qemu-io", ["-f", "qcow2", "-c", "write -q -P 0x5a 0 4M", "-c", "write -q -z 1M 1M", "-c", "write -q -z -u 3M 512k", path]);
    // The zero-flagged clusters at 1 MiB still point at their old 0x5a data: only bit 0 hides it.
    const { entries } = qcowEntries(readFileSync(path));
    const flagged = entries.filter((entry) => entry.cluster >= 16 && entry.cluster < 32);
    assert.equal(flagged.length, 16);
    assert.ok(
      flagged.every((entry) => entry.host !== 0),
      "qemu-io unmapped the zeroed clusters",
    );
    const back = await readBack(openQcow2, path);
    const expected = Buffer.alloc(4 * MiB, 0x5a);
    expected.fill(0, MiB, 2 * MiB);
    expected.fill(0, 3 * MiB, 3 * MiB + 512 * KiB);
    assert.equal(back.sha, sha256(expected));
  });

  it("refuses a backing file, zstd, encryption and unknown incompatible features", async () => {
    const base = join(dir, "base.qcow2");
    const overlay = join(dir, "overlay.qcow2");
    await run("qemu-img", ["create", "-q", "-f", "qcow2", base, "4M"]);
    await run("qemu-img", ["create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", overlay]);
    await assertRefused(openQcow2, overlay, /^QCOW2 images with a backing file are not supported$/);

    const zstd = await qcow("zstd.qcow2", "-c", "-o", "compression_type=zstd,cluster_size=2M");
    await assertRefused(openQcow2, zstd, /zstd compression is not supported/);

    // AES rather than LUKS: LUKS creation times its key derivation, which is slow and flaky on a busy machine.
    const aes = join(dir, "aes.qcow2");
    await run("qemu-img", ["create", "-q", "-f", "qcow2", "--object", "secret,id=s0,data=kiln", "-o", "encrypt.format=aes,encrypt.key-secret=s0", aes, "1M"]);
    await assertRefused(openQcow2, aes, /^encrypted QCOW2 images are not supported \(crypt_method 1\)$/);
    const luks = patched(v3, "luks.qcow2", (bytes) => void bytes.writeUInt32BE(2, 32));
    await assertRefused(openQcow2, luks, /^encrypted QCOW2 images are not supported \(crypt_method 2\)$/);

    const unknown = patched(v3, "unknown-feature.qcow2", (bytes) => void bytes.writeBigUInt64BE(1n << 5n, 72));
    await assertRefused(openQcow2, unknown, /incompatible feature bits 0x20 are not supported/);
    const extended = patched(v3, "extended-l2.qcow2", (bytes) => void bytes.writeBigUInt64BE(1n << 4n, 72));
    await assertRefused(openQcow2, extended, /extended L2 entries/);
    const external = patched(v3, "data-file.qcow2", (bytes) => void bytes.writeBigUInt64BE(1n << 2n, 72));
    await assertRefused(openQcow2, external, /external data file/);
  });

  it("refuses lying headers: absurd virtual size, cluster bits, a short L1 table, a misplaced L1 table", async () => {
    const huge = patched(v3, "huge.qcow2", (bytes) => void bytes.writeBigUInt64BE(1n << 60n, 24));
    await assertRefused(openQcow2, huge, /virtual size 1152921504606846976 exceeds Kiln's limit/);
    const bits = patched(v3, "bits.qcow2", (bytes) => void bytes.writeUInt32BE(22, 20));
    await assertRefused(openQcow2, bits, /cluster_bits 22 is outside 9\.\.21/);
    // 1 TiB of disk on a one-entry L1 table.
    const short = patched(v3, "short-l1.qcow2", (bytes) => void bytes.writeBigUInt64BE(1n << 40n, 24));
    await assertRefused(openQcow2, short, /L1 table has 1 entries, too few/);
    const atHeader = patched(v3, "l1-at-header.qcow2", (bytes) => void bytes.writeBigUInt64BE(0n, 40));
    await assertRefused(openQcow2, atHeader, /L1 table overlaps the header/);
  });

  it("refuses a truncated file", async () => {
    const path = patched(v3, "truncated.qcow2", (bytes) => bytes.subarray(0, Math.floor(bytes.length * 0.6)));
    await assertRefused(openQcow2, path, /^QCOW2 cluster \d+ points outside the file$/);
  });

  it("refuses L1 and L2 entries pointing outside the file or at a table", async () => {
    const layout = qcowEntries(readFileSync(v3));
    const data = layout.entries.find((entry) => !entry.compressed)!;
    const outside = patched(v3, "l2-outside.qcow2", (bytes) => void bytes.writeBigUInt64BE((1n << 63n) | (1n << 40n), data.at));
    await assertRefused(openQcow2, outside, new RegExp(`^QCOW2 cluster ${data.cluster} points outside the file$`));
    const atL1 = patched(v3, "l2-at-l1.qcow2", (bytes) => void bytes.writeBigUInt64BE((1n << 63n) | BigInt(layout.l1Offset), data.at));
    await assertRefused(openQcow2, atL1, /points at a table/);
    const unaligned = patched(v3, "l2-unaligned.qcow2", (bytes) => void bytes.writeBigUInt64BE((1n << 63n) | BigInt(data.host + 512), data.at));
    await assertRefused(openQcow2, unaligned, /points at an unaligned offset/);
    const l1Outside = patched(v3, "l1-outside.qcow2", (bytes) => void bytes.writeBigUInt64BE((1n << 63n) | (1n << 40n), layout.l1Offset));
    await assertRefused(openQcow2, l1Outside, /^QCOW2 L1 entry 0 points outside the file$/);
    // An L2 table that is the L1 table: its entries would be read as clusters.
    const loop = patched(v3, "l1-loop.qcow2", (bytes) => void bytes.writeBigUInt64BE((1n << 63n) | BigInt(layout.l1Offset), layout.l1Offset));
    await assertRefused(openQcow2, loop, /L1 entry 0 points at the L1 table/);
  });

  it("refuses clusters that all point at one place (more data than the file holds)", async () => {
    const small = await qcow("4k.qcow2", "-o", "cluster_size=4k");
    const { entries } = qcowEntries(readFileSync(small));
    const target = entries[0]!.host;
    const path = patched(small, "one-place.qcow2", (bytes) => {
      for (let i = 0; i < 8192; i++) {
        // Every cluster of every L2 table, allocated or not, maps to the same host cluster.
        const l1 = Number(bytes.readBigUInt64BE(Number(bytes.readBigUInt64BE(40)) + Math.floor(i / 512) * 8) & 0x00fffffffffffe00n);
        if (l1) bytes.writeBigUInt64BE((1n << 63n) | BigInt(target), l1 + (i % 512) * 8);
      }
    });
    await assertRefused(openQcow2, path, /map more data than the file holds/);
  });

  it("refuses compressed clusters that inflate past or short of a cluster, or do not inflate", async () => {
    const layout = qcowEntries(readFileSync(compressed));
    const entry = layout.entries.find((candidate) => candidate.compressed && candidate.stored >= 600)!;
    assert.ok(entry, "no compressed cluster with room for the patch");
    const withStream = (name: string, stream: Buffer) =>
      patched(compressed, name, (bytes) => {
        assert.ok(stream.length <= entry.stored);
        stream.copy(bytes, entry.host);
      });
    // 128 KiB of one byte deflates to a few hundred bytes: a bomb that fits the cluster's slot.
    const bomb = withStream("bomb.qcow2", deflateRawSync(Buffer.alloc(128 * KiB, 0x41), { level: 9 }));
    await assertRefused(openQcow2, bomb, new RegExp(`^compressed cluster ${entry.cluster} inflates past its 65536 bytes$`));
    const short = withStream("short.qcow2", deflateRawSync(Buffer.alloc(1000, 0x41)));
    await assertRefused(openQcow2, short, new RegExp(`^compressed cluster ${entry.cluster} inflates to 1000 bytes, not 65536$`));
    const junk = withStream("junk.qcow2", Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]));
    await assertRefused(openQcow2, junk, /does not inflate/);
    // Same sector count, the byte offset moved past the end (64 KiB clusters: offset in bits 0-53).
    const offsetMask = (1n << 54n) - 1n;
    const outside = patched(compressed, "compressed-outside.qcow2", (bytes) => {
      bytes.writeBigUInt64BE((bytes.readBigUInt64BE(entry.at) & ~offsetMask) | (1n << 40n), entry.at);
    });
    await assertRefused(openQcow2, outside, /points outside the file/);
  });
});

// --- VHDX ----------------------------------------------------------------------------------

const HEADERS = [64 * KiB, 128 * KiB];
const BAT_GUID = "6677c22d23f600429d64115e9bfd4a08";
const VIRTUAL_SIZE_GUID = "2442a52f1bcd7648b2115dbed83bf4b8";
const FILE_PARAMETERS_GUID = "3767a1ca36fa434db3b633f0aa44e76b";

/** Where a VHDX file keeps its BAT and metadata items, read independently of the reader. */
function vhdxLayout(bytes: Buffer): { bat: number; items: Map<string, number>; sequence: bigint[] } {
  const table = 192 * KiB;
  let bat = 0;
  let metadata = 0;
  for (let i = 0; i < bytes.readUInt32LE(table + 8); i++) {
    const at = table + 16 + i * 32;
    const offset = Number(bytes.readBigUInt64LE(at + 16));
    if (bytes.toString("hex", at, at + 16) === BAT_GUID) bat = offset;
    else metadata = offset;
  }
  const items = new Map<string, number>();
  for (let i = 0; i < bytes.readUInt16LE(metadata + 10); i++) {
    const at = metadata + 32 + i * 32;
    items.set(bytes.toString("hex", at, at + 16), metadata + bytes.readUInt32LE(at + 16));
  }
  return { bat, items, sequence: HEADERS.map((at) => bytes.readBigUInt64LE(at + 8)) };
}

describe("VHDX", () => {
  const vhdx = (name: string, ...options: string[]) => {
    const path = join(dir, name);
    return run("qemu-img", ["convert", "-f", "raw", "-O", "vhdx", ...options, RAW, path]).then(() => path);
  };
  let dynamic: string;
  before(async () => {
    dynamic = await vhdx("dynamic-1m.vhdx", "-o", "block_size=1M");
  });

  it("has a CRC-32C of its own that gives the checksums qemu-img wrote", async () => {
    // The tests reseal VHDX structures with it: it must agree with an outside writer of VHDX,
    // so that the reader is not judged by the library it computes checksums with.
    const sized = join(dir, "created.vhdx");
    await run("qemu-img", ["create", "-q", "-f", "vhdx", sized, "64M"]);
    for (const path of [sized, dynamic]) {
      const bytes = readFileSync(path);
      for (const [at, length] of [
        [HEADERS[0]!, 4 * KiB],
        [HEADERS[1]!, 4 * KiB],
        [192 * KiB, 64 * KiB],
        [256 * KiB, 64 * KiB],
      ] as const) {
        const stored = bytes.readUInt32LE(at + 4);
        const zeroed = Buffer.from(bytes.subarray(at, at + length));
        zeroed.writeUInt32LE(0, 4);
        assert.equal(crc32c(zeroed).toString(16), stored.toString(16), `the checksum of the structure at ${at / KiB} KiB of ${path}`);
      }
    }
  });

  for (const [name, options] of [
    ["dynamic, default block size", []],
    ["fixed, default block size", ["-o", "subformat=fixed"]],
    ["fixed, 1 MiB blocks", ["-o", "subformat=fixed,block_size=1M"]],
  ] as const) {
    it(`reads ${name} as the raw disk`, async () => {
      await assertSameDisk(openVhdx, await vhdx(`${name.replace(/\W+/g, "-")}.vhdx`, ...options));
    });
  }

  it("reads dynamic, 1 MiB blocks as the raw disk, skipping absent blocks", async () => {
    const back = await assertSameDisk(openVhdx, dynamic);
    assert.equal(back.dataBytes, 17 * MiB + 1536 - MiB, "the blocks holding data, and no others");
  });

  it("reads a sparse 20 GiB disk across sector bitmap entries and BAT windows", async () => {
    const path = join(dir, "sparse-20g.vhdx");
    await run("qemu-img", ["create", "-q", "-f", "vhdx", "-o", "block_size=1M", path, "20G"]);
    // 1 MiB blocks of 512-byte sectors: a sector bitmap entry after every 4096 payload entries,
    // and the 16384-entry BAT window ends near block 16380.
    const written: [number, number, number][] = [
      [0, MiB, 0x61],
      [4095 * MiB, MiB, 0x62],
      [4096 * MiB, MiB, 0x63],
      [17000 * MiB, 512 * KiB, 0x64],
      [20479 * MiB, MiB, 0x65],
    ];
    await run("qemu-io", ["-f", "vhdx", ...written.flatMap(([at, length, byte]) => ["-c", `write -q -P ${byte} ${at} ${length}`]), path]);
    await assertSparse(openVhdx, path, 20 * 1024 * MiB, written);
  });

  it("uses the valid header with the greater sequence number", async () => {
    const bytes = readFileSync(dynamic);
    const { sequence } = vhdxLayout(bytes);
    const current = sequence[1]! > sequence[0]! ? 1 : 0;
    const currentAt = HEADERS[current]!;
    const otherAt = HEADERS[1 - current]!;
    // The current header claims a log to replay; the other one does not.
    const withLog = join(dir, "log.vhdx");
    const logged = Buffer.from(bytes);
    logged.fill(0x42, currentAt + 48, currentAt + 64);
    await reseal(logged, currentAt, 4096);
    writeFileSync(withLog, logged);
    await assertRefused(openVhdx, withLog, /^VHDX log must be replayed first$/);
    // Its checksum broken, the current header is ignored and the other one is used.
    const broken = Buffer.from(logged);
    broken[currentAt + 4]! ^= 0xff;
    writeFileSync(join(dir, "crc-current.vhdx"), broken);
    assert.equal((await readBack(openVhdx, join(dir, "crc-current.vhdx"))).sha, rawSha);
    // A log in the older header does not matter while the newer one is valid.
    const older = Buffer.from(bytes);
    older.fill(0x42, otherAt + 48, otherAt + 64);
    await reseal(older, otherAt, 4096);
    writeFileSync(join(dir, "log-older.vhdx"), older);
    assert.equal((await readBack(openVhdx, join(dir, "log-older.vhdx"))).sha, rawSha);
    // Both broken: refused.
    const both = Buffer.from(bytes);
    both[HEADERS[0]! + 4]! ^= 0xff;
    both[HEADERS[1]! + 4]! ^= 0xff;
    writeFileSync(join(dir, "crc-both.vhdx"), both);
    await assertRefused(openVhdx, join(dir, "crc-both.vhdx"), /^neither VHDX header is valid$/);
  });

  it("falls back to the second region table, and refuses unknown required regions", async () => {
    const first = patched(dynamic, "region-1-broken.vhdx", (bytes) => {
      bytes[192 * KiB + 100]! ^= 0xff;
    });
    assert.equal((await readBack(openVhdx, first)).sha, rawSha);
    const both = patched(dynamic, "regions-broken.vhdx", (bytes) => {
      bytes[192 * KiB + 100]! ^= 0xff;
      bytes[256 * KiB + 100]! ^= 0xff;
    });
    await assertRefused(openVhdx, both, /^neither VHDX region table is valid$/);
    const bytes = readFileSync(dynamic);
    for (const table of [192 * KiB, 256 * KiB]) {
      const count = bytes.readUInt32LE(table + 8);
      const at = table + 16 + count * 32;
      randomBytes(16).copy(bytes, at);
      bytes.writeBigUInt64LE(BigInt(bytes.length), at + 16);
      bytes.writeUInt32LE(MiB, at + 24);
      bytes.writeUInt32LE(1, at + 28);
      bytes.writeUInt32LE(count + 1, table + 8);
      await reseal(bytes, table, 64 * KiB);
    }
    writeFileSync(join(dir, "region-unknown.vhdx"), bytes);
    await assertRefused(openVhdx, join(dir, "region-unknown.vhdx"), /^VHDX region [0-9A-F-]{36} is required but not known to Kiln$/);
  });

  it("refuses differencing disks, partially present blocks and absurd sizes", async () => {
    const layout = vhdxLayout(readFileSync(dynamic));
    const parameters = layout.items.get(FILE_PARAMETERS_GUID)!;
    const parent = patched(dynamic, "parent.vhdx", (bytes) => void bytes.writeUInt32LE(bytes.readUInt32LE(parameters + 4) | 2, parameters + 4));
    await assertRefused(openVhdx, parent, /^VHDX differencing disks \(with a parent\) are not supported$/);
    const partial = patched(dynamic, "partial.vhdx", (bytes) => {
      bytes[layout.bat]! |= 7;
    });
    await assertRefused(openVhdx, partial, /^VHDX block 0 is partially present/);
    const sizeAt = layout.items.get(VIRTUAL_SIZE_GUID)!;
    const huge = patched(dynamic, "huge.vhdx", (bytes) => void bytes.writeBigUInt64LE(1n << 60n, sizeAt));
    await assertRefused(openVhdx, huge, /^VHDX virtual size 1152921504606846976 exceeds Kiln's limit/);
    // 1 TiB of disk needs a BAT far larger than the one in the file.
    const big = patched(dynamic, "big.vhdx", (bytes) => void bytes.writeBigUInt64LE(1n << 40n, sizeAt));
    await assertRefused(openVhdx, big, /^VHDX BAT holds \d+ entries, too few for the virtual size/);
    const block = patched(dynamic, "block-size.vhdx", (bytes) => void bytes.writeUInt32LE(3 * MiB, parameters));
    await assertRefused(openVhdx, block, /block size 3145728 is not a power of two/);
  });

  it("refuses a truncated file and BAT entries pointing outside the file or into the BAT", async () => {
    const truncated = patched(dynamic, "truncated.vhdx", (bytes) => bytes.subarray(0, Math.floor(bytes.length * 0.6)));
    await assertRefused(openVhdx, truncated, /^VHDX BAT entry for block \d+ points outside the file$/);
    const cut = join(dir, "cut.vhdx");
    writeFileSync(cut, readFileSync(dynamic).subarray(0, 300 * KiB));
    await assertRefused(openVhdx, cut, /too small for a VHDX header section/);
    const { bat } = vhdxLayout(readFileSync(dynamic));
    const outside = patched(dynamic, "bat-outside.vhdx", (bytes) => void bytes.writeBigUInt64LE((1n << 40n) | 6n, bat));
    await assertRefused(openVhdx, outside, /^VHDX BAT entry for block 0 points outside the file$/);
    const intoBat = patched(dynamic, "bat-loop.vhdx", (bytes) => void bytes.writeBigUInt64LE((BigInt(bat / MiB) << 20n) | 6n, bat));
    await assertRefused(openVhdx, intoBat, /^VHDX block 0 overlaps the BAT$/);
    const header = patched(dynamic, "bat-header.vhdx", (bytes) => void bytes.writeBigUInt64LE(6n, bat));
    await assertRefused(openVhdx, header, /^VHDX block 0 overlaps the header section$/);
  });

  it("reads unmapped blocks as zeros and refuses reserved block states", async () => {
    const { bat } = vhdxLayout(readFileSync(dynamic));
    // Block 0 (random data) unmapped: the disk reads as the raw one with its first MiB zeroed.
    const unmapped = patched(dynamic, "unmapped.vhdx", (bytes) => void bytes.writeBigUInt64LE(3n, bat));
    const expected = readFileSync(RAW);
    expected.fill(0, 0, MiB);
    assert.equal((await readBack(openVhdx, unmapped)).sha, sha256(expected));
    const reserved = patched(dynamic, "reserved.vhdx", (bytes) => {
      bytes[bat] = (bytes[bat]! & ~7) | 4;
    });
    await assertRefused(openVhdx, reserved, /^VHDX block 0 has the reserved state 4$/);
  });

  it("stops when aborted, and can be left early", async () => {
    const source = await fileSource(dynamic);
    try {
      const image = await openVhdx(source);
      const controller = new AbortController();
      let seen = 0;
      await assert.rejects(
        async () => {
          for await (const _ of image.extents(controller.signal)) {
            seen++;
            controller.abort();
          }
        },
        { name: "AbortError" },
      );
      assert.equal(seen, 1);
      for await (const extent of image.extents()) {
        assert.equal(extent.offset, 0);
        break;
      }
    } finally {
      await source.close();
    }
  });

  it("refuses what is not VHDX", async () => {
    const path = join(dir, "not.vhdx");
    writeFileSync(path, Buffer.alloc(2 * MiB));
    await assertRefused(openVhdx, path, /^not a VHDX file/);
    truncateSync(path, 10);
    await assertRefused(openVhdx, path, /too small/);
  });
});
