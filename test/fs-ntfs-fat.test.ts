// The NTFS and FAT readers against volumes made by mkntfs/ntfs-3g and mkfs.vfat/mtools, and
// against copies of those volumes patched to lie.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import { bufferSource, type ByteSource } from "../src/formats/disk/source.js";
import { openFat } from "../src/inspect/fs/fat.js";
import { FileSystemError, type FileSystem } from "../src/inspect/fs/filesystem.js";
import { openNtfs } from "../src/inspect/fs/ntfs.js";
import { run, scratch } from "./helpers/tools.js";

const MiB = 1024 * 1024;

async function open(opener: (source: ByteSource) => Promise<FileSystem | undefined>, image: Buffer): Promise<FileSystem> {
  const fs = await opener(bufferSource(image));
  assert.ok(fs, "the volume opens");
  return fs;
}

/** Asserts a FileSystemError whose message matches. */
async function rejectsWith(promise: Promise<unknown>, message: RegExp): Promise<void> {
  await assert.rejects(promise, (error: Error) => {
    assert.ok(error instanceof FileSystemError, `${error.name}: ${error.message}`);
    assert.match(error.message, message);
    return true;
  });
}

// ---------------------------------------------------------------------------------------------

type FatType = 12 | 16 | 32;

interface FatFixture {
  type: FatType;
  image: Buffer;
  files: Map<string, Buffer>;
  /** Clusters of the fragmented file, as mshowfat lists them. */
  fragmented: number[];
}

/** Cluster numbers of a file, from mshowfat's "<5-53> <60-61>". */
async function fatChain(imagePath: string, path: string): Promise<number[]> {
  const out = await run("mshowfat", ["-i", imagePath, `::${path}`]);
  const clusters: number[] = [];
  for (const [, from, to] of out.matchAll(/<(\d+)(?:-(\d+))?>/g)) {
    for (let c = Number(from); c <= Number(to ?? from); c++) clusters.push(c);
  }
  return clusters;
}

async function makeFat(type: FatType, sizeMiB: number): Promise<FatFixture> {
  const dir = scratch("kiln-fat-");
  const imagePath = join(dir, "esp.img");
  writeFileSync(imagePath, Buffer.alloc(0));
  await run("truncate", ["-s", `${sizeMiB}M`, imagePath]);
  await run("mkfs.vfat", ["-F", String(type), imagePath]);
  const files = new Map<string, Buffer>();
  const host = (name: string, data: Buffer) => {
    const path = join(dir, name);
    writeFileSync(path, data);
    return path;
  };
  const mcopy = (sources: string[], target: string) => run("mcopy", ["-i", imagePath, ...sources, `::${target}`]);
  await run("mmd", ["-i", imagePath, "::/EFI", "::/EFI/BOOT", "::/EFI/debian", "::/Many"]);

  const loader = Buffer.concat([Buffer.from("MZ"), randomBytes(150_000)]); // many clusters
  await mcopy([host("BOOTX64.EFI", loader)], "/EFI/BOOT/BOOTX64.EFI");
  files.set("/EFI/BOOT/BOOTX64.EFI", loader);
  const grub = Buffer.from("set root=(hd0,gpt2)\nconfigfile /boot/grub/grub.cfg\n");
  await mcopy([host("grub.cfg", grub)], "/EFI/debian/grub.cfg");
  files.set("/EFI/debian/grub.cfg", grub);
  const long = Buffer.from("a name longer than 8.3, with spaces\n");
  await mcopy([host("A rather long file name.txt", long)], "/EFI/A rather long file name.txt");
  files.set("/EFI/A rather long file name.txt", long);
  const unicode = Buffer.from("accents\n");
  await mcopy([host("Überprüfung.txt", unicode)], "/EFI/Überprüfung.txt");
  files.set("/EFI/Überprüfung.txt", unicode);

  // Hundreds of entries, each with a long name: the directory spans many clusters.
  mkdirSync(join(dir, "many"));
  const many: string[] = [];
  for (let i = 0; i < 300; i++) {
    const name = `entry number ${String(i).padStart(3, "0")}.txt`;
    const data = Buffer.from(`entry ${i}\n`);
    writeFileSync(join(dir, "many", name), data);
    many.push(join(dir, "many", name));
    files.set(`/Many/${name}`, data);
  }
  await mcopy(many, "/Many/");

  // A file in the gaps two deleted ones leave: its chain jumps.
  const filler = randomBytes(20_000);
  await mcopy([host("gap1", filler)], "/gap1");
  await mcopy([host("keep", filler)], "/keep");
  await mcopy([host("gap2", filler)], "/gap2");
  await run("mdel", ["-i", imagePath, "::/gap1", "::/gap2"]);
  if (type === 32) {
    // FAT32 remembers where to allocate next (FSI_Nxt_Free); forget it, so mcopy searches from
    // the start and finds the gaps.
    const image = readFileSync(imagePath);
    image.writeUInt32LE(0xffffffff, image.readUInt16LE(48) * image.readUInt16LE(11) + 492);
    writeFileSync(imagePath, image);
  }
  files.set("/keep", filler);
  const scattered = randomBytes(90_000);
  await mcopy([host("scattered.bin", scattered)], "/scattered.bin");
  files.set("/scattered.bin", scattered);
  const fragmented = await fatChain(imagePath, "/scattered.bin");
  return { type, image: readFileSync(imagePath), files, fragmented };
}

