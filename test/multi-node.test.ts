// Two nodes, one metadata store, one data store: what one starts the other sees, and when one
// is killed with SIGKILL part-way through an import, the other takes the task over once its lease
// runs out and finishes it, with every byte of the disk. The nodes share PostgreSQL when
// KILN_TEST_DATABASE_URL names a server, and otherwise one SQLite file (WAL lets two processes
// share it on one machine). With KILN_TEST_OBJECT_STORE_ENDPOINT too, they keep their data in one
// bucket there and share no folder at all, as nodes on separate machines.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { after, describe, it } from "node:test";
import {
  CreateSnapshotCommand,
  CreateStoreImageTaskCommand,
  CreateVolumeCommand,
  DescribeImagesCommand,
  DescribeImportImageTasksCommand,
  DescribeStoreImageTasksCommand,
  DescribeInstancesCommand,
  DescribeVolumesCommand,
  EC2Client,
  ImportImageCommand,
  RegisterImageCommand,
  RunInstancesCommand,
  type ImportImageTask,
} from "@aws-sdk/client-ec2";
import { EBSClient } from "@aws-sdk/client-ebs";
import { CreateBucketCommand, HeadObjectCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { assertBlocksHold, readSnapshotBlocks } from "./helpers/data.js";
import { convertDisk, KILLABLE_IMPORT, makeLinuxDisk } from "./helpers/disks.js";
import { sharedStores, type SharedStores } from "./helpers/kiln.js";
import { spawnKiln, type KilnProcess } from "./helpers/process.js";
import { scratch } from "./helpers/tools.js";

const credentials = { accessKeyId: "test", secretAccessKey: "test" };
const clients = (node: KilnProcess) => ({
  ec2: new EC2Client({ endpoint: node.url, region: "us-east-1", credentials, maxAttempts: 1 }),
  s3: new S3Client({ endpoint: node.url, region: "us-east-1", credentials, forcePathStyle: true, maxAttempts: 1 }),
  ebs: new EBSClient({ endpoint: node.url, region: "us-east-1", credentials, maxAttempts: 1 }),
});

const LEASE_MS = 2000;

async function importTask(ec2: EC2Client, taskId: string): Promise<ImportImageTask> {
  return (await ec2.send(new DescribeImportImageTasksCommand({ ImportTaskIds: [taskId] }))).ImportImageTasks![0]!;
}

async function until<T>(read: () => Promise<T>, done: (value: T) => boolean, what: string, pollMs = 50): Promise<T> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (Date.now() > deadline) assert.fail(`${what}: still ${JSON.stringify(value)}`);
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}

