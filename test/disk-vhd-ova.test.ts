// The VHD and OVA readers, the raw reader and the partition table reader, on files qemu-img,
// tar and sfdisk made; hostile variants are those files patched.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import { DiskImageError } from "../src/formats/disk/errors.js";
import { DISK_LIMITS, type DiskImage } from "../src/formats/disk/image.js";
import { openOva } from "../src/formats/disk/ova.js";
import { openRaw } from "../src/formats/disk/raw.js";
import { bufferSource, fileSource } from "../src/formats/disk/source.js";
import { openVhd } from "../src/formats/disk/vhd.js";
import { readPartitions } from "../src/inspect/partitions.js";
import { architectureOf } from "../src/inspect/executables.js";
import { efiApplication, ovfDescriptor } from "./helpers/disks.js";
import { run, scratch } from "./helpers/tools.js";

const MIB = 1024 * 1024;
const dir = scratch();
// 24 MiB and a bit: random data, a hole, repeated bytes, and an odd tail.
const raw = Buffer.alloc(24 * MIB + 3 * 512);
randomBytes(5 * MIB).copy(raw, 0);
raw.fill(0x5a, 12 * MIB, 14 * MIB);
randomBytes(MIB).copy(raw, 20 * MIB + 4096);
randomBytes(1536).copy(raw, 24 * MIB);
writeFileSync(join(dir, "disk.raw"), raw);

/** Every byte of a disk image, zeros where it yields nothing; checks the extents' contract. */
async function reassemble(image: DiskImage): Promise<Buffer> {
  const out = Buffer.alloc(image.virtualSize);
  let end = 0;
  for await (const { offset, data } of image.extents()) {
    assert.ok(offset >= end, "extents overlap or go backwards");
    assert.ok(data.length <= DISK_LIMITS.extentBytes, "an extent is too large");
    assert.ok(offset + data.length <= image.virtualSize, "an extent runs past the disk");
    data.copy(out, offset);
    end = offset + data.length;
  }
  return out;
}

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

async function rejects(promise: Promise<unknown>, pattern: RegExp) {
  await assert.rejects(promise, (error: unknown) => error instanceof DiskImageError && pattern.test(error.message));
}

async function drain(image: DiskImage) {
  for await (const _ of image.extents());
}

/** The VHD spec's checksum, recomputed after a patch. */
function fixChecksum(bytes: Buffer, at: number, checksumAt: number, length: number) {
  bytes.writeUInt32BE(0, at + checksumAt);
  let sum = 0;
  for (let i = 0; i < length; i++) sum += bytes[at + i]!;
  bytes.writeUInt32BE(~sum >>> 0, at + checksumAt);
}

describe("raw", () => {
  it("reads the file as the disk", async () => {
    assert.equal(sha(await reassemble(await openRaw(bufferSource(raw)))), sha(raw));
  });
  it("refuses an empty file", async () => rejects(openRaw(bufferSource(Buffer.alloc(0))), /empty/));
});