/** Writes FAT entry `cluster` of the first FAT ("FAT Data Structure"). */
function patchFatEntry(image: Buffer, type: FatType, cluster: number, value: number): void {
  const fat = image.readUInt16LE(14) * image.readUInt16LE(11);
  if (type === 16) image.writeUInt16LE(value, fat + cluster * 2);
  else if (type === 32) image.writeUInt32LE(value, fat + cluster * 4);
  else {
    const at = fat + cluster + (cluster >> 1);
    const old = image.readUInt16LE(at);
    image.writeUInt16LE(cluster & 1 ? (old & 0x000f) | (value << 4) : (old & 0xf000) | value, at);
  }
}

for (const [type, sizeMiB] of [
  [12, 4],
  [16, 16],
  [32, 40],
] as const) {
  describe(`FAT${type}`, () => {
    let fixture: FatFixture;
    before(async () => {
      fixture = await makeFat(type, sizeMiB);
    });

    it("is FAT, of the type mkfs.vfat made, and not NTFS", async () => {
      assert.equal((await open(openFat, fixture.image)).type, "fat");
      assert.equal(await openNtfs(bufferSource(fixture.image)), undefined);
      assert.equal(fixture.image.toString("latin1", type === 32 ? 0x52 : 0x36, (type === 32 ? 0x52 : 0x36) + 5), `FAT${type}`);
    });

    it("reads every file byte for byte", async () => {
      const fs = await open(openFat, fixture.image);
      assert.ok(
        fixture.fragmented.some((cluster, i) => i > 0 && cluster !== fixture.fragmented[i - 1]! + 1),
        `scattered.bin is fragmented: ${fixture.fragmented.join(",")}`,
      );
      for (const [path, data] of fixture.files) assert.deepEqual(await fs.readFile(path, 1 << 30), data, path);
    });

    it("matches long and 8.3 names in any case", async () => {
      const fs = await open(openFat, fixture.image);
      const loader = fixture.files.get("/EFI/BOOT/BOOTX64.EFI")!;
      assert.deepEqual(await fs.readFile("/efi/boot/bootx64.efi", 1 << 30), loader);
      assert.deepEqual(await fs.readFile("/EFI/BOOT/../boot/./BootX64.efi", 1 << 30), loader);
      assert.deepEqual(await fs.readFile("/EFI/a RATHER long FILE name.TXT", 100), fixture.files.get("/EFI/A rather long file name.txt"));
      assert.deepEqual(await fs.readFile("/efi/ARATHE~1.TXT", 100), fixture.files.get("/EFI/A rather long file name.txt"));
      assert.deepEqual(await fs.readFile("/EFI/DEBIAN/GRUB.CFG", 100), fixture.files.get("/EFI/debian/grub.cfg"));
      assert.deepEqual(await fs.readFile("/efi/ÜBERPRÜFUNG.TXT", 100), fixture.files.get("/EFI/Überprüfung.txt"));
      assert.deepEqual(await fs.readFile("/many/ENTRY NUMBER 299.TXT", 100), Buffer.from("entry 299\n"));
    });

    it("limits reads to maxBytes, and finds no file where there is none", async () => {
      const fs = await open(openFat, fixture.image);
      const loader = fixture.files.get("/EFI/BOOT/BOOTX64.EFI")!;
      assert.deepEqual(await fs.readFile("/EFI/BOOT/BOOTX64.EFI", 2), Buffer.from("MZ"));
      assert.deepEqual(await fs.readFile("/EFI/BOOT/BOOTX64.EFI", 70_001), loader.subarray(0, 70_001));
      assert.equal((await fs.readFile("/EFI/BOOT/BOOTX64.EFI", 0))?.length, 0);
      assert.equal(await fs.readFile("/EFI/BOOT", 100), undefined, "a directory");
      assert.equal(await fs.readFile("/", 100), undefined);
      assert.equal(await fs.readFile("/EFI/BOOT/BOOTX64.EFI/x", 100), undefined, "a file as a directory");
      assert.equal(await fs.readFile("/EFI/BOOT/BOOTIA32.EFI", 100), undefined);
      assert.equal(await fs.readFile("/gap1", 100), undefined, "a deleted file");
      assert.equal(await fs.readFile("/Many/entry number 300.txt", 100), undefined);
    });

    it("refuses a cluster chain that loops or leaves the data area", async () => {
      const [first, second] = fixture.fragmented;
      const looped = Buffer.from(fixture.image);
      patchFatEntry(looped, type, second!, first!);
      await rejectsWith((await open(openFat, looped)).readFile("/scattered.bin", 1 << 30), /file "scattered\.bin": cluster chain loops back to cluster \d+/);
      const self = Buffer.from(fixture.image);
      patchFatEntry(self, type, first!, first!);
      await rejectsWith((await open(openFat, self)).readFile("/scattered.bin", 1 << 30), /cluster chain loops back/);
      // maxBytes within the first cluster never follows the broken link.
      assert.equal((await (await open(openFat, self)).readFile("/scattered.bin", 10))?.length, 10);

      const outside = Buffer.from(fixture.image);
      patchFatEntry(outside, type, first!, { 12: 0xff0, 16: 0xfff0, 32: 0x0ffffff0 }[type]);
      await rejectsWith((await open(openFat, outside)).readFile("/scattered.bin", 1 << 30), /cluster chain leaves the data area/);
      const free = Buffer.from(fixture.image);
      patchFatEntry(free, type, first!, 0);
      await rejectsWith((await open(openFat, free)).readFile("/scattered.bin", 1 << 30), /runs into a free cluster/);
    });

    it("ignores a long name out of sequence or whose checksum is not its short entry's", async () => {
      // The name's three long entries (27 characters, 13 a piece) precede its short entry, the
      // one holding "A rat..." last.
      const at = fixture.image.indexOf(Buffer.from("A rat", "utf16le")) - 1;
      assert.equal(fixture.image.toString("latin1", at + 32, at + 43), "ARATHE~1TXT", "the short entry follows");
      assert.deepEqual(
        [at - 64, at - 32, at].map((entry) => [fixture.image[entry], fixture.image[entry + 11]! & 0x3f]),
        [
          [0x43, 0x0f],
          [0x02, 0x0f],
          [0x01, 0x0f],
        ],
      );
      const text = fixture.files.get("/EFI/A rather long file name.txt");
      for (const entries of [[at], [at - 64, at - 32, at]]) {
        const broken = Buffer.from(fixture.image);
        for (const entry of entries) broken[entry + 13] = broken[entry + 13]! ^ 0x55;
        const fs = await open(openFat, broken);
        assert.equal(await fs.readFile("/EFI/A rather long file name.txt", 100), undefined);
        assert.deepEqual(await fs.readFile("/EFI/ARATHE~1.TXT", 100), text);
      }
    });

    it("tells a foreign or lying boot sector apart", async () => {
      assert.equal(await openFat(bufferSource(Buffer.alloc(4096))), undefined, "zeros");
      const unsigned = Buffer.from(fixture.image.subarray(0, MiB));
      unsigned.writeUInt16LE(0, 510);
      assert.equal(await openFat(bufferSource(unsigned)), undefined, "no 0x55AA");
      const oddCluster = Buffer.from(fixture.image);
      oddCluster[13] = 3;
      assert.equal(await openFat(bufferSource(oddCluster)), undefined, "3 sectors per cluster is no BPB");
      await rejectsWith(openFat(bufferSource(fixture.image.subarray(0, fixture.image.length / 2))), /FAT volume claims \d+ bytes but its partition holds \d+/);
      const tinyFat = Buffer.from(fixture.image);
      if (type === 32) tinyFat.writeUInt32LE(1, 36);
      else tinyFat.writeUInt16LE(1, 22);
      await rejectsWith(openFat(bufferSource(tinyFat)), /FAT of \d+ bytes is too small for \d+ clusters|FAT\d+ volume with \d+ clusters/);
      if (type === 32) {
        const root = Buffer.from(fixture.image);
        root.writeUInt32LE(0x0fffffff, 44);
        await rejectsWith(openFat(bufferSource(root)), /root directory cluster \d+ is outside the data area/);
      }
    });
  });
}

