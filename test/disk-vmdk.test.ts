// The VMDK reader against files qemu-img writes (every subformat Kiln reads), against a
// descriptor stringing FLAT, ZERO and SPARSE extents together, and against hostile files made by
// patching real ones: each must read back byte for byte, or be refused with its reason.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import { deflateSync } from "node:zlib";
import { DiskImageError } from "../src/formats/disk/errors.js";
import { DISK_LIMITS, type DiskImage } from "../src/formats/disk/image.js";
import { fileSource, type FileSource } from "../src/formats/disk/source.js";
import { openVmdk } from "../src/formats/disk/vmdk.js";
import { run, scratch } from "./helpers/tools.js";

const MiB = 1024 * 1024;
const SECTOR = 512;
const GRAIN = 64 * 1024; // qemu-img's grain: 128 sectors

const dir = scratch("kiln-vmdk-");
const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

/**
 * ~32 MiB of varied content: random data, a zero run, a run of one non-zero byte, data starting
 * mid-grain, and a tail that ends mid-grain (sector aligned, as qemu-img sizes disks).
 */
function makeRaw(): Buffer {
  const raw = Buffer.alloc(32 * MiB + 300 * 1024 + 3 * SECTOR);
  randomBytes(5 * MiB).copy(raw, 0);
  // 5..13 MiB zeros
  raw.fill(0xab, 13 * MiB, 16 * MiB);
  randomBytes(12 * MiB - 32 * 1024).copy(raw, 16 * MiB + 32 * 1024);
  randomBytes(raw.length - 28 * MiB - 4096).copy(raw, 28 * MiB + 4096);
  return raw;
}

let raw: Buffer;
const rawPath = join(dir, "disk.raw");

async function convert(name: string, options: string): Promise<string> {
  const path = join(dir, `${name}.vmdk`);
  await run("qemu-img", ["convert", "-f", "raw", "-O", "vmdk", "-o", options, rawPath, path]);
  return path;
}

/** Opens a VMDK with its companions in the same folder, and closes every file afterwards. */
async function withImage<T>(path: string, use: (image: DiskImage) => Promise<T>): Promise<T> {
  const files: FileSource[] = [];
  const openFile = async (file: string) => {
    const source = await fileSource(file);
    files.push(source);
    return source;
  };
  try {
    const folder = path.slice(0, path.lastIndexOf("/"));
    return await use(await openVmdk(await openFile(path), (name) => openFile(join(folder, name))));
  } finally {
    await Promise.all(files.map((file) => file.close()));
  }
}

/** The whole disk (zeros in the holes), checking the extents' promises on the way. */
async function readDisk(path: string): Promise<Buffer> {
  return withImage(path, async (image) => {
    assert.equal(image.format, "vmdk");
    const disk = Buffer.alloc(image.virtualSize);
    let end = 0;
    for await (const extent of image.extents()) {
      assert.ok(extent.offset >= end, `extent at ${extent.offset} overlaps or precedes the one ending at ${end}`);
      assert.ok(extent.data.length > 0 && extent.data.length <= DISK_LIMITS.extentBytes, `extent of ${extent.data.length} bytes`);
      assert.ok(extent.offset + extent.data.length <= image.virtualSize, "extent past the disk's end");
      extent.data.copy(disk, extent.offset);
      end = extent.offset + extent.data.length;
    }
    return disk;
  });
}

async function assertRefused(path: string, reason: RegExp): Promise<void> {
  await assert.rejects(
    withImage(path, async (image) => {
      for await (const _ of image.extents()) {
        // drain: some lies only show once their table is read
      }
    }),
    (error: unknown) => {
      assert.ok(error instanceof DiskImageError, `expected a DiskImageError, got ${String(error)}`);
      assert.match(error.message, reason);
      return true;
    },
  );
}

