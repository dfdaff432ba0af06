// The export writers (raw, dynamic VHD, streamOptimized VMDK), checked by qemu-img reading what
// they wrote back to the disk's bytes, by Kiln's own VHD reader, and by walking the files' tables.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { createWriteStream, readFileSync, writeFileSync } from "node:fs";
import { truncate } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { before, describe, it } from "node:test";
import { DISK_LIMITS } from "../src/formats/disk/image.js";
import { fileSource } from "../src/formats/disk/source.js";
import { openVhd } from "../src/formats/disk/vhd.js";
import { DiskWriterError } from "../src/formats/export/checked.js";
import { writeRaw } from "../src/formats/export/raw.js";
import { vhdGeometry, writeVhd } from "../src/formats/export/vhd.js";
import { COMPRESSION_WINDOW, streamOptimizedVmdk, writeStreamOptimizedVmdk } from "../src/formats/export/vmdk.js";
import { EXPORT_BLOCK, type DiskBlocks, type DiskWriter } from "../src/formats/export/writer.js";
import { run, scratch } from "./helpers/tools.js";

const KIB = 1024;
const MIB = 1024 * KIB;
const GRAIN = 64 * KIB;
const dir = scratch("kiln-export-");
const sha = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");
const ZERO = Buffer.alloc(2 * 1024 * 1024);
function isZero(bytes: Buffer): boolean {
  for (let at = 0; at < bytes.length; at += ZERO.length) {
    const piece = bytes.subarray(at, at + ZERO.length);
    if (!piece.equals(ZERO.subarray(0, piece.length))) return false;
  }
  return true;
}

// 40 MiB and 150 sectors (not a whole number of 512 KiB blocks, nor of 64 KiB grains): random
// data, holes, repeated bytes, a block that is mostly zeros, data across block edges, and an odd tail.
const raw = Buffer.alloc(40 * MIB + 150 * 512);
randomBytes(6 * MIB).copy(raw, 0);
raw.fill(0x5a, 10 * MIB, 12 * MIB);
randomBytes(4 * KIB).copy(raw, 12 * MIB + 200 * KIB);
randomBytes(MIB).copy(raw, 20 * MIB + 4096);
raw.fill(0xc3, 33 * MIB - 7 * 512, 33 * MIB + 9 * 512);
randomBytes(150 * 512 - 1024).copy(raw, 40 * MIB + 512);
const rawPath = join(dir, "disk.raw");
writeFileSync(rawPath, raw);

/** A disk over a buffer; `pulled` counts the bytes its blocks() handed out. */
function diskOf(bytes: Buffer, options: { size?: number } = {}): DiskBlocks & { pulled: number } {
  const virtualSize = options.size ?? bytes.length;
  const count = Math.ceil(virtualSize / EXPORT_BLOCK);
  const indices: number[] = [];
  for (let i = 0; i < count; i++) if (!isZero(bytes.subarray(i * EXPORT_BLOCK, (i + 1) * EXPORT_BLOCK))) indices.push(i);
  const disk = {
    virtualSize,
    pulled: 0,
    async *allocated() {
      yield* indices;
    },
    async *blocks(signal?: AbortSignal) {
      for (const index of indices) {
        signal?.throwIfAborted();
        const data = bytes.subarray(index * EXPORT_BLOCK, Math.min((index + 1) * EXPORT_BLOCK, virtualSize));
        disk.pulled += data.length;
        yield { index, data };
      }
    },
  };
  return disk;
}

/** A disk whose blocks are what `blocks` says, whatever the contract: for the hostile cases. */
function lyingDisk(virtualSize: number, blocks: { index: number; data: Buffer }[], allocated = blocks.map((b) => b.index)): DiskBlocks {
  return {
    virtualSize,
    async *allocated() {
      yield* allocated;
    },
    async *blocks() {
      yield* blocks;
    },
  };
}