// ---------------------------------------------------------------------------------------------

interface NtfsFixture {
  image: Buffer;
  files: Map<string, Buffer>;
  /** ntfsinfo's runlist of /frag.bin has this many runs. */
  fragments: number;
}

const ntfsinfo = (image: string, path: string) => run("ntfsinfo", ["-v", "-F", path, image]);

/** Builds the volume through ntfs-3g (FUSE), unmounting whatever happens; undefined if it cannot mount. */
async function makeNtfs(): Promise<NtfsFixture | string> {
  const dir = scratch("kiln-ntfs-");
  const imagePath = join(dir, "ntfs.img");
  const mount = join(dir, "mnt");
  mkdirSync(mount);
  writeFileSync(imagePath, Buffer.alloc(0));
  await run("truncate", ["-s", "32M", imagePath]);
  await run("mkntfs", ["-F", "-Q", "-q", imagePath]);
  try {
    await run("ntfs-3g", [imagePath, mount]);
  } catch (error) {
    return `ntfs-3g cannot mount here (${(error as Error).message.trim()})`;
  }
  const files = new Map<string, Buffer>();
  try {
    const put = (path: string, data: Buffer) => {
      writeFileSync(join(mount, path), data);
      files.set(path, data);
    };
    mkdirSync(join(mount, "Windows", "System32"), { recursive: true });
    put("/Windows/System32/ntoskrnl.exe", Buffer.concat([Buffer.from("MZ"), randomBytes(400_000)]));
    put("/small.txt", Buffer.from("a resident file\n"));
    put("/Résumé.txt", Buffer.from("é\n"));
    mkdirSync(join(mount, "Many"));
    for (let i = 0; i < 400; i++) put(`/Many/File number ${String(i).padStart(3, "0")}.txt`, Buffer.from(`file ${i}\n`));
    // Sparse: a hole, one written cluster, a hole.
    const sparse = Buffer.alloc(3 * MiB);
    sparse.write("tail", 2_000_000);
    await run("truncate", ["-s", String(sparse.length), join(mount, "sparse.bin")]);
    await run("dd", [`of=${join(mount, "sparse.bin")}`, "bs=1", "seek=2000000", "conv=notrunc", "status=none"], { input: "tail" });
    files.set("/sparse.bin", sparse);
    // Fragmented: fill the volume around files that are then deleted, so the last file can only
    // go into their gaps.
    for (let i = 0; i < 12; i++) writeFileSync(join(mount, `gap${i}`), randomBytes(64 * 1024));
    await run("dd", ["if=/dev/zero", `of=${join(mount, "filler")}`, "bs=1M", "status=none"]).catch(() => undefined); // ends when the volume is full
    for (let i = 0; i < 12; i += 2) await run("rm", [join(mount, `gap${i}`)]);
    put("/frag.bin", randomBytes(300_000));
  } finally {
    await run("fusermount", ["-u", mount]);
  }
  const runlist = await ntfsinfo(imagePath, "/frag.bin");
  const fragments = Number(/Total runs: (\d+)/.exec(runlist)?.[1] ?? 0);
  return { image: readFileSync(imagePath), files, fragments };
}

