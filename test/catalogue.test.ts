// The public catalogue: lookups by owner and name resolve as they do on AWS, ids are the same
// on every Kiln, every region has its own, and users can add entries.
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { GetSnapshotBlockCommand, ListSnapshotBlocksCommand } from "@aws-sdk/client-ebs";
import { CreateImageCommand, DescribeImagesCommand, RunInstancesCommand, waitUntilImageAvailable, waitUntilInstanceRunning, type EC2Client } from "@aws-sdk/client-ec2";
import { startTestKiln, tempDir, type TestKiln } from "./helpers/kiln.js";

let kiln: TestKiln;
let ec2: EC2Client;
before(async () => {
  kiln = await startTestKiln();
  ec2 = kiln.ec2();
});
after(() => kiln.close());

const al2023x86 = { Owners: ["amazon"], Filters: [{ Name: "name", Values: ["al2023-ami-2023.*-x86_64"] }, { Name: "architecture", Values: ["x86_64"] }] };

describe("public catalogue", () => {
  it("answers Owners=amazon with a name filter, as Terraform's aws_ami asks", async () => {
    const { Images } = await ec2.send(new DescribeImagesCommand(al2023x86));
    assert.equal(Images!.length, 2);
    const newest = [...Images!].sort((a, b) => b.CreationDate!.localeCompare(a.CreationDate!))[0]!;
    assert.equal(newest.Name, "al2023-ami-2023.6.20241212.0-kernel-6.1-x86_64");
    assert.equal(newest.ImageOwnerAlias, "amazon");
    assert.equal(newest.OwnerId, "137112412989");
    assert.equal(newest.Public, true);
    assert.equal(newest.State, "available");
    assert.equal(newest.BlockDeviceMappings![0]!.Ebs!.VolumeSize, 8);
    const ubuntu = await ec2.send(new DescribeImagesCommand({ Owners: ["099720109477"], Filters: [{ Name: "name", Values: ["ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"] }] }));
    assert.equal(ubuntu.Images!.length, 1);
    const windows = await ec2.send(new DescribeImagesCommand({ Owners: ["amazon"], Filters: [{ Name: "platform", Values: ["windows"] }] }));
    assert.deepEqual(windows.Images!.map((i) => [i.Platform, i.PlatformDetails]), [["windows", "Windows"]]);
  });

  it("gives the same ids on every Kiln, and other ids in other regions", async () => {
    const here = (await ec2.send(new DescribeImagesCommand(al2023x86))).Images!.map((i) => i.ImageId).sort();
    const other = await startTestKiln();
    try {
      const there = (await other.ec2().send(new DescribeImagesCommand(al2023x86))).Images!.map((i) => i.ImageId).sort();
      assert.deepEqual(there, here);
    } finally {
      await other.close();
    }
    const elsewhere = (await kiln.ec2({ region: "eu-central-1" }).send(new DescribeImagesCommand(al2023x86))).Images!.map((i) => i.ImageId).sort();
    assert.equal(elsewhere.length, 2);
    assert.ok(elsewhere.every((id) => !here.includes(id)));
  });

  it("launches a catalogue image whose root disk carries its boot block and a line saying what it is", async () => {
    const image = (await ec2.send(new DescribeImagesCommand({ Owners: ["amazon"], Filters: [{ Name: "name", Values: ["amzn2-ami-kernel-5.10-hvm-*"] }] }))).Images![0]!;
    const { Instances } = await ec2.send(new RunInstancesCommand({ ImageId: image.ImageId, MinCount: 1, MaxCount: 1 }));
    await waitUntilInstanceRunning({ client: ec2, minDelay: 1, maxWaitTime: 10 }, { InstanceIds: [Instances![0]!.InstanceId!] });
    const { ImageId } = await ec2.send(new CreateImageCommand({ InstanceId: Instances![0]!.InstanceId, Name: "my-amzn2", NoReboot: true }));
    await waitUntilImageAvailable({ client: ec2, minDelay: 1, maxWaitTime: 10 }, { ImageIds: [ImageId!] });
    const mine = (await ec2.send(new DescribeImagesCommand({ ImageIds: [ImageId!] }))).Images![0]!;
    const snapshotId = mine.BlockDeviceMappings![0]!.Ebs!.SnapshotId!;
    const ebs = kiln.ebs();
    const { Blocks } = await ebs.send(new ListSnapshotBlocksCommand({ SnapshotId: snapshotId }));
    assert.deepEqual(Blocks!.map((b) => b.BlockIndex), [0]);
    const block = await ebs.send(new GetSnapshotBlockCommand({ SnapshotId: snapshotId, BlockIndex: 0, BlockToken: Blocks![0]!.BlockToken }));
    const data = Buffer.from(await block.BlockData!.transformToByteArray());
    assert.equal(data.subarray(510, 512).toString("hex"), "55aa");
    assert.equal(data.subarray(0, 74).toString("utf8"), "Kiln catalogue image: a public image's stand-in, with no operating system\n");
  });

  it("adds a user's entries from KILN_CATALOGUE_FILE", async () => {
    const file = join(tempDir(), "catalogue.json");
    writeFileSync(file, JSON.stringify([{ name: "acme-base-2026.11", ownerId: "123412341234", ownerAlias: "aws-marketplace", architecture: "arm64", rootDeviceName: "/dev/xvda", volumeSize: 4, creationDate: "2026-11-01T00:00:00.000Z" }]));
    const custom = await startTestKiln({}, { KILN_CATALOGUE_FILE: file });
    try {
      const { Images } = await custom.ec2().send(new DescribeImagesCommand({ Owners: ["aws-marketplace"] }));
      assert.deepEqual(Images!.map((i) => [i.Name, i.OwnerId, i.Architecture]), [["acme-base-2026.11", "123412341234", "arm64"]]);
    } finally {
      await custom.close();
    }
  });
});