async function writeFile(writer: DiskWriter, disk: DiskBlocks, name: string): Promise<string> {
  const path = join(dir, name);
  await pipeline(Readable.from(writer(disk)), createWriteStream(path));
  return path;
}

async function drain(output: AsyncIterable<Buffer>): Promise<number> {
  let bytes = 0;
  for await (const piece of output) bytes += piece.length;
  return bytes;
}

const rejectsWith = (promise: Promise<unknown>, pattern: RegExp) =>
  assert.rejects(promise, (error: unknown) => error instanceof DiskWriterError && pattern.test(error.message));

/** qemu decides a VHD's size from its CHS geometry unless told to trust the footer's Current Size. */
const vhdOpts = (path: string) => `driver=vpc,force_size_calc=current_size,file.filename=${path}`;

async function qemuInfo(args: string[]): Promise<{ format: string; "virtual-size": number; "format-specific"?: { data: Record<string, unknown> } }> {
  return JSON.parse(await run("qemu-img", ["info", "--output=json", ...args]));
}

async function qemuToRaw(args: string[], name: string): Promise<Buffer> {
  const out = join(dir, name);
  await run("qemu-img", ["convert", ...args, "-O", "raw", out]);
  return readFileSync(out);
}

/** Walks a streamOptimized VMDK record by record and follows its directory; the grains it finds, by lba. */
function walkVmdk(bytes: Buffer): { grains: Map<number, number>; tables: number; header: Buffer } {
  const header = bytes.subarray(0, 512);
  assert.equal(header.readUInt32LE(0), 0x564d444b);
  assert.equal(header.readUInt32LE(4), 3);
  assert.equal(header.readBigUInt64LE(56), 0xffffffffffffffffn, "the header's gdOffset is GD_AT_END");
  const overHead = Number(header.readBigUInt64LE(64));
  assert.equal(bytes.length % 512, 0);
  const grainAt = new Map<number, number>(); // sector → lba
  const metadataAt = new Map<number, number>(); // sector of the metadata → type
  let sector = overHead;
  for (;;) {
    assert.ok(sector * 512 < bytes.length, "the stream ends without an end-of-stream marker");
    const value = Number(bytes.readBigUInt64LE(sector * 512));
    const size = bytes.readUInt32LE(sector * 512 + 8);
    if (size > 0) {
      grainAt.set(sector, value);
      sector += Math.ceil((12 + size) / 512);
      continue;
    }
    const type = bytes.readUInt32LE(sector * 512 + 12);
    if (type === 0) {
      assert.equal((sector + 1) * 512, bytes.length, "the end-of-stream marker is the last sector");
      break;
    }
    metadataAt.set(sector + 1, type);
    sector += 1 + value;
  }
  const footer = bytes.subarray(bytes.length - 1024, bytes.length - 512);
  assert.equal(metadataAt.get(bytes.length / 512 - 2), 3, "a footer marker precedes the footer");
  assert.deepEqual(footer.subarray(0, 56), header.subarray(0, 56), "the footer repeats the header");
  const gdAt = Number(footer.readBigUInt64LE(56));
  assert.equal(metadataAt.get(gdAt), 2, "the footer's gdOffset points at the grain directory");
  const capacity = Number(header.readBigUInt64LE(12));
  const tables = Math.ceil(capacity / 128 / 512);
  const grains = new Map<number, number>(); // grain → sector
  let tableCount = 0;
  for (let t = 0; t < tables; t++) {
    const gtAt = bytes.readUInt32LE(gdAt * 512 + t * 4);
    if (gtAt === 0) continue;
    tableCount++;
    assert.equal(metadataAt.get(gtAt), 1, `directory entry ${t} points at a grain table`);
    for (let e = 0; e < 512; e++) {
      const at = bytes.readUInt32LE(gtAt * 512 + e * 4);
      if (at === 0) continue;
      const grain = t * 512 + e;
      assert.equal(grainAt.get(at), grain * 128, `grain ${grain}'s entry points at its own grain marker`);
      grains.set(grain, at);
    }
  }
  assert.equal(grains.size, grainAt.size, "every grain in the stream is in a table");
  return { grains, tables: tableCount, header };
}

