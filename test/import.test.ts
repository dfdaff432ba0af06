// ImportImage, ImportSnapshot and their Describe/Cancel calls through the SDKs, on disks real
// tools made: every format qemu-img writes, and an OVA, must give snapshots holding exactly the
// raw disk's bytes, and the AMI must say what the disk boots (Linux, x86_64, UEFI, and the
// distribution). Bad files end the task `deleted` with a ClientError and leave nothing behind.
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { deflateRawSync } from "node:zlib";
import { after, before, describe, it } from "node:test";
import {
  CancelImportTaskCommand,
  DescribeImagesCommand,
  DescribeImportImageTasksCommand,
  DescribeImportSnapshotTasksCommand,
  DescribeRegionsCommand,
  DescribeSnapshotsCommand,
  ImportImageCommand,
  ImportSnapshotCommand,
  type EC2Client,
  type ImageDiskContainer,
  type ImportImageTask,
  type ImportSnapshotTask,
} from "@aws-sdk/client-ec2";
import { CreateBucketCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import { GetObjectCommand } from "@aws-sdk/client-s3";
import { assertBlocksHold, chunkBytes, errorName, readSnapshot } from "./helpers/data.js";
import { convertDisk, makeDataDisk, makeLinuxDisk, makeOva, makeWindowsDisk, type Conversion } from "./helpers/disks.js";
import { startTestKiln, type TestKiln } from "./helpers/kiln.js";
import { qcowEntries } from "./helpers/qcow2-layout.js";
import { assertStorageBackTo, storageAfterCollect } from "./helpers/storage.js";
import { run, scratch } from "./helpers/tools.js";

let kiln: TestKiln;
let ec2: EC2Client;
let dir: string;
let raw: string;
const BUCKET = "vm-images";

before(async () => {
  kiln = await startTestKiln();
  ec2 = kiln.ec2();
  dir = scratch();
  raw = await makeLinuxDisk(dir, { extraMiB: 3 });
  await kiln.s3().send(new CreateBucketCommand({ Bucket: BUCKET }));
});
after(() => kiln.close());

async function upload(path: string, key: string): Promise<void> {
  await kiln.s3().send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: readFileSync(path) }));
}