interface NtfsLayout {
  clusterBytes: number;
  recordBytes: number;
  mftOffset: number;
}

function ntfsLayout(image: Buffer): NtfsLayout {
  const clusterBytes = image.readUInt16LE(0x0b) * image[0x0d]!;
  const encoded = image.readInt8(0x40);
  return { clusterBytes, recordBytes: encoded > 0 ? encoded * clusterBytes : 2 ** -encoded, mftOffset: Number(image.readBigUInt64LE(0x30)) * clusterBytes };
}

/** Offset of the FILE record holding `name` in a $FILE_NAME (scanning the whole volume, as the MFT may be in pieces). */
function fileRecordOf(image: Buffer, name: string): number {
  const { recordBytes } = ntfsLayout(image);
  const needle = Buffer.from(name, "utf16le");
  for (let at = 0; at + recordBytes <= image.length; at += recordBytes) {
    if (image.toString("latin1", at, at + 4) === "FILE" && image.subarray(at, at + recordBytes).includes(needle)) return at;
  }
  throw new Error(`no FILE record names ${name}`);
}

/** Offset of the first attribute of `type` in the record at `record`. */
function attributeOf(image: Buffer, record: number, type: number): number {
  for (let at = record + image.readUInt16LE(record + 0x14); image.readUInt32LE(at) !== 0xffffffff; at += image.readUInt32LE(at + 4)) {
    if (image.readUInt32LE(at) === type) return at;
  }
  throw new Error(`no attribute 0x${type.toString(16)}`);
}