const nonZeroGrains = (bytes: Buffer) => {
  let n = 0;
  for (let at = 0; at < bytes.length; at += GRAIN) if (!isZero(bytes.subarray(at, at + GRAIN))) n++;
  return n;
};

describe("raw", () => {
  it("writes exactly the disk's bytes, holes as zeros", async () => {
    const path = await writeFile(writeRaw, diskOf(raw), "out.raw");
    assert.equal(sha(readFileSync(path)), sha(raw));
  });

  it("writes a disk of zeros as its size in zeros", async () => {
    const chunks: Buffer[] = [];
    for await (const piece of writeRaw(diskOf(Buffer.alloc(0), { size: 3 * MIB + 512 }))) chunks.push(piece);
    const out = Buffer.concat(chunks);
    assert.equal(out.length, 3 * MIB + 512);
    assert.ok(isZero(out));
  });
});

describe("dynamic VHD", () => {
  let path: string;
  let file: Buffer;
  before(async () => {
    path = await writeFile(writeVhd, diskOf(raw), "out.vhd");
    file = readFileSync(path);
  });

  it("reads back in qemu-img as the same disk", async () => {
    const info = await qemuInfo(["--image-opts", vhdOpts(path)]);
    assert.equal(info.format, "vpc");
    assert.equal(info["virtual-size"], raw.length);
    assert.equal(sha(await qemuToRaw(["--image-opts", vhdOpts(path)], "vhd-back.raw")), sha(raw));
  });

  it("reads back in Kiln's VHD reader as the same disk", async () => {
    const source = await fileSource(path);
    try {
      const image = await openVhd(source);
      assert.equal(image.virtualSize, raw.length);
      const back = Buffer.alloc(raw.length);
      for await (const { offset, data } of image.extents()) data.copy(back, offset);
      assert.equal(sha(back), sha(raw));
    } finally {
      await source.close();
    }
  });

  it("lays out footer copy, header, BAT, then only the blocks holding data", async () => {
    const sum = (bytes: Buffer, at: number) => {
      let s = 0;
      for (const [i, b] of bytes.entries()) if (i < at || i >= at + 4) s += b;
      return ~s >>> 0;
    };
    const footer = file.subarray(file.length - 512);
    assert.deepEqual(file.subarray(0, 512), footer, "the file opens with a copy of its footer");
    assert.equal(footer.readUInt32BE(64), sum(footer, 64));
    assert.equal(footer.toString("latin1", 28, 32), "kiln");
    assert.equal(Number(footer.readBigUInt64BE(48)), raw.length, "Current Size is the disk's size exactly");
    const header = file.subarray(512, 1536);
    assert.equal(header.toString("latin1", 0, 8), "cxsparse");
    assert.equal(header.readUInt32BE(36), sum(header, 36));
    const entries = header.readUInt32BE(28);
    assert.equal(entries, Math.ceil(raw.length / (2 * MIB)));
    const tableAt = Number(header.readBigUInt64BE(16));
    const withData = [...Array(entries).keys()].filter((b) => !isZero(raw.subarray(b * 2 * MIB, (b + 1) * 2 * MIB)));
    const allocated = [...Array(entries).keys()].filter((b) => file.readUInt32BE(tableAt + b * 4) !== 0xffffffff);
    assert.deepEqual(allocated, withData);
    const dataStart = tableAt + Math.ceil((entries * 4) / 512) * 512;
    allocated.forEach((b, i) => {
      const at = file.readUInt32BE(tableAt + b * 4) * 512;
      assert.equal(at, dataStart + i * (512 + 2 * MIB), `block ${b} follows the one before it`);
      assert.ok(
        file.subarray(at, at + 512).every((byte) => byte === 0xff),
        "the sector bitmap marks every sector written",
      );
    });
    assert.equal(file.length, dataStart + allocated.length * (512 + 2 * MIB) + 512);
  });

  it("gives the geometry of the spec's CHS algorithm", async () => {
    // Worked by hand from the spec's appendix: 82070 sectors stay at 17 sectors a track with 5
    // heads; 8 GiB and a sector climb to 63 × 16; past 65535 × 16 × 255 sectors the geometry is capped.
    assert.deepEqual(vhdGeometry(raw.length), { cylinders: 965, heads: 5, sectorsPerTrack: 17 });
    assert.deepEqual(vhdGeometry(8 * 1024 ** 3 + 512), { cylinders: 16644, heads: 16, sectorsPerTrack: 63 });
    assert.deepEqual(vhdGeometry(200 * 1024 ** 3), { cylinders: 65535, heads: 16, sectorsPerTrack: 255 });
    // 965 × 5 × 17 sectors fall short of the disk, so the footer carries the largest geometry,
    // which tells geometry-sizing readers (qemu's default rule) to use Current Size.
    assert.deepEqual([file.readUInt16BE(56), file[58], file[59]], [65535, 16, 255]);
    assert.equal((await qemuInfo(["-f", "vpc", path]))["virtual-size"], raw.length);
  });

  it("writes a disk of zeros as a VHD without blocks", async () => {
    const size = 40 * MIB + 512;
    const zeroPath = await writeFile(writeVhd, diskOf(Buffer.alloc(0), { size }), "zeros.vhd");
    const bytes = readFileSync(zeroPath);
    assert.equal(bytes.length, 512 + 1024 + 512 + 512);
    assert.equal((await qemuInfo(["--image-opts", vhdOpts(zeroPath)]))["virtual-size"], size);
    assert.ok(isZero(await qemuToRaw(["--image-opts", vhdOpts(zeroPath)], "zeros-vhd.raw")));
  });

  it("refuses a disk larger than 2040 GiB", async () => {
    await rejectsWith(drain(writeVhd(lyingDisk(2041 * 1024 ** 3, []))), /at most 2190433320960 bytes/);
  });

  it("refuses a block that allocated() did not list: its BAT is already written", async () => {
    const data = Buffer.alloc(EXPORT_BLOCK, 1);
    const disk = lyingDisk(
      8 * MIB,
      [
        { index: 0, data },
        { index: 9, data },
      ],
      [0],
    );
    await rejectsWith(drain(writeVhd(disk)), /block 9 holds data but allocated\(\) did not list it/);
  });

  it("writes an allocated block that blocks() skipped as zeros", async () => {
    const data = Buffer.alloc(EXPORT_BLOCK, 7);
    const disk = lyingDisk(8 * MIB, [{ index: 13, data }], [1, 13]);
    const chunks: Buffer[] = [];
    for await (const piece of writeVhd(disk)) chunks.push(piece);
    const skipped = join(dir, "skipped.vhd");
    writeFileSync(skipped, Buffer.concat(chunks));
    const back = await qemuToRaw(["--image-opts", vhdOpts(skipped)], "skipped.raw");
    const expected = Buffer.alloc(8 * MIB);
    data.copy(expected, 13 * EXPORT_BLOCK);
    assert.equal(sha(back), sha(expected));
  });
});

