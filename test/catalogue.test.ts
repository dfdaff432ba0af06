// The public catalogue: lookups by owner and name resolve as they do on AWS, ids are the same
// on every Kiln, every region has its own, and users can add entries.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  CreateImageCommand,
  DescribeImagesCommand,
  RegisterImageCommand,
  RunInstancesCommand,
  waitUntilImageAvailable,
  waitUntilInstanceRunning,
  type EC2Client,
} from "@aws-sdk/client-ec2";
import { GetParameterCommand } from "@aws-sdk/client-ssm";
import { BLOCK, errorName, readSnapshot, writeSnapshot } from "./helpers/data.js";
import { startTestKiln, tempDir, type TestKiln } from "./helpers/kiln.js";
import { run } from "./helpers/tools.js";

let kiln: TestKiln;
let ec2: EC2Client;
before(async () => {
  kiln = await startTestKiln();
  ec2 = kiln.ec2();
});
after(() => kiln.close());

const al2023x86 = {
  Owners: ["amazon"],
  Filters: [
    { Name: "name", Values: ["al2023-ami-2023.*-x86_64"] },
    { Name: "architecture", Values: ["x86_64"] },
  ],
};

describe("public catalogue", () => {
  it("answers Owners=amazon with a name filter, as Terraform's aws_ami asks", async () => {
    const { Images } = await ec2.send(new DescribeImagesCommand(al2023x86));
    // Four kernel-6.1 serials, three kernel-6.12 and two kernel-6.18 ones, as "al2023-ami-2023.*-x86_64" finds on AWS.
    assert.equal(Images!.length, 9);
    const newest = [...Images!].sort((a, b) => b.CreationDate!.localeCompare(a.CreationDate!))[0]!;
    assert.equal(newest.Name, "al2023-ami-2023.11.20260427.1-kernel-6.18-x86_64");
    assert.equal(newest.ImageOwnerAlias, "amazon");
    assert.equal(newest.OwnerId, "137112412989");
    assert.equal(newest.Public, true);
    assert.equal(newest.State, "available");
    assert.equal(newest.ImdsSupport, "v2.0");
    assert.equal(newest.BlockDeviceMappings![0]!.Ebs!.VolumeSize, 8);
  });

  it("finds Ubuntu 22.04 with the aws_instance example's own lookup, newest serial last", async () => {
    const { Images } = await ec2.send(
      new DescribeImagesCommand({
        Owners: ["099720109477"],
        Filters: [
          { Name: "name", Values: ["ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*"] },
          { Name: "virtualization-type", Values: ["hvm"] },
        ],
      }),
    );
    const byDate = Images!.sort((a, b) => a.CreationDate!.localeCompare(b.CreationDate!)).map((i) => i.Name);
    assert.deepEqual(
      byDate,
      ["20260923", "20261021", "20261119"].map((serial) => `ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-${serial}`),
    );
    assert.ok(
      Images!.every(
        (i) =>
          i.Architecture === "x86_64" &&
          i.RootDeviceName === "/dev/sda1" &&
          i.ImageOwnerAlias === undefined &&
          i.Description!.startsWith("Canonical, Ubuntu, 22.04 LTS, amd64 jammy image"),
      ),
    );
  });

  it("filters on the fields lookups use: billing, platform, architecture, boot mode, ENA, owner alias", async () => {
    const names = async (Owners: string[], Filters: { Name: string; Values: string[] }[]) =>
      ((await ec2.send(new DescribeImagesCommand({ Owners, Filters }))).Images ?? []).map((i) => i.Name!).sort();
    const sqlStandard = await names(["amazon"], [{ Name: "platform-details", Values: ["Windows with SQL Server Standard"] }]);
    assert.ok(sqlStandard.length >= 9 && sqlStandard.every((n) => /^Windows_Server-\d{4}-English-Full-SQL_\d{4}_Standard-/.test(n)), sqlStandard.join());
    assert.deepEqual(await names(["amazon"], [{ Name: "usage-operation", Values: ["RunInstances:0006"] }]), sqlStandard);
    const rhel = (
      await ec2.send(
        new DescribeImagesCommand({
          Owners: ["309956199498"],
          Filters: [
            { Name: "name", Values: ["RHEL-9.*"] },
            { Name: "architecture", Values: ["arm64"] },
          ],
        }),
      )
    ).Images!;
    assert.ok(rhel.length >= 2);
    assert.ok(
      rhel.every(
        (i) =>
          i.PlatformDetails === "Red Hat Enterprise Linux" && i.UsageOperation === "RunInstances:0010" && i.BootMode === "uefi" && i.Platform === undefined,
      ),
    );
    const windows = await names(
      ["amazon"],
      [
        { Name: "platform", Values: ["windows"] },
        { Name: "name", Values: ["Windows_Server-2025-English-Core-Base-*"] },
      ],
    );
    assert.equal(windows.length, 3);
    const suse = await names(
      ["amazon"],
      [
        { Name: "owner-alias", Values: ["amazon"] },
        { Name: "name", Values: ["suse-sles-15-sp7-*"] },
        { Name: "ena-support", Values: ["true"] },
        { Name: "root-device-type", Values: ["ebs"] },
      ],
    );
    assert.equal(suse.length, 4);
    const debian = await names(
      ["136693071363"],
      [
        { Name: "name", Values: ["debian-13-*"] },
        { Name: "is-public", Values: ["true"] },
        { Name: "state", Values: ["available"] },
        { Name: "image-type", Values: ["machine"] },
        { Name: "hypervisor", Values: ["xen"] },
      ],
    );
    assert.equal(debian.length, 6);
    const eks = await names(["amazon"], [{ Name: "description", Values: ["EKS-optimized Kubernetes node based on Amazon Linux 2023, (k8s: 1.34*"] }]);
    assert.deepEqual(eks, [
      "amazon-eks-node-al2023-arm64-standard-1.34-v20261020",
      "amazon-eks-node-al2023-arm64-standard-1.34-v20261119",
      "amazon-eks-node-al2023-x86_64-standard-1.34-v20261020",
      "amazon-eks-node-al2023-x86_64-standard-1.34-v20261119",
    ]);
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
    assert.equal(elsewhere.length, 9);
    assert.ok(elsewhere.every((id) => !here.includes(id)));
  });

  it("launches a catalogue image whose root disk carries its boot block and a line saying what it is", async () => {
    const image = (await ec2.send(new DescribeImagesCommand({ Owners: ["amazon"], Filters: [{ Name: "name", Values: ["amzn2-ami-kernel-5.10-hvm-*"] }] })))
      .Images![0]!;
    const blocks = await rootBlocksThroughAnInstance(kiln, image.ImageId!);
    assert.deepEqual([...blocks.keys()], [0]);
    const data = blocks.get(0)!;
    assert.equal(data.subarray(510, 512).toString("hex"), "55aa");
    assert.equal(data.subarray(0, 74).toString("utf8"), "Kiln catalogue image: a public image's stand-in, with no operating system\n");
  });

  it("adds a user's entries from KILN_CATALOGUE_FILE", async () => {
    const file = join(tempDir(), "catalogue.json");
    writeFileSync(
      file,
      JSON.stringify([
        {
          name: "acme-base-2026.11",
          ownerId: "123412341234",
          ownerAlias: "aws-marketplace",
          architecture: "arm64",
          rootDeviceName: "/dev/xvda",
          volumeSize: 4,
          creationDate: "2026-11-01T00:00:00.000Z",
        },
      ]),
    );
    const custom = await startTestKiln({}, { KILN_CATALOGUE_FILE: file });
    try {
      const { Images } = await custom.ec2().send(new DescribeImagesCommand({ Owners: ["aws-marketplace"] }));
      assert.deepEqual(
        Images!.map((i) => [i.Name, i.OwnerId, i.Architecture]),
        [["acme-base-2026.11", "123412341234", "arm64"]],
      );
    } finally {
      await custom.close();
    }
  });

  it("serves an operator's pinned id and real root disk in place of a built-in image, through its public parameter too", async () => {
    const dir = tempDir();
    // A 3 MiB disk with data in its first and fifth blocks, as QCOW2.
    const raw = Buffer.alloc(3 * 1024 * 1024);
    raw.write("Kiln test root disk\n", 0);
    raw.writeUInt16BE(0x55aa, 510);
    randomBytes(BLOCK).copy(raw, 4 * BLOCK);
    writeFileSync(join(dir, "root.raw"), raw);
    await run("qemu-img", ["convert", "-f", "raw", "-O", "qcow2", join(dir, "root.raw"), join(dir, "root.qcow2")]);
    const name = "debian-12-amd64-20261117-2303";
    const entry = {
      name,
      ownerId: "136693071363",
      architecture: "x86_64",
      rootDeviceName: "/dev/xvda",
      creationDate: "2026-11-17T23:44:58.000Z",
      description: "Debian 12 (20261117-2303), built here",
    };
    const file = join(dir, "catalogue.json");
    const dataDir = tempDir();
    const lookUp = async (client: EC2Client) =>
      (await client.send(new DescribeImagesCommand({ Owners: ["136693071363"], Filters: [{ Name: "name", Values: [name] }] }))).Images!;

    // First without a pin: the id is derived. Then, restarted with the pin, that id is gone.
    writeFileSync(file, JSON.stringify([{ ...entry, rootDisk: "root.qcow2" }]));
    let custom = await startTestKiln({ dataDir }, { KILN_CATALOGUE_FILE: file });
    const derived = (await lookUp(custom.ec2()))[0]!.ImageId!;
    await custom.close();
    writeFileSync(file, JSON.stringify([{ ...entry, rootDisk: "root.qcow2", imageId: "ami-0123456789abcdef0" }]));
    custom = await startTestKiln({ dataDir }, { KILN_CATALOGUE_FILE: file });
    try {
      for (const region of ["us-east-1", "eu-west-1"]) {
        const images = await lookUp(custom.ec2({ region }));
        assert.deepEqual(
          images.map((i) => [i.ImageId, i.Description, i.BlockDeviceMappings![0]!.Ebs!.VolumeSize]),
          [["ami-0123456789abcdef0", "Debian 12 (20261117-2303), built here", 1]],
          region,
        );
        const { Parameter } = await custom.ssm({ region }).send(new GetParameterCommand({ Name: "/aws/service/debian/release/12/latest/amd64" }));
        assert.equal(Parameter!.Value, "ami-0123456789abcdef0", region);
      }
      assert.notEqual(derived, "ami-0123456789abcdef0");
      assert.equal(await errorName(custom.ec2().send(new DescribeImagesCommand({ ImageIds: [derived] }))), "InvalidAMIID.NotFound");
      // Launched by its parameter and captured, the disk's blocks come back byte for byte.
      const blocks = await rootBlocksThroughAnInstance(custom, "resolve:ssm:/aws/service/debian/release/12/latest/amd64");
      assert.deepEqual([...blocks.keys()], [0, 4]);
      assert.ok(blocks.get(0)!.equals(raw.subarray(0, BLOCK)));
      assert.ok(blocks.get(4)!.equals(raw.subarray(4 * BLOCK, 5 * BLOCK)));
    } finally {
      await custom.close();
    }
  });

  it("leaves out a catalogue image whose pinned id an account's image already holds, and leaves that image as it was", async () => {
    const dataDir = tempDir();
    let custom = await startTestKiln({ dataDir });
    let ImageId: string | undefined;
    try {
      const SnapshotId = await writeSnapshot(custom, new Map([[0, Buffer.alloc(BLOCK, 7)]]), { size: 3 });
      ({ ImageId } = await custom.ec2().send(
        new RegisterImageCommand({
          Name: "mine",
          RootDeviceName: "/dev/xvda",
          VirtualizationType: "hvm",
          BlockDeviceMappings: [{ DeviceName: "/dev/xvda", Ebs: { SnapshotId } }],
        }),
      ));
    } finally {
      await custom.close();
    }
    const file = join(tempDir(), "catalogue.json");
    writeFileSync(
      file,
      JSON.stringify([
        {
          name: "pinned-over-mine",
          ownerId: "123412341234",
          architecture: "x86_64",
          rootDeviceName: "/dev/sda1",
          volumeSize: 9,
          creationDate: "2026-01-01T00:00:00.000Z",
          imageId: ImageId,
        },
      ]),
    );
    custom = await startTestKiln({ dataDir }, { KILN_CATALOGUE_FILE: file });
    try {
      const [image] = (await custom.ec2().send(new DescribeImagesCommand({ ImageIds: [ImageId!] }))).Images!;
      assert.deepEqual(
        [image!.Name, image!.OwnerId, image!.BlockDeviceMappings![0]!.DeviceName, image!.BlockDeviceMappings![0]!.Ebs!.VolumeSize],
        ["mine", "000000000000", "/dev/xvda", 3],
      );
      assert.deepEqual((await custom.ec2().send(new DescribeImagesCommand({ Owners: ["123412341234"] }))).Images, []);
    } finally {
      await custom.close();
    }
  });

  it("refuses to start on a catalogue file whose ids clash or whose root disk is missing", async () => {
    const dir = tempDir();
    const base = { ownerId: "123412341234", architecture: "x86_64", rootDeviceName: "/dev/xvda", volumeSize: 2, creationDate: "2026-01-01T00:00:00.000Z" };
    const clash = join(dir, "clash.json");
    writeFileSync(
      clash,
      JSON.stringify([
        { ...base, name: "one-image", imageId: "ami-12345678" },
        { ...base, name: "other-image", imageId: { "us-west-2": "ami-12345678" } },
      ]),
    );
    await assert.rejects(startTestKiln({}, { KILN_CATALOGUE_FILE: clash }), /the images one-image and other-image both have the id ami-12345678 in us-west-2/);
    const missing = join(dir, "missing.json");
    writeFileSync(missing, JSON.stringify([{ ...base, name: "no-disk", rootDisk: "gone.vmdk" }]));
    await assert.rejects(startTestKiln({}, { KILN_CATALOGUE_FILE: missing }), /root disk .*gone\.vmdk cannot be read: ENOENT/);
  });
});

/** A launch of `imageId`, a CreateImage of the instance, and the new image's root snapshot blocks, read as the caller may. */
async function rootBlocksThroughAnInstance(on: TestKiln, imageId: string): Promise<Map<number, Buffer>> {
  const client = on.ec2();
  const { Instances } = await client.send(new RunInstancesCommand({ ImageId: imageId, MinCount: 1, MaxCount: 1 }));
  await waitUntilInstanceRunning({ client, minDelay: 1, maxWaitTime: 10 }, { InstanceIds: [Instances![0]!.InstanceId!] });
  const { ImageId } = await client.send(
    new CreateImageCommand({ InstanceId: Instances![0]!.InstanceId, Name: `captured-${randomBytes(4).toString("hex")}`, NoReboot: true }),
  );
  await waitUntilImageAvailable({ client, minDelay: 1, maxWaitTime: 10 }, { ImageIds: [ImageId!] });
  const captured = (await client.send(new DescribeImagesCommand({ ImageIds: [ImageId!] }))).Images![0]!;
  return readSnapshot(on, captured.BlockDeviceMappings![0]!.Ebs!.SnapshotId!);
}