/** A copy of a fixture with some bytes changed. */
function patched(from: string, name: string, patch: (bytes: Buffer) => unknown): string {
  const bytes = readFileSync(from);
  const result = patch(bytes);
  const out = Buffer.isBuffer(result) ? result : bytes;
  const path = join(dir, name);
  writeFileSync(path, out);
  return path;
}

// SparseExtentHeader fields the patches need.
const gdOffsetOf = (bytes: Buffer) => Number(bytes.readBigUInt64LE(56));
const firstTable = (bytes: Buffer) => bytes.readUInt32LE(gdOffsetOf(bytes) * SECTOR);
/** Byte offset of the grain table entry for grain `index` (within the first table). */
const gteAt = (bytes: Buffer, index: number) => firstTable(bytes) * SECTOR + index * 4;

describe("VMDK", () => {
  let sparse: string;
  let stream: string;
  let flat: string;

  before(async () => {
    raw = makeRaw();
    writeFileSync(rawPath, raw);
    [sparse, stream, flat] = await Promise.all([
      convert("sparse", "subformat=monolithicSparse"),
      convert("stream", "subformat=streamOptimized"),
      convert("flat", "subformat=monolithicFlat"),
    ]);
  });

  describe("reads what qemu-img writes, byte for byte", () => {
    for (const subformat of ["monolithicSparse", "streamOptimized", "monolithicFlat", "twoGbMaxExtentSparse", "twoGbMaxExtentFlat"]) {
      it(subformat, async () => {
        const path =
          subformat === "monolithicSparse"
            ? sparse
            : subformat === "streamOptimized"
              ? stream
              : subformat === "monolithicFlat"
                ? flat
                : await convert(subformat, `subformat=${subformat}`);
        const disk = await readDisk(path);
        assert.equal(disk.length, raw.length);
        assert.equal(sha256(disk), sha256(raw));
      });
    }

    it("compat6, zeroed_grain and a streamOptimized disk for an lsilogic adapter", async () => {
      for (const options of [
        "subformat=monolithicSparse,compat6",
        "subformat=monolithicSparse,zeroed_grain=on",
        "subformat=streamOptimized,adapter_type=lsilogic",
      ]) {
        const disk = await readDisk(await convert(options.replace(/[=,]/g, "-"), options));
        assert.equal(sha256(disk), sha256(raw), options);
      }
    });

    it("skips holes: a sparse disk's extents hold only allocated grains", async () => {
      await withImage(sparse, async (image) => {
        let bytes = 0;
        for await (const extent of image.extents()) {
          bytes += extent.data.length;
          // 5..13 MiB was zeros in the raw disk: qemu-img allocates no grain there.
          assert.ok(extent.offset + extent.data.length <= 5 * MiB || extent.offset >= 13 * MiB);
        }
        assert.ok(bytes < raw.length - 7 * MiB);
      });
    });
  });

  it("reads a stream whose grain directory is in the footer", async () => {
    // The form VMware's own streams take: gdOffset = GD_AT_END in the header, the real header
    // in a footer before the end-of-stream marker.
    const path = patched(stream, "footer.vmdk", (bytes) => {
      const header = Buffer.from(bytes.subarray(0, SECTOR));
      bytes.writeBigUInt64LE(0xffffffffffffffffn, 56);
      const marker = Buffer.alloc(SECTOR);
      marker.writeBigUInt64LE(1n, 0); // one sector of metadata follows
      marker.writeUInt32LE(3, 12); // MARKER_FOOTER
      return Buffer.concat([bytes.subarray(0, bytes.length - SECTOR), marker, header, Buffer.alloc(SECTOR)]);
    });
    assert.equal(sha256(await readDisk(path)), sha256(raw));
    await assertRefused(
      patched(path, "footer-lost.vmdk", (bytes) => bytes.subarray(0, bytes.length - 2 * SECTOR)),
      /no footer marker|end-of-stream/,
    );
  });

  it("reads a descriptor of FLAT (with an offset), ZERO and SPARSE extents, in order", async () => {
    const folder = scratch("kiln-vmdk-extents-");
    const prefix = randomBytes(MiB);
    writeFileSync(join(folder, "a.bin"), Buffer.concat([prefix, raw.subarray(0, 8 * MiB)]));
    writeFileSync(join(folder, "c.raw"), raw.subarray(8 * MiB, 24 * MiB));
    await run("qemu-img", ["convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=monolithicSparse", join(folder, "c.raw"), join(folder, "c.vmdk")]);
    writeFileSync(join(folder, "d.bin"), raw.subarray(24 * MiB));
    const descriptor = (extents: string) =>
      `# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType="custom"\n\n# Extent description\n${extents}\n\n# The Disk Data Base\nddb.adapterType = "ide"\n`;
    const extents = [
      `RW ${(8 * MiB) / SECTOR} FLAT "a.bin" ${MiB / SECTOR}`,
      `RW ${(4 * MiB) / SECTOR} ZERO`,
      `RW ${(16 * MiB) / SECTOR} SPARSE "c.vmdk"`,
      `RDONLY ${(raw.length - 24 * MiB) / SECTOR} FLAT "d.bin" 0`,
    ];
    writeFileSync(join(folder, "disk.vmdk"), descriptor(extents.join("\n")));
    const expected = Buffer.concat([raw.subarray(0, 8 * MiB), Buffer.alloc(4 * MiB), raw.subarray(8 * MiB, 24 * MiB), raw.subarray(24 * MiB)]);
    assert.equal(sha256(await readDisk(join(folder, "disk.vmdk"))), sha256(expected));
    // Padded to a sector with NULs, with bytes left after the first one: what qemu-img leaves
    // when the CID it rewrites on the first write is shorter than the one it created.
    const padded = Buffer.alloc(1024);
    padded.write(descriptor(extents.join("\n")).replace("CID=12345678", "CID=2345678"), "latin1");
    padded.write('"\n', padded.indexOf(0) + 1, "latin1");
    writeFileSync(join(folder, "padded.vmdk"), padded);
    assert.equal(sha256(await readDisk(join(folder, "padded.vmdk"))), sha256(expected));

    const refuse = async (name: string, text: string | Buffer, reason: RegExp) => {
      writeFileSync(join(folder, name), text);
      await assertRefused(join(folder, name), reason);
    };
    await refuse(
      "binary.vmdk",
      Buffer.concat([Buffer.from("# Disk DescriptorFile\n"), Buffer.from(Array.from({ length: 2048 }, (_, i) => 1 + (i % 255)))]),
      /not a text descriptor/,
    );
    await refuse("escape.vmdk", descriptor(`RW 2048 FLAT "../x" 0`), /not a plain file name/);
    await refuse(
      "parent.vmdk",
      descriptor(extents[0]!).replace("parentCID=ffffffff", "parentCID=8a6c3e21"),
      /differencing disks \(with a parent\) are not supported/,
    );
    await refuse("hint.vmdk", `${descriptor(extents[0]!)}parentFileNameHint="base.vmdk"\n`, /differencing disks/);
    await refuse("type.vmdk", descriptor(`RW 2048 VMFSSPARSE "c.vmdk"`), /extent type VMFSSPARSE is not supported/);
    await refuse("long-flat.vmdk", descriptor(`RW ${(9 * MiB) / SECTOR} FLAT "a.bin" ${MiB / SECTOR + 1}`), /fewer than the descriptor's/);
    await refuse("long-sparse.vmdk", descriptor(`RW ${(17 * MiB) / SECTOR} SPARSE "c.vmdk"`), /capacity of 32768 sectors is less than the descriptor's 34816/);
    await refuse("flat-as-sparse.vmdk", descriptor(`RW 2048 SPARSE "a.bin"`), /not a VMDK sparse extent/);
    await refuse("huge.vmdk", descriptor(`RW ${2 ** 40} ZERO`), /add up to more than/);
    await refuse("bad-line.vmdk", descriptor(`RW lots FLAT "a.bin" 0`), /extent line it cannot read/);
  });

  describe("zeroed grains", () => {
    it("reads a GTE of 1 as a grain of zeros when the header enables it", async () => {
      const path = patched(await convert("zeroed", "subformat=monolithicSparse,zeroed_grain=on"), "zeroed-gte.vmdk", (bytes) => {
        bytes.writeUInt32LE(1, gteAt(bytes, 3));
      });
      const expected = Buffer.from(raw);
      expected.fill(0, 3 * GRAIN, 4 * GRAIN);
      assert.equal(sha256(await readDisk(path)), sha256(expected));
    });

    it("refuses a GTE of 1 when it does not", async () => {
      await assertRefused(
        patched(sparse, "gte-one.vmdk", (bytes) => bytes.writeUInt32LE(1, gteAt(bytes, 3))),
        /grain table 0 entry 3 points into the header or the tables/,
      );
    });
  });

  describe("refuses hostile files", () => {
    it("a truncated file", async () => {
      await assertRefused(
        patched(sparse, "cut.vmdk", (bytes) => bytes.subarray(0, Math.floor(bytes.length * 0.6))),
        /grain table \d+ points outside the file/,
      );
      await assertRefused(
        patched(stream, "cut-stream.vmdk", (bytes) => bytes.subarray(0, Math.floor(bytes.length * 0.6))),
        /grain table \d+ points outside the file/,
      );
      await assertRefused(
        patched(sparse, "cut-header.vmdk", (bytes) => bytes.subarray(0, 100)),
        /truncated file|not a VMDK file/,
      );
    });

    it("grain tables and the directory pointing outside the file, or at metadata", async () => {
      await assertRefused(
        patched(sparse, "gte-out.vmdk", (bytes) => bytes.writeUInt32LE(0x7fffffff, gteAt(bytes, 0))),
        /grain table 0 points outside the file \(entry 0\)/,
      );
      await assertRefused(
        patched(sparse, "gde-out.vmdk", (bytes) => bytes.writeUInt32LE(0x7fffffff, gdOffsetOf(bytes) * SECTOR)),
        /grain table 0 points outside the file/,
      );
      await assertRefused(
        patched(sparse, "gte-table.vmdk", (bytes) => bytes.writeUInt32LE(firstTable(bytes), gteAt(bytes, 0))),
        /grain table 0 entry 0 points into the header or the tables/,
      );
      await assertRefused(
        patched(sparse, "gde-header.vmdk", (bytes) => bytes.writeUInt32LE(gdOffsetOf(bytes), gdOffsetOf(bytes) * SECTOR)),
        /grain table 0 overlaps the header or grain directory/,
      );
      await assertRefused(
        patched(sparse, "gd-out.vmdk", (bytes) => bytes.writeBigUInt64LE(1n << 40n, 56)),
        /grain directory lies outside the file/,
      );
    });

    it("grain tables that map one grain over and over", async () => {
      const path = patched(sparse, "loop.vmdk", (bytes) => {
        const grain = bytes.readUInt32LE(gteAt(bytes, 0));
        const tables = Math.ceil(raw.length / GRAIN / 512);
        for (let t = 0; t < tables; t++) {
          const table = bytes.readUInt32LE(gdOffsetOf(bytes) * SECTOR + t * 4);
          for (let e = 0; e < 512; e++) bytes.writeUInt32LE(grain, table * SECTOR + e * 4);
        }
      });
      await assertRefused(path, /the grain tables map more grains than the file holds/);
    });

    it("a grain whose marker names another sector", async () => {
      await assertRefused(
        patched(stream, "marker.vmdk", (bytes) => bytes.writeBigUInt64LE(12345n, bytes.readUInt32LE(gteAt(bytes, 2)) * SECTOR)),
        /the grain at file sector \d+ is marked for disk sector 12345, but its grain table says 256/,
      );
    });

    /** The stream with grain 1 replaced by `data` deflated behind a marker at the end of the file. */
    const withGrain = (name: string, compressed: Buffer) =>
      patched(stream, name, (bytes) => {
        const at = bytes.length / SECTOR;
        const marker = Buffer.alloc(12);
        marker.writeBigUInt64LE(BigInt(GRAIN / SECTOR), 0);
        marker.writeUInt32LE(compressed.length, 8);
        const grain = Buffer.concat([marker, compressed]);
        bytes.writeUInt32LE(at, gteAt(bytes, 1));
        return Buffer.concat([bytes, grain, Buffer.alloc(SECTOR - (grain.length % SECTOR))]);
      });

    it("a grain that inflates far past its size (a deflate bomb)", async () => {
      await assertRefused(withGrain("bomb.vmdk", deflateSync(Buffer.alloc(64 * MiB))), /the grain for disk sector 128 inflates past its 65536 bytes/);
    });

    it("a grain that inflates short, or is not deflate data", async () => {
      await assertRefused(withGrain("short.vmdk", deflateSync(Buffer.alloc(1000, 7))), /the grain for disk sector 128 inflates to 1000 bytes, not 65536/);
      await assertRefused(withGrain("garbage.vmdk", randomBytes(3000)), /the grain for disk sector 128 is not valid deflate data/);
      await assertRefused(
        patched(stream, "size.vmdk", (bytes) => bytes.writeUInt32LE(0x7fffffff, bytes.readUInt32LE(gteAt(bytes, 2)) * SECTOR + 8)),
        /the grain for disk sector 256 claims 2147483647 compressed bytes/,
      );
    });

    it("header fields out of range", async () => {
      const header = (name: string, patch: (bytes: Buffer) => unknown, reason: RegExp) => assertRefused(patched(sparse, name, patch), reason);
      await header("capacity.vmdk", (bytes) => bytes.writeBigUInt64LE(1n << 40n, 12), /capacity of 562949953421312 bytes exceeds/);
      await header("capacity0.vmdk", (bytes) => bytes.writeBigUInt64LE(0n, 12), /capacity 0 sectors is not a disk size/);
      await header("version.vmdk", (bytes) => bytes.writeUInt32LE(9, 4), /version 9 is not supported/);
      await header("flags.vmdk", (bytes) => bytes.writeUInt32LE(bytes.readUInt32LE(8) | 0x20, 8), /flags 0x20 are not supported/);
      await header("grain.vmdk", (bytes) => bytes.writeBigUInt64LE(100n, 20), /grain size 100 sectors is not a power of two/);
      await header("grain-huge.vmdk", (bytes) => bytes.writeBigUInt64LE(1n << 20n, 20), /grain size 536870912 bytes exceeds/);
      await header("gtes.vmdk", (bytes) => bytes.writeUInt32LE(1 << 20, 44), /1048576 entries are out of range/);
      await header("newlines.vmdk", (bytes) => bytes.write("\n \n\n", 73, "latin1"), /newline check bytes are damaged/);
      await header("compress.vmdk", (bytes) => bytes.writeUInt32LE(bytes.readUInt32LE(8) | (1 << 16), 8), /compressed grains without markers/);
      await header("magic.vmdk", (bytes) => bytes.write("COWD", 0, "latin1"), /COWD/);
      await header("not-vmdk.vmdk", (bytes) => bytes.write("XXXX", 0, "latin1"), /not a VMDK file/);
      await header("parent.vmdk", (bytes) => bytes.write("parentCID=1234abcd", bytes.indexOf("parentCID=ffffffff"), "latin1"), /differencing disks/);
    });
  });

  it("stops when its signal is aborted", async () => {
    await withImage(stream, async (image) => {
      const controller = new AbortController();
      await assert.rejects(async () => {
        for await (const _ of image.extents(controller.signal)) controller.abort();
      }, /abort/i);
    });
  });
});