describe("streamOptimized VMDK", () => {
  let path: string;
  let file: Buffer;
  before(async () => {
    path = await writeFile(writeStreamOptimizedVmdk, diskOf(raw), "out.vmdk");
    file = readFileSync(path);
  });

  it("passes qemu-img check and reads back as the same disk", async () => {
    await run("qemu-img", ["check", "-f", "vmdk", path]);
    const info = await qemuInfo(["-f", "vmdk", path]);
    assert.equal(info.format, "vmdk");
    assert.equal(info["virtual-size"], raw.length);
    assert.equal(info["format-specific"]?.data["create-type"], "streamOptimized");
    assert.equal((info["format-specific"]?.data.extents as { compressed: boolean }[] | undefined)?.[0]?.compressed, true);
    assert.equal(sha(await qemuToRaw(["-f", "vmdk", path], "vmdk-back.raw")), sha(raw));
  });

  it("is a stream: grains, then their tables, the directory, footer and end marker, each behind its marker", () => {
    const { grains, header } = walkVmdk(file);
    assert.equal(grains.size, nonZeroGrains(raw), "one grain per non-zero 64 KiB of the disk");
    assert.equal(Number(header.readBigUInt64LE(12)) * 512, raw.length);
    const text = file.toString("utf8", 512, 512 + Number(header.readBigUInt64LE(36)) * 512);
    assert.match(text, /createType="streamOptimized"/);
    assert.match(text, new RegExp(`RW ${raw.length / 512} SPARSE "disk.vmdk"`));
    assert.match(text, /ddb.adapterType = "lsilogic"/);
    assert.match(text, /ddb.virtualHWVersion = "4"/);
    assert.match(text, /ddb.geometry.cylinders = "\d+"/);
  });

  it("writes a disk of zeros as a VMDK without grains or grain tables", async () => {
    const size = 40 * MIB + 512;
    const zeroPath = await writeFile(writeStreamOptimizedVmdk, diskOf(Buffer.alloc(0), { size }), "zeros.vmdk");
    const bytes = readFileSync(zeroPath);
    // Header and descriptor (64 KiB), directory marker and directory, footer marker, footer, end marker.
    assert.equal(bytes.length, 64 * KIB + 512 * 5);
    assert.equal(walkVmdk(bytes).tables, 0);
    await run("qemu-img", ["check", "-f", "vmdk", zeroPath]);
    assert.equal((await qemuInfo(["-f", "vmdk", zeroPath]))["virtual-size"], size);
    assert.ok(isZero(await qemuToRaw(["-f", "vmdk", zeroPath], "zeros-vmdk.raw")));
  });

  it("takes the extent name and adapter type it is given, and refuses a name that would break the descriptor", async () => {
    const writer = streamOptimizedVmdk({ extentName: "export-ami-0123.vmdk", adapterType: "ide" });
    const first = (await writer(diskOf(raw))[Symbol.asyncIterator]().next()).value as Buffer;
    const text = first.toString("utf8", 512, 4096);
    assert.match(text, /RW \d+ SPARSE "export-ami-0123.vmdk"/);
    assert.match(text, /ddb.adapterType = "ide"/);
    assert.match(text, /ddb.geometry.heads = "16"/);
    assert.throws(() => streamOptimizedVmdk({ extentName: 'a"b' }), DiskWriterError);
    assert.throws(() => streamOptimizedVmdk({ extentName: "a\nRW 1 FLAT x" }), DiskWriterError);
  });
});