async function waitForImage(taskId: string): Promise<ImportImageTask> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const { ImportImageTasks } = await ec2.send(new DescribeImportImageTasksCommand({ ImportTaskIds: [taskId] }));
    const task = ImportImageTasks![0]!;
    if (task.Status === "completed" || task.Status === "deleted") return task;
    if (Date.now() > deadline) assert.fail(`import ${taskId} still ${task.Status} (${task.StatusMessage})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function waitForSnapshot(taskId: string): Promise<ImportSnapshotTask> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const { ImportSnapshotTasks } = await ec2.send(new DescribeImportSnapshotTasksCommand({ ImportTaskIds: [taskId] }));
    const task = ImportSnapshotTasks![0]!;
    const status = task.SnapshotTaskDetail!.Status;
    if (status === "completed" || status === "deleted") return task;
    if (Date.now() > deadline) assert.fail(`import ${taskId} still ${status}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function importImage(
  containers: ImageDiskContainer[],
  extra: Partial<ConstructorParameters<typeof ImportImageCommand>[0]> = {},
): Promise<ImportImageTask> {
  const started = await ec2.send(new ImportImageCommand({ DiskContainers: containers, ...extra }));
  assert.match(started.ImportTaskId!, /^import-ami-[0-9a-f]{17}$/);
  assert.equal(started.Status, "active");
  return waitForImage(started.ImportTaskId!);
}

/** The snapshot must read back as the raw file, block for block (zeros where it holds none). */
async function assertSnapshotHolds(snapshotId: string, rawPath: string): Promise<void> {
  assertBlocksHold(await readSnapshot(kiln, snapshotId), readFileSync(rawPath), snapshotId);
}

async function imageOf(imageId: string) {
  const { Images } = await ec2.send(new DescribeImagesCommand({ ImageIds: [imageId] }));
  return Images![0]!;
}

describe("ImportImage of every format", () => {
  const formats: [Conversion, string][] = [
    ["raw", "RAW"],
    ["vhd-dynamic", "VHD"],
    ["vhd-fixed", "VHD"],
    ["vhdx", "VHDX"],
    ["vmdk-stream", "VMDK"],
    ["vmdk-sparse", "VMDK"],
    ["qcow2", "QCOW2"],
  ];
  for (const [conversion, format] of formats) {
    it(`imports a ${conversion} disk byte for byte and finds Linux, x86_64 and UEFI`, async () => {
      const file = await convertDisk(raw, conversion);
      await upload(file, `disks/${conversion}`);
      const task = await importImage([{ Format: format, UserBucket: { S3Bucket: BUCKET, S3Key: `disks/${conversion}` }, Description: "the boot disk" }]);
      assert.equal(task.Status, "completed", task.StatusMessage);
      assert.equal(task.Platform, "Linux");
      assert.equal(task.Architecture, "x86_64");
      assert.equal(task.BootMode, "uefi");
      assert.equal(task.LicenseType, "BYOL");
      assert.equal(task.Progress, undefined);
      const [detail] = task.SnapshotDetails!;
      assert.equal(detail!.Status, "completed");
      assert.equal(detail!.Format, format === "RAW" ? "RAW" : format);
      assert.equal(detail!.DeviceName, "/dev/sda1");
      assert.equal(detail!.DiskImageSize, readFileSync(file).length);
      assert.deepEqual(detail!.UserBucket, { S3Bucket: BUCKET, S3Key: `disks/${conversion}` });
      await assertSnapshotHolds(detail!.SnapshotId!, raw);
      const image = await imageOf(task.ImageId!);
      assert.equal(image.State, "available");
      assert.equal(image.Name, task.ImportTaskId);
      assert.equal(image.Architecture, "x86_64");
      assert.equal(image.BootMode, "uefi");
      assert.equal(image.RootDeviceName, "/dev/sda1");
      assert.match(image.Description!, /Kilnix GNU\/Linux 12 \(test\)/);
      assert.equal(image.BlockDeviceMappings![0]!.Ebs!.SnapshotId, detail!.SnapshotId);
      assert.equal(image.BlockDeviceMappings![0]!.Ebs!.VolumeSize, 1);
    });
  }

  for (const [rootFs, conversion, format] of [
    ["xfs", "qcow2", "QCOW2"],
    ["btrfs", "vhd-dynamic", "VHD"],
  ] as const) {
    it(`finds Linux when the root file system is ${rootFs}`, async () => {
      const disk = await makeLinuxDisk(scratch(), { rootFs });
      await upload(await convertDisk(disk, conversion), `roots/${rootFs}`);
      const task = await importImage([{ Format: format, UserBucket: { S3Bucket: BUCKET, S3Key: `roots/${rootFs}` } }]);
      assert.equal(task.Status, "completed", task.StatusMessage);
      assert.equal(task.Platform, "Linux");
      assert.equal(task.Architecture, "x86_64");
      assert.equal(task.BootMode, "uefi");
      await assertSnapshotHolds(task.SnapshotDetails![0]!.SnapshotId!, disk);
      assert.equal((await imageOf(task.ImageId!)).Description, "Linux - Kilnix GNU/Linux 12 (test)");
    });
  }

  it("finds Windows on an NTFS disk with an MBR, and licenses it from AWS", async () => {
    const disk = await makeWindowsDisk(scratch());
    await upload(await convertDisk(disk, "vhdx"), "roots/windows");
    const task = await importImage([{ Format: "VHDX", UserBucket: { S3Bucket: BUCKET, S3Key: "roots/windows" } }]);
    assert.equal(task.Status, "completed", task.StatusMessage);
    assert.equal(task.Platform, "Windows");
    assert.equal(task.Architecture, "x86_64");
    assert.equal(task.BootMode, "legacy-bios");
    assert.equal(task.LicenseType, "AWS");
    await assertSnapshotHolds(task.SnapshotDetails![0]!.SnapshotId!, disk);
    const image = await imageOf(task.ImageId!);
    assert.equal(image.Platform, "windows");
    assert.equal(image.PlatformDetails, "Windows");
    assert.equal(image.Description, "Windows");
  });

  it("imports an OVA's disks in the OVF's order as one multi-volume AMI", async () => {
    const data = await makeDataDisk(dir);
    const ova = await makeOva(dir, [raw, data]);
    await upload(ova, "vm.ova");
    const task = await importImage([{ Format: "ova", Url: `s3://${BUCKET}/vm.ova` }]);
    assert.equal(task.Status, "completed", task.StatusMessage);
    assert.equal(task.SnapshotDetails!.length, 2);
    assert.deepEqual(
      task.SnapshotDetails!.map((d) => d.Format),
      ["VMDK", "VMDK"],
    );
    assert.equal(task.SnapshotDetails![0]!.Url, `s3://${BUCKET}/vm.ova`);
    await assertSnapshotHolds(task.SnapshotDetails![0]!.SnapshotId!, raw);
    await assertSnapshotHolds(task.SnapshotDetails![1]!.SnapshotId!, data);
    const image = await imageOf(task.ImageId!);
    assert.deepEqual(
      image.BlockDeviceMappings!.map((m) => m.DeviceName),
      ["/dev/sda1", "/dev/sdb"],
    );
  });

  it("makes one AMI of several DiskContainers, reading a presigned URL to Kiln's own S3", async () => {
    const data = await makeDataDisk(dir);
    await upload(await convertDisk(raw, "vhdx"), "multi/boot.vhdx");
    await upload(data, "multi/data.raw");
    const url = await getSignedUrl(kiln.s3(), new GetObjectCommand({ Bucket: BUCKET, Key: "multi/data.raw" }), { expiresIn: 600 });
    const task = await importImage([
      { Format: "VHDX", UserBucket: { S3Bucket: BUCKET, S3Key: "multi/boot.vhdx" } },
      { Format: "RAW", Url: url, DeviceName: "/dev/sdf" },
    ]);
    assert.equal(task.Status, "completed", task.StatusMessage);
    await assertSnapshotHolds(task.SnapshotDetails![1]!.SnapshotId!, data);
    const image = await imageOf(task.ImageId!);
    assert.deepEqual(
      image.BlockDeviceMappings!.map((m) => m.DeviceName),
      ["/dev/sda1", "/dev/sdf"],
    );
  });
});

describe("ImportImage requests", () => {
  before(async () => upload(await convertDisk(raw, "vmdk-stream"), "req/disk.vmdk"));

  it("records what the request says, tags the task and answers a repeated ClientToken with the same task", async () => {
    const request = {
      DiskContainers: [{ Format: "VMDK", UserBucket: { S3Bucket: BUCKET, S3Key: "req/disk.vmdk" } }],
      Description: "golden image",
      ClientToken: "token-1",
      Encrypted: true,
      KmsKeyId: "alias/custom",
      Hypervisor: "xen",
      LicenseType: "BYOL",
      UsageOperation: "RunInstances",
      RoleName: "vmimport",
      ClientData: { Comment: "from the build pipeline" },
      LicenseSpecifications: [{ LicenseConfigurationArn: "arn:aws:license-manager:us-east-1:000000000000:license-configuration:lic-1" }],
      TagSpecifications: [{ ResourceType: "import-image-task" as const, Tags: [{ Key: "team", Value: "infra" }] }],
    };
    const first = await ec2.send(new ImportImageCommand(request));
    const again = await ec2.send(new ImportImageCommand(request));
    assert.equal(again.ImportTaskId, first.ImportTaskId);
    assert.deepEqual(first.Tags, [{ Key: "team", Value: "infra" }]);
    const task = await waitForImage(first.ImportTaskId!);
    assert.equal(task.Status, "completed", task.StatusMessage);
    assert.equal(task.Description, "golden image");
    assert.equal(task.Encrypted, true);
    assert.equal(task.KmsKeyId, "alias/custom");
    assert.equal(task.Hypervisor, "xen");
    assert.equal(task.UsageOperation, "RunInstances");
    assert.deepEqual(task.LicenseSpecifications, request.LicenseSpecifications);
    const image = await imageOf(task.ImageId!);
    assert.equal(image.Description, "golden image");
    const { Snapshots } = await ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [task.SnapshotDetails![0]!.SnapshotId!] }));
    assert.equal(Snapshots![0]!.Encrypted, true);
    const tagged = await ec2.send(new DescribeImportImageTasksCommand({ Filters: [{ Name: "tag:team", Values: ["infra"] }] }));
    assert.deepEqual(
      tagged.ImportImageTasks!.map((t) => t.ImportTaskId),
      [first.ImportTaskId],
    );
    const completed = await ec2.send(new DescribeImportImageTasksCommand({ Filters: [{ Name: "task-state", Values: ["completed"] }] }));
    assert.ok(completed.ImportImageTasks!.some((t) => t.ImportTaskId === first.ImportTaskId));
  });

  it("refuses what it cannot import at request time", async () => {
    const disk = (c: ImageDiskContainer) => ec2.send(new ImportImageCommand({ DiskContainers: [c] }));
    assert.equal(await errorName(disk({ Format: "VMDK", UserBucket: { S3Bucket: BUCKET, S3Key: "absent.vmdk" } })), "InvalidParameterValue");
    assert.equal(await errorName(disk({ Format: "VMDK", UserBucket: { S3Bucket: "no-such-bucket", S3Key: "x" } })), "InvalidParameterValue");
    assert.equal(await errorName(disk({ Format: "ISO", UserBucket: { S3Bucket: BUCKET, S3Key: "req/disk.vmdk" } })), "InvalidParameterValue");
    assert.equal(await errorName(disk({ Format: "VMDK" })), "MissingParameter");
    assert.equal(await errorName(ec2.send(new ImportImageCommand({}))), "MissingParameter");
    assert.equal(
      await errorName(ec2.send(new ImportImageCommand({ DiskContainers: [{ Url: `s3://${BUCKET}/req/disk.vmdk` }], Architecture: "sparc" }))),
      "InvalidParameterValue",
    );
    assert.equal(
      await errorName(ec2.send(new ImportImageCommand({ DiskContainers: [{ Url: `s3://${BUCKET}/req/disk.vmdk` }], KmsKeyId: "alias/k" }))),
      "InvalidParameterCombination",
    );
    assert.equal(
      await errorName(ec2.send(new ImportImageCommand({ DiskContainers: [{ Url: `s3://${BUCKET}/req/disk.vmdk` }], DryRun: true }))),
      "DryRunOperation",
    );
    assert.equal(
      await errorName(ec2.send(new DescribeImportImageTasksCommand({ ImportTaskIds: ["import-ami-0123456789abcdef0"] }))),
      "InvalidConversionTaskId",
    );
    assert.equal(await errorName(ec2.send(new DescribeImportImageTasksCommand({ ImportTaskIds: ["ami-12345678"] }))), "InvalidConversionTaskId.Malformed");
  });

  it("keeps one account's tasks from another", async () => {
    const { ImportTaskId } = await ec2.send(new ImportImageCommand({ DiskContainers: [{ Url: `s3://${BUCKET}/req/disk.vmdk` }] }));
    const other = kiln.ec2({ accessKeyId: "111111111111" });
    assert.equal(await errorName(other.send(new DescribeImportImageTasksCommand({ ImportTaskIds: [ImportTaskId!] }))), "InvalidConversionTaskId");
    assert.equal(await errorName(other.send(new CancelImportTaskCommand({ ImportTaskId }))), "InvalidConversionTaskId");
    assert.equal(await errorName(other.send(new ImportImageCommand({ DiskContainers: [{ Url: `s3://${BUCKET}/req/disk.vmdk` }] }))), "InvalidParameterValue");
    await waitForImage(ImportTaskId!);
  });

  it("cancels an active task: it ends deleted and leaves no snapshot or AMI", async () => {
    const big = await makeLinuxDisk(scratch(), { sizeMiB: 256, extraMiB: 160 });
    await upload(big, "req/big.raw");
    const { ImportTaskId } = await ec2.send(
      new ImportImageCommand({ DiskContainers: [{ Format: "RAW", UserBucket: { S3Bucket: BUCKET, S3Key: "req/big.raw" } }] }),
    );
    const cancelled = await ec2.send(new CancelImportTaskCommand({ ImportTaskId, CancelReason: "changed my mind" }));
    assert.deepEqual({ ...cancelled, $metadata: undefined }, { $metadata: undefined, ImportTaskId, PreviousState: "active", State: "deleting" });
    const task = await waitForImage(ImportTaskId!);
    assert.equal(task.Status, "deleted");
    assert.match(task.StatusMessage!, /changed my mind/);
    assert.equal(task.ImageId, undefined);
    assert.equal(await errorName(ec2.send(new CancelImportTaskCommand({ ImportTaskId }))), "IncorrectState");
    const { Images } = await ec2.send(new DescribeImagesCommand({ Owners: ["self"], Filters: [{ Name: "name", Values: [ImportTaskId!] }] }));
    assert.deepEqual(Images, []);
  });

  it("cancels a task while it is converting: no snapshot or AMI, and collection gives back every block it wrote", async () => {
    // Enough data (and a compressed format to inflate) that converting lasts well past the first
    // once-a-second "converting" report.
    const big = await makeLinuxDisk(scratch(), { sizeMiB: 640, extraMiB: 512 });
    await upload(await convertDisk(big, "vmdk-stream"), "req/converting.vmdk");
    const snapshotIds = async () => (await ec2.send(new DescribeSnapshotsCommand({ OwnerIds: ["self"] }))).Snapshots!.map((s) => s.SnapshotId).sort();
    const snapshotsBefore = await snapshotIds();
    const storageBefore = await storageAfterCollect(kiln);
    const bytesBefore = await chunkBytes(kiln);
    const { ImportTaskId } = await ec2.send(
      new ImportImageCommand({ DiskContainers: [{ Format: "VMDK", UserBucket: { S3Bucket: BUCKET, S3Key: "req/converting.vmdk" } }] }),
    );
    const deadline = Date.now() + 60_000;
    let converting: ImportImageTask;
    for (;;) {
      converting = (await ec2.send(new DescribeImportImageTasksCommand({ ImportTaskIds: [ImportTaskId!] }))).ImportImageTasks![0]!;
      if (converting.StatusMessage === "converting" || converting.Status !== "active") break;
      if (Date.now() > deadline) assert.fail(`import ${ImportTaskId} never reached converting (${converting.StatusMessage})`);
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.equal(converting.Status, "active", `the import ended before it was seen converting: ${converting.StatusMessage}`);
    // Its blocks are being stored (read without collecting, which would race the writer).
    while ((await chunkBytes(kiln)) <= bytesBefore) {
      if (Date.now() > deadline) assert.fail(`import ${ImportTaskId} stored no block in 60 s`);
      await new Promise((r) => setTimeout(r, 20));
    }
    converting = (await ec2.send(new DescribeImportImageTasksCommand({ ImportTaskIds: [ImportTaskId!] }))).ImportImageTasks![0]!;
    assert.equal(converting.Status, "active", `the import ended before the cancel: ${converting.StatusMessage}`);
    assert.equal(converting.StatusMessage, "converting");
    assert.ok(Number(converting.Progress) < 56, `converting reports ${converting.Progress}%, past its share`);
    const cancelled = await ec2.send(new CancelImportTaskCommand({ ImportTaskId, CancelReason: "stop converting" }));
    assert.equal(cancelled.PreviousState, "active");
    assert.equal(cancelled.State, "deleting");
    const task = await waitForImage(ImportTaskId!);
    assert.equal(task.Status, "deleted");
    assert.match(task.StatusMessage!, /stop converting/);
    assert.equal(task.ImageId, undefined);
    assert.deepEqual(await snapshotIds(), snapshotsBefore, "the cancelled import left a snapshot");
    const { Images } = await ec2.send(new DescribeImagesCommand({ Owners: ["self"], Filters: [{ Name: "name", Values: [ImportTaskId!] }] }));
    assert.deepEqual(Images, []);
    await assertStorageBackTo(kiln, storageBefore, "storage after collection is what it was before the import");
  });
});

