// CopySnapshot and CopyImage, in a region and across regions: same bytes, new ids, the
// caller's own, and no new chunk stored.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import {
  CopyImageCommand,
  CopySnapshotCommand,
  CreateTagsCommand,
  DescribeImagesCommand,
  DescribeSnapshotsCommand,
  RegisterImageCommand,
  RunInstancesCommand,
  waitUntilImageAvailable,
  waitUntilSnapshotCompleted,
} from "@aws-sdk/client-ec2";
import { BLOCK, chunkBytes, errorName, readSnapshot, writeSnapshot } from "./helpers/data.js";
import { startTestKiln, type TestKiln } from "./helpers/kiln.js";

let kiln: TestKiln;
let data: Map<number, Buffer>;
let snapshotId: string;
let imageId: string;

before(async () => {
  kiln = await startTestKiln();
  data = new Map([
    [1, randomBytes(BLOCK)],
    [3000, randomBytes(BLOCK)],
  ]);
  snapshotId = await writeSnapshot(kiln, data, { size: 2 });
  ({ ImageId: imageId } = (await kiln.ec2().send(
    new RegisterImageCommand({
      Name: "to-copy",
      Architecture: "arm64",
      VirtualizationType: "hvm",
      RootDeviceName: "/dev/xvda",
      BlockDeviceMappings: [{ DeviceName: "/dev/xvda", Ebs: { SnapshotId: snapshotId } }],
    }),
  )) as { ImageId: string });
  await kiln.ec2().send(new CreateTagsCommand({ Resources: [imageId], Tags: [{ Key: "team", Value: "images" }] }));
});
after(() => kiln.close());

describe("CopySnapshot", () => {
  it("copies a snapshot into another region with the same bytes and no new chunk", async () => {
    const before = await chunkBytes(kiln);
    const west = kiln.ec2({ region: "eu-west-1" });
    const { SnapshotId } = await west.send(
      new CopySnapshotCommand({
        SourceRegion: "us-east-1",
        SourceSnapshotId: snapshotId,
        TagSpecifications: [{ ResourceType: "snapshot", Tags: [{ Key: "copy", Value: "yes" }] }],
      }),
    );
    await waitUntilSnapshotCompleted({ client: west, minDelay: 1, maxWaitTime: 10 }, { SnapshotIds: [SnapshotId!] });
    const copy = (await west.send(new DescribeSnapshotsCommand({ SnapshotIds: [SnapshotId!] }))).Snapshots![0]!;
    assert.equal(copy.Description, `[Copied ${snapshotId} from us-east-1]`);
    assert.equal(copy.VolumeSize, 2);
    assert.deepEqual(copy.Tags, [{ Key: "copy", Value: "yes" }]);
    assert.deepEqual(await readSnapshot(kiln, SnapshotId!, "eu-west-1"), data);
    assert.equal(await chunkBytes(kiln), before);
    assert.equal(await errorName(west.send(new CopySnapshotCommand({ SourceRegion: "eu-west-1", SourceSnapshotId: snapshotId }))), "InvalidSnapshot.NotFound");
  });
});

describe("CopyImage", () => {
  it("copies an image and its snapshots into another region, launchable there", async () => {
    const west = kiln.ec2({ region: "eu-west-1" });
    const { ImageId } = await west.send(
      new CopyImageCommand({
        Name: "copied",
        SourceImageId: imageId,
        SourceRegion: "us-east-1",
        CopyImageTags: true,
        TagSpecifications: [{ ResourceType: "image", Tags: [{ Key: "copied", Value: "true" }] }],
      }),
    );
    await waitUntilImageAvailable({ client: west, minDelay: 1, maxWaitTime: 10 }, { ImageIds: [ImageId!] });
    const image = (await west.send(new DescribeImagesCommand({ ImageIds: [ImageId!] }))).Images![0]!;
    assert.equal(image.Architecture, "arm64");
    assert.equal(image.OwnerId, "000000000000");
    assert.deepEqual(image.Tags, [
      { Key: "copied", Value: "true" },
      { Key: "team", Value: "images" },
    ]);
    const copiedSnapshot = image.BlockDeviceMappings![0]!.Ebs!.SnapshotId!;
    assert.notEqual(copiedSnapshot, snapshotId);
    assert.deepEqual(await readSnapshot(kiln, copiedSnapshot, "eu-west-1"), data);
    const { Instances } = await west.send(new RunInstancesCommand({ ImageId, MinCount: 1, MaxCount: 1, InstanceType: "t4g.micro" }));
    assert.equal(Instances![0]!.Placement!.AvailabilityZone, "eu-west-1a");
    // The source is untouched and still its region's alone.
    assert.equal(await errorName(west.send(new DescribeImagesCommand({ ImageIds: [imageId] }))), "InvalidAMIID.NotFound");
  });

  it("copies a public catalogue image into the caller's own", async () => {
    const ec2 = kiln.ec2({ accessKeyId: "333344445555" });
    const amzn2 = (await ec2.send(new DescribeImagesCommand({ Owners: ["amazon"], Filters: [{ Name: "name", Values: ["amzn2-ami-*"] }] }))).Images![0]!;
    const { ImageId } = await ec2.send(new CopyImageCommand({ Name: "my-amzn2-copy", SourceImageId: amzn2.ImageId, SourceRegion: "us-east-1" }));
    const mine = (await ec2.send(new DescribeImagesCommand({ Owners: ["self"] }))).Images!;
    assert.deepEqual(
      mine.map((i) => [i.ImageId, i.OwnerId, i.Public]),
      [[ImageId, "333344445555", false]],
    );
  });

  it("answers a retried copy (same ClientToken) with the first copy's image", async () => {
    const ec2 = kiln.ec2({ accessKeyId: "333344446666" });
    const other = kiln.ec2({ accessKeyId: "333344447777" });
    const amzn2 = (await ec2.send(new DescribeImagesCommand({ Owners: ["amazon"], Filters: [{ Name: "name", Values: ["amzn2-ami-*"] }] }))).Images![0]!;
    const copy = (client: typeof ec2) =>
      client.send(new CopyImageCommand({ Name: "retried-copy", SourceImageId: amzn2.ImageId, SourceRegion: "us-east-1", ClientToken: "copy-1" }));
    const first = await copy(ec2);
    const again = await copy(ec2);
    assert.equal(again.ImageId, first.ImageId);
    assert.deepEqual(
      (await ec2.send(new DescribeImagesCommand({ Owners: ["self"] }))).Images!.map((i) => i.ImageId),
      [first.ImageId],
    );
    // A token is the account's own: another account's copy with it is a new image.
    const theirs = await copy(other);
    assert.notEqual(theirs.ImageId, first.ImageId);
  });

  it("refuses a missing source, a taken name and an unknown region", async () => {
    const ec2 = kiln.ec2();
    assert.equal(
      await errorName(ec2.send(new CopyImageCommand({ Name: "x-copy", SourceImageId: "ami-0123456789abcdef0", SourceRegion: "us-east-1" }))),
      "InvalidAMIID.NotFound",
    );
    assert.equal(
      await errorName(ec2.send(new CopyImageCommand({ Name: "to-copy", SourceImageId: imageId, SourceRegion: "us-east-1" }))),
      "InvalidAMIName.Duplicate",
    );
    assert.equal(await errorName(ec2.send(new CopyImageCommand({ Name: "x-copy", SourceImageId: imageId, SourceRegion: "mars-1" }))), "InvalidParameterValue");
  });
});