describe("NTFS", () => {
  let fixture: NtfsFixture | undefined;
  let skip: string | undefined;
  before(async () => {
    const made = await makeNtfs();
    if (typeof made === "string") skip = made;
    else fixture = made;
  });

  it("is NTFS and not FAT", async (t) => {
    if (!fixture) return t.skip(skip);
    assert.equal((await open(openNtfs, fixture.image)).type, "ntfs");
    assert.equal(await openFat(bufferSource(fixture.image)), undefined);
  });

  it("reads resident, non-resident, fragmented and sparse files byte for byte", async (t) => {
    if (!fixture) return t.skip(skip);
    const { image } = fixture;
    assert.equal(image[attributeOf(image, fileRecordOf(image, "small.txt"), 0x80) + 8], 0, "small.txt is resident");
    assert.equal(image[attributeOf(image, fileRecordOf(image, "ntoskrnl.exe"), 0x80) + 8], 1, "ntoskrnl.exe is not");
    assert.ok(fixture.fragments >= 2, `frag.bin is in ${fixture.fragments} runs`);
    const fs = await open(openNtfs, image);
    for (const [path, data] of fixture.files) assert.deepEqual(await fs.readFile(path, 1 << 30), data, path);
  });

  it("looks names up in any case, through index blocks", async (t) => {
    if (!fixture) return t.skip(skip);
    const fs = await open(openNtfs, fixture.image);
    const kernel = fixture.files.get("/Windows/System32/ntoskrnl.exe")!;
    assert.deepEqual(await fs.readFile("/WINDOWS/system32/NTOSKRNL.EXE", 1 << 30), kernel);
    assert.deepEqual(await fs.readFile("/windows/./System32/../System32/ntoskrnl.exe", 2), Buffer.from("MZ"));
    assert.deepEqual(await fs.readFile("/RÉSUMÉ.TXT", 100), Buffer.from("é\n"));
    for (const i of [0, 1, 137, 200, 398, 399]) {
      const name = `File number ${String(i).padStart(3, "0")}.txt`;
      assert.deepEqual(await fs.readFile(`/many/${name.toUpperCase()}`, 100), Buffer.from(`file ${i}\n`), name);
    }
  });

  it("limits reads to maxBytes, and finds no file where there is none", async (t) => {
    if (!fixture) return t.skip(skip);
    const fs = await open(openNtfs, fixture.image);
    const kernel = fixture.files.get("/Windows/System32/ntoskrnl.exe")!;
    assert.deepEqual(await fs.readFile("/Windows/System32/ntoskrnl.exe", 5000), kernel.subarray(0, 5000));
    assert.equal((await fs.readFile("/small.txt", 0))?.length, 0);
    assert.equal(await fs.readFile("/Windows/System32", 100), undefined, "a directory");
    assert.equal(await fs.readFile("/", 100), undefined);
    assert.equal(await fs.readFile("/small.txt/x", 100), undefined);
    assert.equal(await fs.readFile("/Many/File number 400.txt", 100), undefined);
    assert.equal(await fs.readFile("/Many/File number 1", 100), undefined);
    assert.equal(await fs.readFile("/gap0", 100), undefined, "a deleted file");
    assert.equal((await fs.readFile("/gap1", 3))?.length, 3, "its neighbour was kept");
  });

  it("refuses a record or index block that fails its fix-up", async (t) => {
    if (!fixture) return t.skip(skip);
    const { recordBytes, mftOffset, clusterBytes } = ntfsLayout(fixture.image);
    const root = Buffer.from(fixture.image);
    root[mftOffset + 5 * recordBytes + 510] = ~root[mftOffset + 5 * recordBytes + 510]! & 0xff;
    await rejectsWith((await open(openNtfs, root)).readFile("/small.txt", 100), /MFT record 5 fails its update sequence check in sector 0/);

    const index = Buffer.from(fixture.image);
    let blocks = 0;
    for (let at = 0; at < index.length; at += clusterBytes) {
      if (index.toString("latin1", at, at + 4) === "INDX") {
        index[at + 1022] = ~index[at + 1022]! & 0xff;
        blocks++;
      }
    }
    assert.ok(blocks > 0, "the volume has index blocks");
    await rejectsWith(
      (await open(openNtfs, index)).readFile("/Many/File number 250.txt", 100),
      /index block VCN \d+ fails its update sequence check in sector 1/,
    );

    const record0 = Buffer.from(fixture.image);
    record0.write("BAAD", mftOffset, "latin1");
    await rejectsWith(openNtfs(bufferSource(record0)), /MFT record 0 is not a FILE record \(marked bad\)/);
  });

  it("refuses a data run outside the volume, and compressed data", async (t) => {
    if (!fixture) return t.skip(skip);
    const kernel = fileRecordOf(fixture.image, "ntoskrnl.exe");
    const data = attributeOf(fixture.image, kernel, 0x80);
    const pairs = data + fixture.image.readUInt16LE(data + 0x20);
    const header = fixture.image[pairs]!;
    const outside = Buffer.from(fixture.image);
    outside[pairs + (header & 0x0f) + (header >> 4)] = 0x7f; // top byte of the first LCN
    await rejectsWith(
      (await open(openNtfs, outside)).readFile("/Windows/System32/ntoskrnl.exe", 100),
      /MFT record \d+: attribute 0x80: data run at cluster \d+ \(\+\d+\) lies outside the volume's \d+ clusters/,
    );

    const compressed = Buffer.from(fixture.image);
    compressed[data + 12] = compressed[data + 12]! | 0x01;
    await rejectsWith((await open(openNtfs, compressed)).readFile("/Windows/System32/ntoskrnl.exe", 100), /attribute 0x80 is compressed/);

    const long = Buffer.from(fixture.image);
    long.writeBigUInt64LE(1n << 40n, data + 0x30); // data size beyond its clusters
    await rejectsWith((await open(openNtfs, long)).readFile("/Windows/System32/ntoskrnl.exe", 100), /size \d+ is beyond its \d+ clusters/);
  });

  it("follows no reparse point, and refuses what it does not read", async (t) => {
    if (!fixture) return t.skip(skip);
    const kernel = fileRecordOf(fixture.image, "ntoskrnl.exe");
    // $STANDARD_INFORMATION, retyped: resident, its value long enough to pass for another attribute.
    const standard = attributeOf(fixture.image, kernel, 0x10);
    const retyped = (type: number, tag?: number) => {
      const image = Buffer.from(fixture!.image);
      image.writeUInt32LE(type, standard);
      if (tag !== undefined) image.writeUInt32LE(tag, standard + image.readUInt16LE(standard + 20));
      return image;
    };
    const path = "/Windows/System32/ntoskrnl.exe";
    const symlink = 0xa000000c; // IO_REPARSE_TAG_SYMLINK, a name surrogate
    assert.equal(await (await open(openNtfs, retyped(0xc0, symlink))).readFile(path, 100), undefined);
    await rejectsWith(
      (await open(openNtfs, retyped(0xc0, 0x80000017))).readFile(path, 100),
      /is a reparse point \(tag 0x80000017\) whose data Kiln cannot read/,
    );
    await rejectsWith((await open(openNtfs, retyped(0x20))).readFile(path, 100), /keeps its attributes in an \$ATTRIBUTE_LIST, which Kiln does not read/);
  });

  it("tells a foreign or lying boot sector apart", async (t) => {
    if (!fixture) return t.skip(skip);
    assert.equal(await openNtfs(bufferSource(Buffer.alloc(4096))), undefined);
    await rejectsWith(openNtfs(bufferSource(fixture.image.subarray(0, 8 * MiB))), /NTFS volume claims \d+ bytes but its partition holds 8388608/);
    const record = Buffer.from(fixture.image);
    record.writeInt8(-32, 0x40);
    await rejectsWith(openNtfs(bufferSource(record)), /MFT record size \d+ \(encoded -32\) is not 512 bytes to 64 KiB/);
    const mft = Buffer.from(fixture.image);
    mft.writeBigUInt64LE(1n << 40n, 0x30);
    await rejectsWith(openNtfs(bufferSource(mft)), /the MFT at cluster \d+ lies outside the volume/);
    const cluster = Buffer.from(fixture.image);
    cluster[0x0d] = 3;
    await rejectsWith(openNtfs(bufferSource(cluster)), /sectors per cluster byte 0x3/);
  });
});

// Without FUSE: ntfscp alone, which copies files into the root.
describe("NTFS written with ntfscp", () => {
  it("reads what ntfscp wrote", async () => {
    const dir = scratch("kiln-ntfscp-");
    const imagePath = join(dir, "ntfs.img");
    writeFileSync(imagePath, Buffer.alloc(0));
    await run("truncate", ["-s", "8M", imagePath]);
    await run("mkntfs", ["-F", "-Q", "-q", imagePath]);
    const big = Buffer.concat([Buffer.from("MZ"), randomBytes(200_000)]);
    const small = Buffer.from("small\n");
    writeFileSync(join(dir, "big"), big);
    writeFileSync(join(dir, "small"), small);
    await run("ntfscp", ["-q", imagePath, join(dir, "big"), "/BOOTMGR"]);
    await run("ntfscp", ["-q", imagePath, join(dir, "small"), "/small.ini"]);
    const fs = await open(openNtfs, readFileSync(imagePath));
    assert.deepEqual(await fs.readFile("/bootmgr", 1 << 30), big);
    assert.deepEqual(await fs.readFile("/SMALL.INI", 1 << 30), small);
    assert.equal(await fs.readFile("/$MFT/x", 10), undefined);
  });
});
