// CreateStoreImageTask / DescribeStoreImageTasks / CreateRestoreImageTask through the SDKs: an
// image with known data leaves one Kiln as an S3 object and comes back on another, byte for byte;
// bad objects fail the restored image with a StateReason and leave no snapshot; a restart during
// a store or a restore finishes it.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, beforeEach, describe, it } from "node:test";
import {
  CreateRestoreImageTaskCommand,
  CreateStoreImageTaskCommand,
  DescribeImagesCommand,
  DescribeSnapshotsCommand,
  DescribeStoreImageTasksCommand,
  RegisterImageCommand,
  type EC2Client,
  type Image,
} from "@aws-sdk/client-ec2";
import { CreateBucketCommand, GetObjectCommand, GetObjectTaggingCommand, HeadObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { BLOCK, errorName, readSnapshot, writeSnapshot } from "./helpers/data.js";
import { startTestKiln, tempDir, type TestKiln } from "./helpers/kiln.js";
import { stoppedStoreRows, stoppedTasks, type StoppedStore } from "./helpers/stopped-store.js";

let kiln: TestKiln;
let ec2: EC2Client;
before(async () => {
  kiln = await startTestKiln();
});
after(() => kiln.close());
beforeEach(async () => {
  await kiln.reset();
  ec2 = kiln.ec2();
  await kiln.s3().send(new CreateBucketCommand({ Bucket: "amis" }));
});

const randomBlocks = (indices: number[]) => new Map(indices.map((i) => [i, randomBytes(BLOCK)]));

/** An image of two snapshots with known data, registered in `on`. */
async function imageWithData(on: TestKiln, name: string, rootBlocks: Map<number, Buffer>, dataBlocks: Map<number, Buffer>) {
  const root = await writeSnapshot(on, rootBlocks, { size: 8 });
  const data = await writeSnapshot(on, dataBlocks, { size: 2 });
  const { ImageId } = await on.ec2().send(
    new RegisterImageCommand({
      Name: name,
      Description: "stored and restored",
      Architecture: "arm64",
      BootMode: "uefi",
      RootDeviceName: "/dev/xvda",
      VirtualizationType: "hvm",
      EnaSupport: true,
      BlockDeviceMappings: [
        { DeviceName: "/dev/xvda", Ebs: { SnapshotId: root, VolumeType: "gp3", DeleteOnTermination: true } },
        { DeviceName: "/dev/sdb", Ebs: { SnapshotId: data, VolumeType: "gp2" } },
        { DeviceName: "/dev/sdc", VirtualName: "ephemeral0" },
      ],
    }),
  );
  return ImageId!;
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const storeTask = (client: EC2Client, imageId: string) =>
  until("the store task to end", async () => {
    const { StoreImageTaskResults } = await client.send(new DescribeStoreImageTasksCommand({ ImageIds: [imageId] }));
    const task = StoreImageTaskResults?.[0];
    return task && task.StoreTaskState !== "InProgress" ? task : undefined;
  });

const settledImage = (client: EC2Client, imageId: string) =>
  until("the image to settle", async () => {
    const { Images } = await client.send(new DescribeImagesCommand({ ImageIds: [imageId] }));
    return Images?.[0]?.State !== "pending" ? (Images![0] as Image) : undefined;
  });

const objectBytes = async (on: TestKiln, bucket: string, key: string) =>
  Buffer.from(await (await on.s3().send(new GetObjectCommand({ Bucket: bucket, Key: key }))).Body!.transformToByteArray());

describe("store and restore", () => {
  it("stores an image as one tagged object and restores it on another Kiln, byte for byte", async () => {
    const rootBlocks = randomBlocks([0, 1, 2, 500, 16383]);
    const dataBlocks = randomBlocks([7]);
    const imageId = await imageWithData(kiln, "golden", rootBlocks, dataBlocks);
    const { ObjectKey } = await ec2.send(
      new CreateStoreImageTaskCommand({ ImageId: imageId, Bucket: "amis", S3ObjectTags: [{ Key: "purpose", Value: "backup" }] }),
    );
    assert.equal(ObjectKey, `${imageId}.bin`);
    const task = await storeTask(ec2, imageId);
    assert.equal(task.StoreTaskState, "Completed", task.StoreTaskFailureReason);
    assert.equal(task.ProgressPercentage, 100);
    assert.equal(task.Bucket, "amis");
    assert.equal(task.S3objectKey, ObjectKey);
    assert.ok(Date.now() - task.TaskStartTime!.getTime() < 60_000);
    const s3 = kiln.s3();
    const head = await s3.send(new HeadObjectCommand({ Bucket: "amis", Key: ObjectKey }));
    // Only the six non-zero blocks are stored: an 10 GiB image is a 3 MiB object.
    assert.ok(head.ContentLength! > 6 * BLOCK && head.ContentLength! < 6 * BLOCK + 64 * 1024, String(head.ContentLength));
    assert.equal(head.Metadata!["ami-name"], "golden");
    assert.deepEqual((await s3.send(new GetObjectTaggingCommand({ Bucket: "amis", Key: ObjectKey }))).TagSet, [{ Key: "purpose", Value: "backup" }]);
    const filtered = await ec2.send(
      new DescribeStoreImageTasksCommand({
        Filters: [
          { Name: "task-state", Values: ["Completed"] },
          { Name: "bucket", Values: ["amis"] },
        ],
      }),
    );
    assert.deepEqual(
      filtered.StoreImageTaskResults!.map((t) => t.AmiId),
      [imageId],
    );
    assert.deepEqual((await ec2.send(new DescribeStoreImageTasksCommand({ Filters: [{ Name: "task-state", Values: ["Failed"] }] }))).StoreImageTaskResults, []);

    // The object travels to a second Kiln with an empty data directory, and is restored there.
    const other = await startTestKiln({ dataDir: tempDir() });
    try {
      await other.s3().send(new CreateBucketCommand({ Bucket: "incoming" }));
      await other.s3().send(new PutObjectCommand({ Bucket: "incoming", Key: "golden.bin", Body: await objectBytes(kiln, "amis", ObjectKey!) }));
      const restored = await other.ec2().send(
        new CreateRestoreImageTaskCommand({
          Bucket: "incoming",
          ObjectKey: "golden.bin",
          Name: "golden-restored",
          TagSpecifications: [{ ResourceType: "image", Tags: [{ Key: "from", Value: "s3" }] }],
        }),
      );
      const image = await settledImage(other.ec2(), restored.ImageId!);
      assert.equal(image.State, "available", image.StateReason?.Message);
      assert.equal(image.Name, "golden-restored");
      assert.equal(image.Description, "stored and restored");
      assert.equal(image.Architecture, "arm64");
      assert.equal(image.BootMode, "uefi");
      assert.equal(image.EnaSupport, true);
      assert.equal(image.RootDeviceName, "/dev/xvda");
      assert.deepEqual(image.Tags, [{ Key: "from", Value: "s3" }]);
      const mappings = image.BlockDeviceMappings!;
      assert.deepEqual(
        mappings.map((m) => [m.DeviceName, m.Ebs?.VolumeType ?? m.VirtualName, m.Ebs?.VolumeSize]),
        [
          ["/dev/xvda", "gp3", 8],
          ["/dev/sdb", "gp2", 2],
          ["/dev/sdc", "ephemeral0", undefined],
        ],
      );
      const [rootCopy, dataCopy] = [mappings[0]!.Ebs!.SnapshotId!, mappings[1]!.Ebs!.SnapshotId!];
      assert.deepEqual(await readSnapshot(other, rootCopy), rootBlocks);
      assert.deepEqual(await readSnapshot(other, dataCopy), dataBlocks);
      const { Snapshots } = await other.ec2().send(new DescribeSnapshotsCommand({ SnapshotIds: [rootCopy, dataCopy] }));
      assert.deepEqual(
        Snapshots!.map((s) => s.State),
        ["completed", "completed"],
      );
      // Without a Name, the restored image takes the stored one's.
      const again = await other.ec2().send(new CreateRestoreImageTaskCommand({ Bucket: "incoming", ObjectKey: "golden.bin" }));
      assert.equal((await settledImage(other.ec2(), again.ImageId!)).Name, "golden");
      assert.equal(
        await errorName(other.ec2().send(new CreateRestoreImageTaskCommand({ Bucket: "incoming", ObjectKey: "golden.bin" }))),
        "InvalidAMIName.Duplicate",
      );
    } finally {
      await other.close();
    }
  });

  it("refuses a missing or foreign bucket, another account's image, a missing object, and honours DryRun", async () => {
    const imageId = await imageWithData(kiln, "mine", randomBlocks([0]), randomBlocks([1]));
    assert.equal(await errorName(ec2.send(new CreateStoreImageTaskCommand({ ImageId: imageId, Bucket: "no-such-bucket" }))), "InvalidParameterValue");
    const theirs = kiln.s3({ accessKeyId: "111122223333" });
    await theirs.send(new CreateBucketCommand({ Bucket: "their-bucket" }));
    assert.equal(await errorName(ec2.send(new CreateStoreImageTaskCommand({ ImageId: imageId, Bucket: "their-bucket" }))), "InvalidParameterValue");
    assert.equal(
      await errorName(kiln.ec2({ accessKeyId: "111122223333" }).send(new CreateStoreImageTaskCommand({ ImageId: imageId, Bucket: "their-bucket" }))),
      "InvalidAMIID.NotFound",
    );
    assert.equal(await errorName(ec2.send(new CreateStoreImageTaskCommand({ ImageId: "ami-12345678", Bucket: "amis" }))), "InvalidAMIID.NotFound");
    assert.equal(await errorName(ec2.send(new CreateStoreImageTaskCommand({ ImageId: imageId, Bucket: "amis", DryRun: true }))), "DryRunOperation");
    assert.equal(
      await errorName(ec2.send(new CreateRestoreImageTaskCommand({ Bucket: "amis", ObjectKey: "absent.bin", Name: "x-restored" }))),
      "InvalidParameterValue",
    );
    assert.equal(
      await errorName(ec2.send(new CreateRestoreImageTaskCommand({ Bucket: "their-bucket", ObjectKey: "any.bin", Name: "x-restored" }))),
      "InvalidParameterValue",
    );
    await ec2.send(new CreateStoreImageTaskCommand({ ImageId: imageId, Bucket: "amis" }));
    assert.equal((await storeTask(ec2, imageId)).StoreTaskState, "Completed");
    assert.equal(
      await errorName(ec2.send(new CreateRestoreImageTaskCommand({ Bucket: "amis", ObjectKey: `${imageId}.bin`, Name: "mine" }))),
      "InvalidAMIName.Duplicate",
    );
    assert.equal(
      await errorName(ec2.send(new CreateRestoreImageTaskCommand({ Bucket: "amis", ObjectKey: `${imageId}.bin`, Name: "dry-run", DryRun: true }))),
      "DryRunOperation",
    );
    assert.equal(await errorName(ec2.send(new DescribeStoreImageTasksCommand({ ImageIds: [imageId], MaxResults: 5 }))), "InvalidParameterCombination");
    // A second store of the same image: two tasks, a page at a time, newest first.
    await ec2.send(new CreateStoreImageTaskCommand({ ImageId: imageId, Bucket: "amis" }));
    const first = await ec2.send(new DescribeStoreImageTasksCommand({ MaxResults: 1 }));
    assert.equal(first.StoreImageTaskResults!.length, 1);
    assert.ok(first.NextToken);
    const second = await ec2.send(new DescribeStoreImageTasksCommand({ MaxResults: 1, NextToken: first.NextToken }));
    assert.equal(second.StoreImageTaskResults!.length, 1);
    assert.equal(second.NextToken, undefined);
    assert.ok(first.StoreImageTaskResults![0]!.TaskStartTime! >= second.StoreImageTaskResults![0]!.TaskStartTime!);
    assert.equal(await errorName(ec2.send(new DescribeStoreImageTasksCommand({ NextToken: "bogus" }))), "InvalidNextToken");
  });

  it("fails a restore from a corrupted, truncated, foreign or wrong-version object, leaving no snapshot", async () => {
    const imageId = await imageWithData(kiln, "source", randomBlocks([0, 3, 9]), randomBlocks([2]));
    await ec2.send(new CreateStoreImageTaskCommand({ ImageId: imageId, Bucket: "amis" }));
    assert.equal((await storeTask(ec2, imageId)).StoreTaskState, "Completed");
    const good = await objectBytes(kiln, "amis", `${imageId}.bin`);
    const snapshotsBefore = (await ec2.send(new DescribeSnapshotsCommand({ OwnerIds: ["self"] }))).Snapshots!.length;
    const corrupted = Buffer.from(good);
    const inBlock = good.length - 2 * BLOCK; // inside a block's data
    corrupted[inBlock] = corrupted[inBlock]! ^ 0xff;
    const wrongVersion = Buffer.from(good);
    wrongVersion.writeUInt32BE(99, 8);
    const cases: [string, Buffer, RegExp][] = [
      ["corrupted", corrupted, /does not match its hash/],
      ["truncated", good.subarray(0, good.length - BLOCK), /truncated/],
      ["no-end", good.subarray(0, good.length - 41), /truncated/],
      ["foreign", randomBytes(4096), /not a Kiln image archive/],
      ["wrong-version", wrongVersion, /version 99/],
    ];
    for (const [name, bytes, reason] of cases) {
      await kiln.s3().send(new PutObjectCommand({ Bucket: "amis", Key: `${name}.bin`, Body: bytes }));
      const { ImageId } = await ec2.send(new CreateRestoreImageTaskCommand({ Bucket: "amis", ObjectKey: `${name}.bin`, Name: `restored-${name}` }));
      const image = await settledImage(ec2, ImageId!);
      assert.equal(image.State, "failed", name);
      assert.equal(image.StateReason?.Code, "Client.InvalidImageArchive", name);
      assert.match(image.StateReason!.Message!, reason, name);
      assert.ok(
        image.BlockDeviceMappings!.every((m) => m.Ebs?.SnapshotId === undefined),
        name,
      );
    }
    assert.equal((await ec2.send(new DescribeSnapshotsCommand({ OwnerIds: ["self"] }))).Snapshots!.length, snapshotsBefore);
    // With no Name to give it, an unreadable object is refused at once.
    assert.equal(await errorName(ec2.send(new CreateRestoreImageTaskCommand({ Bucket: "amis", ObjectKey: "foreign.bin" }))), "InvalidParameterValue");
  });

  it("finishes a store and a restore that a stop interrupted, when Kiln starts again", async () => {
    const dataDir = tempDir();
    const first = await startTestKiln({ dataDir });
    await first.s3().send(new CreateBucketCommand({ Bucket: "amis" }));
    // Enough data (64 MiB) that the task is still writing when Kiln stops.
    const rootBlocks = randomBlocks(Array.from({ length: 128 }, (_, i) => i * 3));
    const imageId = await imageWithData(first, "interrupted", rootBlocks, randomBlocks([0]));
    await first.ec2().send(new CreateStoreImageTaskCommand({ ImageId: imageId, Bucket: "amis" }));
    const during = (await first.ec2().send(new DescribeStoreImageTasksCommand({ ImageIds: [imageId] }))).StoreImageTaskResults![0]!;
    assert.equal(during.StoreTaskState, "InProgress");
    const stopped: StoppedStore = { dataDir, databaseUrl: first.kiln.config.databaseUrl };
    await first.close();
    // The stop interrupted the store: its task is still running in the stopped Kiln's metadata,
    // and the object it writes is not there.
    const storing = await stoppedTasks(stopped, "store-image", imageId);
    assert.deepEqual(
      storing.map((t) => t.state),
      ["running"],
      "the store task finished before the stop",
    );
    assert.deepEqual(
      await stoppedStoreRows(stopped, "select key from objects where bucket = ? and key = ?", ["amis", `${imageId}.bin`]),
      [],
      "the stored object was written before the stop",
    );
    let second = await startTestKiln({ dataDir });
    try {
      assert.equal((await storeTask(second.ec2(), imageId)).StoreTaskState, "Completed");
      const { ImageId } = await second
        .ec2()
        .send(new CreateRestoreImageTaskCommand({ Bucket: "amis", ObjectKey: `${imageId}.bin`, Name: "interrupted-restored" }));
      const pending = (await second.ec2().send(new DescribeImagesCommand({ ImageIds: [ImageId!] }))).Images![0]!;
      assert.equal(pending.State, "pending");
      await second.close();
      // The stop interrupted the restore: its task still running, its image pending, its snapshots not made.
      const restoring = await stoppedTasks(stopped, "restore-image", ImageId!);
      assert.deepEqual(
        restoring.map((t) => t.state),
        ["running"],
        "the restore task finished before the stop",
      );
      assert.deepEqual(
        await stoppedStoreRows(stopped, "select state from images where image_id = ?", [ImageId!]),
        [{ state: "pending" }],
        "the restored image settled before the stop",
      );
      const { snapshotIds } = JSON.parse(restoring[0]!.params) as { snapshotIds: string[] };
      assert.ok(snapshotIds.length > 0);
      for (const id of snapshotIds)
        assert.deepEqual(
          await stoppedStoreRows(stopped, "select state from snapshots where snapshot_id = ? and state = 'completed'", [id]),
          [],
          `snapshot ${id} completed before the stop`,
        );
      second = await startTestKiln({ dataDir });
      const image = await settledImage(second.ec2(), ImageId!);
      assert.equal(image.State, "available", image.StateReason?.Message);
      assert.deepEqual(await readSnapshot(second, image.BlockDeviceMappings![0]!.Ebs!.SnapshotId!), rootBlocks);
    } finally {
      await second.close();
    }
  });
});