describe("a sparse 320 MiB disk", () => {
  // Random blocks every 4 MiB below 96 MiB and above 288 MiB: a 192 MiB hole spans whole VMDK
  // grain tables and VHD blocks.
  const size = 320 * MIB;
  const bytes = Buffer.alloc(size);
  for (let at = 0; at < size; at += 4 * MIB) if (at < 96 * MIB || at >= 288 * MIB) randomBytes(EXPORT_BLOCK).copy(bytes, at);
  const sparsePath = join(dir, "sparse.raw");
  before(async () => {
    // A sparse file of the same bytes, for qemu-img compare.
    await pipeline(Readable.from(writeRaw(diskOf(bytes))), createWriteStream(sparsePath));
    await truncate(sparsePath, size);
  });

  /** The most input a writer held without having written it out: pulled minus emitted bytes. */
  async function heldAhead(writer: DiskWriter, name: string): Promise<{ held: number; path: string }> {
    const disk = diskOf(bytes);
    let emitted = 0;
    let held = 0;
    const path = join(dir, name);
    async function* watched() {
      for await (const piece of writer(disk)) {
        emitted += piece.length;
        held = Math.max(held, disk.pulled - emitted);
        yield piece;
      }
    }
    await pipeline(Readable.from(watched()), createWriteStream(path));
    assert.equal(disk.pulled, 24 * EXPORT_BLOCK + 8 * EXPORT_BLOCK);
    return { held, path };
  }

  it("VMDK: holds no more than the compression window, and reads back the same", async () => {
    const { held, path } = await heldAhead(writeStreamOptimizedVmdk, "sparse.vmdk");
    // Random grains do not shrink: each written grain accounts for its 64 KiB of input.
    assert.ok(held <= (COMPRESSION_WINDOW + EXPORT_BLOCK / GRAIN) * GRAIN, `held ${held} bytes ahead`);
    assert.equal(walkVmdk(readFileSync(path)).tables, 4, "tables only for the 32 MiB ranges holding data");
    await run("qemu-img", ["compare", "-q", "-f", "raw", "-F", "vmdk", sparsePath, path]);
  });

  it("VHD: holds one block at most, and reads back the same", async () => {
    const { held, path } = await heldAhead(writeVhd, "sparse.vhd");
    assert.ok(held <= EXPORT_BLOCK, `held ${held} bytes ahead`);
    await run("qemu-img", ["compare", "-q", "--image-opts", `driver=raw,file.filename=${sparsePath}`, vhdOpts(path)]);
  });

  it("raw: holds one block at most", async () => {
    const disk = diskOf(bytes);
    let emitted = 0;
    let held = 0;
    for await (const piece of writeRaw(disk)) {
      emitted += piece.length;
      held = Math.max(held, disk.pulled - emitted);
    }
    assert.equal(emitted, size);
    assert.ok(held <= EXPORT_BLOCK);
  });
});