describe("VHD", () => {
  let dynamic: Buffer;
  before(async () => {
    await run("qemu-img", ["convert", "-f", "raw", "-O", "vpc", "-o", "subformat=dynamic,force_size=on", join(dir, "disk.raw"), join(dir, "dynamic.vhd")]);
    await run("qemu-img", ["convert", "-f", "raw", "-O", "vpc", "-o", "subformat=fixed,force_size=on", join(dir, "disk.raw"), join(dir, "fixed.vhd")]);
    dynamic = readFileSync(join(dir, "dynamic.vhd"));
  });

  for (const name of ["dynamic", "fixed"]) {
    it(`reads a ${name} VHD qemu-img made byte for byte`, async () => {
      const source = await fileSource(join(dir, `${name}.vhd`));
      try {
        const image = await openVhd(source);
        assert.equal(image.virtualSize, raw.length);
        assert.equal(sha(await reassemble(image)), sha(raw));
      } finally {
        await source.close();
      }
    });
  }

  it("skips a dynamic VHD's unallocated blocks", async () => {
    let bytes = 0;
    for await (const { data } of (await openVhd(bufferSource(dynamic))).extents()) bytes += data.length;
    assert.ok(bytes < raw.length - 4 * MIB, `read ${bytes} bytes of a disk with a 4 MiB hole`);
  });

  it("refuses a differencing VHD", async () => {
    const bytes = Buffer.from(dynamic);
    const footerAt = bytes.length - 512;
    bytes.writeUInt32BE(4, footerAt + 60);
    fixChecksum(bytes, footerAt, 64, 512);
    await rejects(openVhd(bufferSource(bytes)), /differencing/);
  });

  it("refuses a footer whose checksum is wrong", async () => {
    const bytes = Buffer.from(dynamic);
    bytes[bytes.length - 512 + 50]! ^= 0xff;
    bytes[50]! ^= 0xff;
    await rejects(openVhd(bufferSource(bytes)), /checksum/);
  });

  it("refuses a block table entry outside the file", async () => {
    const bytes = Buffer.from(dynamic);
    const header = Number(bytes.readBigUInt64BE(16));
    const table = Number(bytes.readBigUInt64BE(header + 16));
    bytes.writeUInt32BE(0x7fffff00, table);
    await rejects(drain(await openVhd(bufferSource(bytes))), /outside the file/);
  });

  it("refuses a block overlapping the block table", async () => {
    const bytes = Buffer.from(dynamic);
    const header = Number(bytes.readBigUInt64BE(16));
    const table = Number(bytes.readBigUInt64BE(header + 16));
    bytes.writeUInt32BE(table / 512, table);
    await rejects(drain(await openVhd(bufferSource(bytes))), /overlaps/);
  });

  it("refuses blocks that share bytes to expand past the file", async () => {
    const bytes = Buffer.from(dynamic);
    const header = Number(bytes.readBigUInt64BE(16));
    const table = Number(bytes.readBigUInt64BE(header + 16));
    const first = bytes.readUInt32BE(table);
    for (let i = 0; i < 12; i++) bytes.writeUInt32BE(first, table + i * 4);
    await rejects(drain(await openVhd(bufferSource(bytes))), /more blocks than the file holds/);
  });

  it("refuses an absurd virtual size", async () => {
    const bytes = Buffer.from(dynamic);
    const footerAt = bytes.length - 512;
    bytes.writeBigUInt64BE(1n << 60n, footerAt + 48);
    fixChecksum(bytes, footerAt, 64, 512);
    await rejects(openVhd(bufferSource(bytes)), /cannot accept/);
  });

  it("refuses a truncated dynamic VHD", async () => {
    await rejects((async () => drain(await openVhd(bufferSource(dynamic.subarray(0, dynamic.length - 2 * MIB)))))(), /truncated|outside the file/);
  });
});

describe("OVA", () => {
  async function packed(files: Record<string, Buffer | string>, args: string[] = ["--format=ustar"]): Promise<Buffer> {
    const sub = scratch();
    for (const [name, body] of Object.entries(files)) writeFileSync(join(sub, name), body);
    await run("tar", [...args, "-cf", join(sub, "out.ova"), "-C", sub, ...Object.keys(files)]);
    return readFileSync(join(sub, "out.ova"));
  }

  it("finds the disks in the order the virtual hardware attaches them", async () => {
    const ovf = ovfDescriptor([
      { href: "b.img", capacity: 1024 },
      { href: "a.img", capacity: 1024 },
    ]).replace("<rasd:AddressOnParent>0</rasd:AddressOnParent>", "<rasd:AddressOnParent>9</rasd:AddressOnParent>");
    const ova = await openOva(bufferSource(await packed({ "vm.ovf": ovf, "a.img": "AAAA", "b.img": "BBBBBB" })));
    assert.deepEqual(
      ova.disks.map((d) => d.name),
      ["a.img", "b.img"],
    );
    assert.equal((await ova.disks[0]!.source.read(0, 4)).toString(), "AAAA");
    assert.equal(ova.disks[1]!.source.size, 6);
  });

  it("reads pax long names", async () => {
    const long = `${"d".repeat(120)}.img`;
    const ovf = ovfDescriptor([{ href: long, capacity: 1 }]);
    const ova = await openOva(bufferSource(await packed({ "vm.ovf": ovf, [long]: "x" }, ["--format=pax"])));
    assert.equal(ova.disks[0]!.name, long);
  });

  it("refuses a descriptor naming a file outside the package", async () => {
    for (const href of ["../etc/passwd", "/etc/passwd", "sub/../../x", "file:///etc/passwd"]) {
      const ovf = ovfDescriptor([{ href: "placeholder.img", capacity: 1 }]).replace("placeholder.img", href);
      await rejects(openOva(bufferSource(await packed({ "vm.ovf": ovf, "placeholder.img": "x" }))), /outside the package/);
    }
  });

  it("refuses a disk the package does not hold, a package without a descriptor, and a truncated one", async () => {
    await rejects(openOva(bufferSource(await packed({ "vm.ovf": ovfDescriptor([{ href: "gone.img", capacity: 1 }]) }))), /does not hold/);
    await rejects(openOva(bufferSource(await packed({ "a.img": "x" }))), /no OVF descriptor/);
    const whole = await packed({ "vm.ovf": ovfDescriptor([{ href: "a.img", capacity: 1 }]), "a.img": Buffer.alloc(8192, 1) });
    await rejects(openOva(bufferSource(whole.subarray(0, 4096))), /truncated|does not hold/);
  });

  it("refuses a DOCTYPE (entity expansion) in the descriptor", async () => {
    const ovf = `<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]>${ovfDescriptor([{ href: "a.img", capacity: 1 }]).replace(/^<\?xml[^>]*>/, "")}`;
    await rejects(openOva(bufferSource(await packed({ "vm.ovf": ovf, "a.img": "x" }))), /DOCTYPE/);
  });

  it("refuses a tar header whose checksum is wrong", async () => {
    const bytes = await packed({ "vm.ovf": ovfDescriptor([{ href: "a.img", capacity: 1 }]), "a.img": "x" });
    bytes[10]! ^= 0x01;
    await rejects(openOva(bufferSource(bytes)), /checksum/);
  });
});