describe("two nodes sharing one store", () => {
  const nodes: KilnProcess[] = [];
  const made: SharedStores[] = [];
  const stores = async () => {
    const shared = await sharedStores();
    made.push(shared);
    return shared;
  };
  after(async () => {
    for (const node of nodes) await node.stop("SIGKILL");
    for (const shared of made) await shared.drop();
  });

  it("see each other's tasks, and one finishes the import the other was killed in", async () => {
    const dir = scratch();
    const raw = await makeLinuxDisk(dir, KILLABLE_IMPORT);
    const vmdk = await convertDisk(raw, "vmdk-stream");
    const shared = await stores();
    const folders: string[] = [];
    const start = async (nodeId: string) => {
      const env = { ...shared.env, KILN_NODE_ID: nodeId, KILN_TASK_LEASE_MS: String(LEASE_MS) };
      folders.push(shared.folder());
      const node = await spawnKiln(["serve", "--port", "0", "--data-dir", folders.at(-1)!], env);
      nodes.push(node);
      return node;
    };
    const a = await start("node-a");
    const b = await start("node-b");
    const onA = clients(a);
    const onB = clients(b);

    // The object uploaded through A is B's to read as well.
    await onA.s3.send(new CreateBucketCommand({ Bucket: "disks" }));
    await onA.s3.send(new PutObjectCommand({ Bucket: "disks", Key: "big.vmdk", Body: readFileSync(vmdk) }));
    assert.equal((await onB.s3.send(new HeadObjectCommand({ Bucket: "disks", Key: "big.vmdk" }))).ContentLength, readFileSync(vmdk).length);

    const taskId = (await onA.ec2.send(new ImportImageCommand({ DiskContainers: [{ Format: "VMDK", UserBucket: { S3Bucket: "disks", S3Key: "big.vmdk" } }] })))
      .ImportTaskId!;
    // B sees the task A started, as it goes.
    await until(
      () => importTask(onB.ec2, taskId),
      (task) => ["validated", "converting"].includes(task.StatusMessage!) || task.Status !== "active",
      "the import on B",
      5,
    );
    const seen = await importTask(onB.ec2, taskId);
    assert.equal(seen.Status, "active", "the import ended before the kill");

    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(await a.stop("SIGKILL"), null);
    const killedAt = Date.now();

    // B takes the task over once A's lease has run out, and finishes it.
    const done = await until(
      () => importTask(onB.ec2, taskId),
      (task) => task.Status !== "active",
      "the import after A was killed",
      100,
    );
    assert.equal(done.Status, "completed", done.StatusMessage);
    assert.ok(Date.now() - killedAt >= LEASE_MS / 2, "B waited for the lease");
    assert.ok(
      b.logs.some((line) => line.msg === "resuming task" && line.task === taskId && line.from === "node-a"),
      "B took the task over from A",
    );
    assert.equal(done.Platform, "Linux");
    const snapshotId = done.SnapshotDetails![0]!.SnapshotId!;
    assertBlocksHold(await readSnapshotBlocks(onB.ebs, snapshotId), readFileSync(raw), snapshotId);

    // A comes back and stores the image; B follows the store task to its end.
    const again = await start("node-a");
    const onAgain = clients(again);
    await onAgain.s3.send(new CreateBucketCommand({ Bucket: "stored" }));
    await onAgain.ec2.send(new CreateStoreImageTaskCommand({ ImageId: done.ImageId!, Bucket: "stored" }));
    const stored = await until(
      async () => (await onB.ec2.send(new DescribeStoreImageTasksCommand({ ImageIds: [done.ImageId!] }))).StoreImageTaskResults![0]!,
      (task) => task.StoreTaskState !== "InProgress",
      "the store on B",
    );
    assert.equal(stored.StoreTaskState, "Completed", stored.StoreTaskFailureReason);
    assert.ok((await onB.s3.send(new HeadObjectCommand({ Bucket: "stored", Key: stored.S3objectKey! }))).ContentLength! > 0);
    if (shared.separate) {
      // Every byte went through the object store: no node kept snapshot data or objects of its own.
      for (const folder of new Set(folders))
        assert.deepEqual(
          readdirSync(folder).filter((name) => name === "packs" || name === "objects"),
          [],
          folder,
        );
    }
  });

  it("start together on one store, and seed the public catalogue once between them", async () => {
    const shared = await stores();
    const start = (nodeId: string) => spawnKiln(["serve", "--port", "0", "--data-dir", shared.folder()], { ...shared.env, KILN_NODE_ID: nodeId });
    const [x, y] = await Promise.all([start("node-x"), start("node-y")]);
    nodes.push(x, y);
    const catalogueOf = async (node: KilnProcess) =>
      (await clients(node).ec2.send(new DescribeImagesCommand({ Owners: ["amazon"] }))).Images!.map((i) => i.ImageId!).sort();
    const seen = [await catalogueOf(x), await catalogueOf(y)];
    assert.ok(seen[0]!.length > 0);
    assert.deepEqual(seen[0], seen[1]);
    assert.equal(new Set(seen[0]).size, seen[0]!.length, "no image twice");
  });

  it("agree on one answer when they race: one volume and one launch for one ClientToken, one image for one name", async () => {
    const shared = await stores();
    const start = (nodeId: string) => spawnKiln(["serve", "--port", "0", "--data-dir", shared.folder()], { ...shared.env, KILN_NODE_ID: nodeId });
    const pair = [await start("node-p"), await start("node-q")];
    nodes.push(...pair);
    const ec2s = pair.map((node) => clients(node).ec2);
    const racers = Array.from({ length: 16 }, (_, i) => ec2s[i % 2]!);

    const volumes = await Promise.all(
      racers.map((ec2) => ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 1, ClientToken: "raced-token" }))),
    );
    assert.equal(new Set(volumes.map((v) => v.VolumeId)).size, 1, "every racer got the same volume");
    assert.equal((await ec2s[1]!.send(new DescribeVolumesCommand({}))).Volumes!.length, 1);

    const { SnapshotId } = await ec2s[0]!.send(new CreateSnapshotCommand({ VolumeId: volumes[0]!.VolumeId }));
    const outcomes = await Promise.all(
      racers.map((ec2) =>
        ec2
          .send(
            new RegisterImageCommand({
              Name: "raced-name",
              RootDeviceName: "/dev/xvda",
              VirtualizationType: "hvm",
              Architecture: "x86_64",
              BlockDeviceMappings: [{ DeviceName: "/dev/xvda", Ebs: { SnapshotId } }],
            }),
          )
          .then(
            () => "registered",
            (error: Error) => error.name,
          ),
      ),
    );
    assert.deepEqual(outcomes.filter((o) => o === "registered").length, 1, outcomes.join(", "));
    assert.deepEqual([...new Set(outcomes.filter((o) => o !== "registered"))], ["InvalidAMIName.Duplicate"]);

    const imageId = (await ec2s[0]!.send(new DescribeImagesCommand({ Filters: [{ Name: "name", Values: ["raced-name"] }] }))).Images![0]!.ImageId!;
    const launches = await Promise.all(
      racers.map((ec2) =>
        ec2.send(new RunInstancesCommand({ ImageId: imageId, InstanceType: "t3.micro", MinCount: 2, MaxCount: 2, ClientToken: "raced-launch" })),
      ),
    );
    assert.equal(new Set(launches.map((r) => r.ReservationId)).size, 1, "every racer got the same reservation");
    assert.deepEqual(new Set(launches.flatMap((r) => r.Instances!.map((i) => i.InstanceId))).size, 2);
    const reservations = (await ec2s[1]!.send(new DescribeInstancesCommand({}))).Reservations!;
    assert.equal(reservations.flatMap((r) => r.Instances!).length, 2, "two instances, not two per racer");
  });
});