describe("every writer", () => {
  const writers: [string, DiskWriter][] = [
    ["raw", writeRaw],
    ["VHD", writeVhd],
    ["VMDK", writeStreamOptimizedVmdk],
  ];

  for (const [name, writer] of writers) {
    it(`${name}: stops with the signal's reason when aborted mid-way`, async () => {
      const controller = new AbortController();
      const reason = new Error("export cancelled");
      let pieces = 0;
      await assert.rejects(
        (async () => {
          for await (const _ of writer(diskOf(raw), controller.signal)) if (++pieces === 3) controller.abort(reason);
        })(),
        (error: unknown) => error === reason,
      );
      assert.ok(pieces < 40, `${pieces} pieces written after the abort`);
    });

    it(`${name}: does not start when the signal is already aborted`, async () => {
      const reason = new Error("too late");
      await assert.rejects(drain(writer(diskOf(raw), AbortSignal.abort(reason))), (error: unknown) => error === reason);
    });

    it(`${name}: refuses a disk that breaks the DiskBlocks contract`, async () => {
      const block = Buffer.alloc(EXPORT_BLOCK, 1);
      await rejectsWith(
        drain(
          writer(
            lyingDisk(8 * MIB, [
              { index: 3, data: block },
              { index: 2, data: block },
            ]),
          ),
        ),
        /block 2 came after (allocated )?block 3/,
      );
      await rejectsWith(drain(writer(lyingDisk(8 * MIB, [{ index: 16, data: block }]))), /block 16 lies past the end of a disk of 16 blocks/);
      await rejectsWith(drain(writer(lyingDisk(8 * MIB, [{ index: 1, data: block.subarray(1) }]))), /block 1 holds 524287 bytes, not 524288/);
      // The last block is exactly what remains of the disk.
      await rejectsWith(drain(writer(lyingDisk(EXPORT_BLOCK + 1024, [{ index: 1, data: block }]))), /block 1 holds 524288 bytes, not 1024/);
      await rejectsWith(drain(writer(lyingDisk(8 * MIB + 100, []))), /not a whole number of 512-byte sectors/);
      await rejectsWith(drain(writer(lyingDisk(0, []))), /not a whole number/);
      await rejectsWith(drain(writer(lyingDisk(DISK_LIMITS.virtualSize + 512, []))), /holds at most/);
    });
  }
});