describe("partition tables", () => {
  it("reads a GPT disk sfdisk made, with its EFI system partition", async () => {
    const path = join(dir, "gpt.raw");
    await run("truncate", ["-s", "16M", path]);
    await run("sfdisk", ["-q", path], {
      input:
        "label: gpt\nstart=2048, size=2048, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\nstart=4096, size=20000, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n",
    });
    const table = await readPartitions(bufferSource(readFileSync(path)));
    assert.equal(table.scheme, "gpt");
    assert.deepEqual(
      table.partitions.map((p) => [p.number, p.start, p.size, p.efiSystem]),
      [
        [1, 2048 * 512, 2048 * 512, true],
        [2, 4096 * 512, 20000 * 512, false],
      ],
    );
  });

  it("falls back to the backup GPT when the primary is damaged", async () => {
    const path = join(dir, "gpt2.raw");
    await run("truncate", ["-s", "8M", path]);
    await run("sfdisk", ["-q", path], { input: "label: gpt\nstart=2048, size=4096, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n" });
    const bytes = readFileSync(path);
    bytes[512 + 20]! ^= 0xff;
    const table = await readPartitions(bufferSource(bytes));
    assert.equal(table.scheme, "gpt");
    assert.equal(table.partitions.length, 1);
  });

  it("reads an MBR disk with logical partitions", async () => {
    const path = join(dir, "mbr.raw");
    await run("truncate", ["-s", "16M", path]);
    await run("sfdisk", ["-q", path], {
      input:
        "label: dos\nstart=2048, size=4096, type=83, bootable\nstart=8192, size=16384, type=5\nstart=10240, size=2048, type=83\nstart=14336, size=2048, type=82\n",
    });
    const table = await readPartitions(bufferSource(readFileSync(path)));
    assert.equal(table.scheme, "mbr");
    assert.deepEqual(
      table.partitions.map((p) => [p.number, p.start / 512, p.type]),
      [
        [1, 2048, "83"],
        [5, 10240, "83"],
        [6, 14336, "82"],
      ],
    );
  });

  it("survives an extended-partition chain that loops", async () => {
    const path = join(dir, "loop.raw");
    await run("truncate", ["-s", "16M", path]);
    await run("sfdisk", ["-q", path], {
      input: "label: dos\nstart=8192, size=16384, type=5\nstart=10240, size=2048, type=83\nstart=14336, size=2048, type=83\n",
    });
    const bytes = readFileSync(path);
    // The first EBR's "next" entry names the second EBR; make the second's name itself.
    const extended = 8192;
    const secondRelative = bytes.readUInt32LE(extended * 512 + 462 + 8);
    const secondEbr = (extended + secondRelative) * 512;
    bytes[secondEbr + 462 + 4] = 0x05;
    bytes.writeUInt32LE(secondRelative, secondEbr + 462 + 8);
    bytes.writeUInt32LE(2048, secondEbr + 462 + 12);
    const table = await readPartitions(bufferSource(bytes));
    assert.deepEqual(
      table.partitions.map((p) => p.number),
      [5, 6],
    );
  });

  it("says none for a bare file system", async () => {
    const path = join(dir, "bare.fat");
    writeFileSync(path, Buffer.alloc(2 * MIB));
    await run("mkfs.vfat", ["-F", "12", path]);
    assert.equal((await readPartitions(bufferSource(readFileSync(path)))).scheme, "none");
  });
});

describe("executable headers", () => {
  it("reads the machine of this host's /bin/sh and of a PE32+ EFI application", () => {
    const expected = process.arch === "arm64" ? "arm64" : "x86_64";
    assert.equal(architectureOf(readFileSync("/bin/sh").subarray(0, 4096)), expected);
    assert.equal(architectureOf(efiApplication()), "x86_64");
    assert.equal(architectureOf(Buffer.from("#!/bin/sh\n")), undefined);
  });
});