describe("ImportImage of bad disks", () => {
  async function failedImport(key: string, bytes: Buffer, format?: string): Promise<ImportImageTask> {
    writeFileSync(join(dir, "bad"), bytes);
    await upload(join(dir, "bad"), key);
    // A failed import never shows a snapshot (they appear only when an import completes), so
    // what it may leave behind is blocks: after collection, storage must be as it was.
    const storageBefore = await storageAfterCollect(kiln);
    const task = await importImage([{ Format: format, UserBucket: { S3Bucket: BUCKET, S3Key: key } }]);
    assert.equal(task.Status, "deleted");
    assert.equal(task.ImageId, undefined);
    await assertStorageBackTo(kiln, storageBefore, "a failed import left blocks behind");
    return task;
  }

  it("ends a disk with no operating system as AWS does, saying what it read and looked for", async () => {
    const task = await failedImport("bad/data.raw", readFileSync(await makeDataDisk(dir)), "RAW");
    assert.equal(
      task.StatusMessage,
      "ClientError: Unknown OS / Missing OS files. Kiln read a disk with no partition table: the whole disk is ext2/3/4 without an os-release. " +
        "For Linux it looks for /etc/os-release or /usr/lib/os-release and an ELF header in one of /bin/sh, /usr/bin/sh, /bin/ls, /usr/bin/ls, " +
        "/sbin/init, /usr/lib/systemd/systemd or /bin/busybox (on ext2/3/4, XFS, btrfs or FAT; in btrfs also under /root and /@); " +
        "for Windows, the PE header of /Windows/System32/ntoskrnl.exe (on NTFS).",
    );
  });

  it("says which partition held what when no operating system is found", async () => {
    // The Linux disk with its only system binary's ELF magic overwritten: an os-release, but nothing that runs.
    const linux = readFileSync(raw);
    const shell = linux.indexOf(readFileSync("/bin/sh").subarray(0, 4096));
    assert.ok(shell > 0 && shell % 512 === 0, "the disk holds /bin/sh's first block");
    linux.fill(0, shell, shell + 4);
    const noBinary = await failedImport("bad/no-binary.raw", linux, "RAW");
    assert.ok(
      noBinary.StatusMessage!.startsWith(
        "ClientError: Unknown OS / Missing OS files. Kiln read a GPT disk: partition 1 is the EFI system partition (FAT); " +
          "partition 2 is ext2/3/4 with an os-release but no system binary for i386, x86_64 or arm64. For Linux ",
      ),
      noBinary.StatusMessage,
    );
    // An MBR whose one partition holds zeros.
    const mbr = Buffer.alloc(4 * 1024 * 1024);
    mbr.writeUInt8(0x83, 446 + 4);
    mbr.writeUInt32LE(2048, 446 + 8);
    mbr.writeUInt32LE(4096, 446 + 12);
    mbr.writeUInt16LE(0xaa55, 510);
    const empty = await failedImport("bad/empty-partition.raw", mbr, "RAW");
    assert.match(
      empty.StatusMessage!,
      /^ClientError: Unknown OS \/ Missing OS files\. Kiln read an MBR disk: partition 1 holds no file system Kiln can read\. For Linux /,
    );
  });

  it("refuses a file whose format is not the declared one", async () => {
    const task = await failedImport("bad/qcow-as-vmdk", readFileSync(await convertDisk(raw, "qcow2")), "VMDK");
    assert.match(task.StatusMessage!, /^ClientError: Disk validation failed \[the file is a QCOW2 image, not VMDK\]$/);
  });

  it("refuses a truncated stream-optimized VMDK", async () => {
    const whole = readFileSync(await convertDisk(raw, "vmdk-stream"));
    const task = await failedImport("bad/cut.vmdk", whole.subarray(0, Math.floor(whole.length / 2)), "VMDK");
    assert.match(task.StatusMessage!, /^ClientError: Disk validation failed \[/);
  });

  it("refuses a header that lies about the disk's size", async () => {
    const bytes = readFileSync(await convertDisk(raw, "qcow2"));
    bytes.writeBigUInt64BE(1n << 60n, 24); // a 1 EiB virtual size
    const task = await failedImport("bad/huge.qcow2", bytes, "QCOW2");
    assert.match(task.StatusMessage!, /^ClientError: Disk validation failed \[QCOW2 virtual size 1152921504606846976 exceeds Kiln's limit/);
  });

  it("refuses block tables pointing outside the file or over the table itself", async () => {
    const dynamic = readFileSync(await convertDisk(raw, "vhd-dynamic"));
    const header = Number(dynamic.readBigUInt64BE(16));
    const table = Number(dynamic.readBigUInt64BE(header + 16));
    const outside = Buffer.from(dynamic);
    outside.writeUInt32BE(0x7fffff00, table);
    assert.match(
      (await failedImport("bad/outside.vhd", outside, "VHD")).StatusMessage!,
      /^ClientError: Disk validation failed \[VHD block 0 lies outside the file\]$/,
    );
    const overlapping = Buffer.from(dynamic);
    overlapping.writeUInt32BE(table / 512, table);
    assert.match(
      (await failedImport("bad/overlap.vhd", overlapping, "VHD")).StatusMessage!,
      /^ClientError: Disk validation failed \[VHD block 0 overlaps the file's header or block table\]$/,
    );
  });

  it("stops a decompression bomb at one cluster, and keeps serving", async () => {
    const path = join(dir, "compressed.qcow2");
    await run("qemu-img", ["convert", "-f", "raw", "-O", "qcow2", "-c", raw, path]);
    const bytes = readFileSync(path);
    const entry = qcowEntries(bytes).entries.find((candidate) => candidate.compressed && candidate.stored >= 600);
    assert.ok(entry, "no compressed cluster with room for the bomb");
    // 128 KiB of one byte deflates to a few hundred bytes, and would inflate past the 64 KiB cluster.
    deflateRawSync(Buffer.alloc(128 * 1024, 0x41), { level: 9 }).copy(bytes, entry.host);
    const task = await failedImport("bad/bomb.qcow2", bytes, "QCOW2");
    assert.equal(task.StatusMessage, `ClientError: Disk validation failed [compressed cluster ${entry.cluster} inflates past its 65536 bytes]`);
    const { Regions } = await ec2.send(new DescribeRegionsCommand({}));
    assert.ok(Regions!.length > 0);
  });

  it("refuses an OVA whose descriptor points outside the package", async () => {
    const sub = scratch();
    const ova = await makeOva(sub, [raw], "escape");
    const bytes = readFileSync(ova);
    // Rewrite the href in place (same length, so the tar stays whole): escape-disk1.vmdk → ../ape-disk1.vmdk
    const text = bytes.toString("latin1").replace('ovf:href="escape-disk1.vmdk"', 'ovf:href="../ape-disk1.vmdk"');
    const task = await failedImport("bad/escape.ova", Buffer.from(text, "latin1"), "OVA");
    assert.match(task.StatusMessage!, /outside the package/);
  });
});

describe("ImportSnapshot", () => {
  it("imports a data disk (no operating system needed) into one snapshot", async () => {
    const data = await makeDataDisk(dir);
    await upload(await convertDisk(data, "vhd-dynamic"), "snap/data.vhd");
    const started = await ec2.send(
      new ImportSnapshotCommand({
        Description: "data",
        DiskContainer: { Format: "VHD", UserBucket: { S3Bucket: BUCKET, S3Key: "snap/data.vhd" } },
        TagSpecifications: [{ ResourceType: "import-snapshot-task", Tags: [{ Key: "k", Value: "v" }] }],
      }),
    );
    assert.match(started.ImportTaskId!, /^import-snap-[0-9a-f]{17}$/);
    assert.equal(started.SnapshotTaskDetail!.Status, "active");
    const task = await waitForSnapshot(started.ImportTaskId!);
    assert.equal(task.SnapshotTaskDetail!.Status, "completed", task.SnapshotTaskDetail!.StatusMessage);
    assert.equal(task.SnapshotTaskDetail!.Format, "VHD");
    assert.deepEqual(task.Tags, [{ Key: "k", Value: "v" }]);
    await assertSnapshotHolds(task.SnapshotTaskDetail!.SnapshotId!, data);
    const { Snapshots } = await ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [task.SnapshotTaskDetail!.SnapshotId!] }));
    assert.equal(Snapshots![0]!.State, "completed");
    assert.equal(Snapshots![0]!.VolumeSize, 1);
  });

  it("ends a corrupt disk deleted with the reason", async () => {
    const bytes = readFileSync(await convertDisk(raw, "qcow2"));
    bytes.writeUInt32BE(0xdead, 4); // the version field
    writeFileSync(join(dir, "bad.qcow2"), bytes);
    await upload(join(dir, "bad.qcow2"), "snap/bad.qcow2");
    const started = await ec2.send(new ImportSnapshotCommand({ DiskContainer: { Format: "QCOW2", Url: `s3://${BUCKET}/snap/bad.qcow2` } }));
    const task = await waitForSnapshot(started.ImportTaskId!);
    assert.equal(task.SnapshotTaskDetail!.Status, "deleted");
    assert.match(task.SnapshotTaskDetail!.StatusMessage!, /^ClientError: Disk validation failed \[/);
  });
});
