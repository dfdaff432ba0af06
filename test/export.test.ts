// ExportImage and DescribeExportImageTasks through the SDK: a disk imported from a file comes
// back out as VMDK, VHD or RAW, and qemu-img turns the export into exactly the disk it was (the
// imported disk's bytes, then zeros to the volume's whole size).
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { createReadStream, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  CancelExportTaskCommand,
  DescribeExportImageTasksCommand,
  DescribeImportImageTasksCommand,
  ExportImageCommand,
  ImportImageCommand,
  type EC2Client,
  type ExportImageTask,
} from "@aws-sdk/client-ec2";
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { errorName } from "./helpers/data.js";
import { convertDisk, makeLinuxDisk } from "./helpers/disks.js";
import { startTestKiln, type TestKiln } from "./helpers/kiln.js";
import { run, scratch } from "./helpers/tools.js";

const GIB = 1024 ** 3;
let kiln: TestKiln;
let ec2: EC2Client;
let dir: string;
let raw: string;
let imageId: string;

async function fileSha(path: string, padTo?: number): Promise<string> {
  const hash = createHash("sha256");
  let length = 0;
  for await (const chunk of createReadStream(path)) {
    hash.update(chunk as Buffer);
    length += (chunk as Buffer).length;
  }
  if (padTo !== undefined) {
    const zeros = Buffer.alloc(1 << 20);
    for (; length < padTo; length += Math.min(zeros.length, padTo - length)) hash.update(zeros.subarray(0, Math.min(zeros.length, padTo - length)));
  }
  return hash.digest("hex");
}

before(async () => {
  kiln = await startTestKiln();
  ec2 = kiln.ec2();
  dir = scratch();
  raw = await makeLinuxDisk(dir, { extraMiB: 2 });
  await kiln.s3().send(new CreateBucketCommand({ Bucket: "images" }));
  await kiln.s3().send(new CreateBucketCommand({ Bucket: "exports" }));
  await kiln.s3().send(new PutObjectCommand({ Bucket: "images", Key: "disk.vmdk", Body: readFileSync(await convertDisk(raw, "vmdk-stream")) }));
  const { ImportTaskId } = await ec2.send(
    new ImportImageCommand({ DiskContainers: [{ Format: "VMDK", UserBucket: { S3Bucket: "images", S3Key: "disk.vmdk" } }] }),
  );
  const deadline = Date.now() + 120_000;
  for (;;) {
    const task = (await ec2.send(new DescribeImportImageTasksCommand({ ImportTaskIds: [ImportTaskId!] }))).ImportImageTasks![0]!;
    if (task.Status === "completed") {
      imageId = task.ImageId!;
      break;
    }
    assert.notEqual(task.Status, "deleted", task.StatusMessage);
    if (Date.now() > deadline) assert.fail(`the image to export was not imported in 120 s: ${task.Status} (${task.StatusMessage}, ${task.Progress}%)`);
    await new Promise((r) => setTimeout(r, 50));
  }
});
after(() => kiln.close());

async function waitForExport(id: string): Promise<ExportImageTask> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const task = (await ec2.send(new DescribeExportImageTasksCommand({ ExportImageTaskIds: [id] }))).ExportImageTasks![0]!;
    if (task.Status === "completed" || task.Status === "deleted") return task;
    if (Date.now() > deadline) assert.fail(`export ${id} still ${task.Status}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("ExportImage", () => {
  const formats: [string, string, string][] = [
    ["VMDK", "vmdk", "vmdk"],
    ["VHD", "vhd", "vpc"],
    ["RAW", "raw", "raw"],
  ];
  for (const [format, extension, qemuFormat] of formats) {
    it(`exports the root volume as ${format}, which qemu-img converts back to the same disk`, async () => {
      const started = await ec2.send(
        new ExportImageCommand({
          ImageId: imageId,
          DiskImageFormat: format as "VMDK",
          S3ExportLocation: { S3Bucket: "exports", S3Prefix: "out/" },
          Description: "round trip",
        }),
      );
      assert.match(started.ExportImageTaskId!, /^export-ami-[0-9a-f]{17}$/);
      assert.equal(started.Status, "active");
      assert.equal(started.DiskImageFormat, format);
      const task = await waitForExport(started.ExportImageTaskId!);
      assert.equal(task.Status, "completed", task.StatusMessage);
      assert.equal(task.ImageId, imageId);
      assert.deepEqual(task.S3ExportLocation, { S3Bucket: "exports", S3Prefix: "out/" });
      const key = `out/${started.ExportImageTaskId}.${extension}`;
      const object = await kiln.s3().send(new GetObjectCommand({ Bucket: "exports", Key: key }));
      const file = join(dir, `export.${extension}`);
      writeFileSync(file, Buffer.from(await object.Body!.transformToByteArray()));
      // qemu-img checks VMDK structure; it has no check for VHD (its conversion below is the test).
      if (qemuFormat === "vmdk") await run("qemu-img", ["check", "-f", qemuFormat, file]);
      const back = join(dir, `back-${extension}.raw`);
      await run("qemu-img", ["convert", "-f", qemuFormat, "-O", "raw", file, back]);
      assert.equal(await fileSha(back), await fileSha(raw, GIB));
    });
  }

  it("refuses an image the caller does not own, a missing bucket, and unknown task ids", async () => {
    const other = kiln.ec2({ accessKeyId: "111111111111" });
    assert.equal(
      await errorName(other.send(new ExportImageCommand({ ImageId: imageId, DiskImageFormat: "RAW", S3ExportLocation: { S3Bucket: "exports" } }))),
      "InvalidAMIID.NotFound",
    );
    assert.equal(
      await errorName(ec2.send(new ExportImageCommand({ ImageId: imageId, DiskImageFormat: "RAW", S3ExportLocation: { S3Bucket: "nowhere" } }))),
      "InvalidParameterValue",
    );
    assert.equal(
      await errorName(ec2.send(new DescribeExportImageTasksCommand({ ExportImageTaskIds: ["export-ami-0123456789abcdef0"] }))),
      "InvalidConversionTaskId",
    );
    assert.equal(await errorName(ec2.send(new CancelExportTaskCommand({ ExportTaskId: "export-ami-0123456789abcdef0" }))), "InvalidConversionTaskId");
  });
});
