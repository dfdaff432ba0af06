// An import survives its server: `kiln serve` is killed with SIGKILL part-way through converting
// a disk, started again on the same data folder, and the same task finishes with a snapshot
// holding exactly the disk's bytes.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { DescribeImportImageTasksCommand, EC2Client, ImportImageCommand, type ImportImageTask } from "@aws-sdk/client-ec2";
import { EBSClient } from "@aws-sdk/client-ebs";
import { CreateBucketCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { assertBlocksHold, readSnapshotBlocks } from "./helpers/data.js";
import { convertDisk, KILLABLE_IMPORT, makeLinuxDisk } from "./helpers/disks.js";
import { sharedStores } from "./helpers/kiln.js";
import { spawnKiln } from "./helpers/process.js";
import { stoppedStoreRows, type StoppedStore } from "./helpers/stopped-store.js";
import { scratch } from "./helpers/tools.js";

const credentials = { accessKeyId: "test", secretAccessKey: "test" };
const clients = (url: string) => ({
  ec2: new EC2Client({ endpoint: url, region: "us-east-1", credentials, maxAttempts: 1 }),
  s3: new S3Client({ endpoint: url, region: "us-east-1", credentials, forcePathStyle: true, maxAttempts: 1 }),
  ebs: new EBSClient({ endpoint: url, region: "us-east-1", credentials, maxAttempts: 1 }),
});

async function describeTask(ec2: EC2Client, taskId: string): Promise<ImportImageTask> {
  const { ImportImageTasks } = await ec2.send(new DescribeImportImageTasksCommand({ ImportTaskIds: [taskId] }));
  return ImportImageTasks![0]!;
}

async function until(ec2: EC2Client, taskId: string, done: (task: ImportImageTask) => boolean, pollMs: number): Promise<ImportImageTask> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const task = await describeTask(ec2, taskId);
    if (done(task)) return task;
    if (Date.now() > deadline) assert.fail(`import ${taskId} still ${task.Status} (${task.StatusMessage}, ${task.Progress}%)`);
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}

describe("an import and a killed server", () => {
  it("finishes after kill -9 part-way through converting, with every byte of the disk", async () => {
    const dir = scratch();
    // Enough data that converting takes a while: the kill lands among the blocks.
    const raw = await makeLinuxDisk(dir, KILLABLE_IMPORT);
    const vmdk = await convertDisk(raw, "vmdk-stream");
    // One data folder, restarted on; with a test PostgreSQL and object store, both servers keep
    // their metadata and data there.
    const shared = await sharedStores();
    const dataDir = shared.folder();
    const env = shared.env;

    const first = await spawnKiln(["serve", "--port", "0", "--data-dir", dataDir], env);
    let taskId: string;
    try {
      const { ec2, s3 } = clients(first.url);
      await s3.send(new CreateBucketCommand({ Bucket: "disks" }));
      await s3.send(new PutObjectCommand({ Bucket: "disks", Key: "big.vmdk", Body: readFileSync(vmdk) }));
      taskId = (await ec2.send(new ImportImageCommand({ DiskContainers: [{ Format: "VMDK", UserBucket: { S3Bucket: "disks", S3Key: "big.vmdk" } }] })))
        .ImportTaskId!;
      // The task says "validated" just before its first block is written, and reports converting
      // progress only once a second: kill shortly after the first, among the blocks of a disk
      // that takes far longer than that to store.
      const started = await until(ec2, taskId, (task) => ["validated", "converting"].includes(task.StatusMessage!) || task.Status !== "active", 5);
      assert.equal(started.Status, "active", "the import ended before the kill");
      await new Promise((resolve) => setTimeout(resolve, 100));
    } finally {
      assert.equal(await first.stop("SIGKILL"), null);
    }

    // The kill interrupted the import: in the killed server's metadata the task is still active
    // past validation (its snapshot ids recorded), and neither its AMI nor its snapshot exists.
    const stopped: StoppedStore = { dataDir, databaseUrl: env.KILN_DATABASE_URL };
    assert.deepEqual(
      await stoppedStoreRows(stopped, "select state from tasks where task_id = ?", [taskId]),
      [{ state: "running" }],
      "the import's task ended before the kill",
    );
    const [conversion] = (await stoppedStoreRows(stopped, "select status, status_message, details from conversion_tasks where task_id = ?", [taskId])) as {
      status: string;
      status_message: string;
      details: string;
    }[];
    assert.equal(conversion?.status, "active", "the import ended before the kill");
    assert.ok(["validated", "converting"].includes(conversion.status_message), `the kill landed at ${conversion.status_message}, not among the blocks`);
    const snapshotIds = (JSON.parse(conversion.details) as { disks: { snapshotId: string }[] }).disks.map((d) => d.snapshotId);
    assert.equal(snapshotIds.length, 1, "the import had not recorded its snapshot before the kill");
    assert.deepEqual(
      await stoppedStoreRows(stopped, "select snapshot_id from snapshots where snapshot_id = ?", [snapshotIds[0]]),
      [],
      "the import's snapshot existed before the kill",
    );
    assert.deepEqual(await stoppedStoreRows(stopped, "select image_id from images where name = ?", [taskId]), [], "the import's AMI existed before the kill");

    const second = await spawnKiln(["serve", "--port", "0", "--data-dir", dataDir], env);
    try {
      const { ec2, ebs } = clients(second.url);
      const task = await until(ec2, taskId, (task) => task.Status !== "active", 100);
      assert.equal(task.Status, "completed", task.StatusMessage);
      assert.equal(task.Platform, "Linux");
      const snapshotId = task.SnapshotDetails![0]!.SnapshotId!;

      assertBlocksHold(await readSnapshotBlocks(ebs, snapshotId), readFileSync(raw), snapshotId);
    } finally {
      await second.stop();
      await shared.drop();
    }
  });
});
