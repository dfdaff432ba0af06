// RegisterImage, DescribeImages and DeregisterImage through @aws-sdk/client-ec2, over snapshots
// written with the EBS direct APIs.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, beforeEach, describe, it } from "node:test";
import {
  DeleteSnapshotCommand,
  DeregisterImageCommand,
  DescribeImagesCommand,
  DescribeSnapshotsCommand,
  RegisterImageCommand,
  paginateDescribeImages,
  waitUntilImageAvailable,
  type EC2Client,
  type RegisterImageCommandInput,
} from "@aws-sdk/client-ec2";
import { BLOCK, errorName, writeSnapshot } from "./helpers/data.js";
import { startTestKiln, type TestKiln } from "./helpers/kiln.js";

let kiln: TestKiln;
let ec2: EC2Client;
before(async () => {
  kiln = await startTestKiln();
  ec2 = kiln.ec2();
});
after(() => kiln.close());
beforeEach(() => kiln.reset());

/** A completed snapshot of `size` GiB with one block of random data. */
const rootSnapshot = (target = kiln, size = 8, accessKeyId = "test") => writeSnapshot(target, new Map([[0, randomBytes(BLOCK)]]), { size, accessKeyId });

const register = (snapshotId: string, extra: Partial<RegisterImageCommandInput> = {}, client = ec2) =>
  client.send(
    new RegisterImageCommand({
      Name: "kiln-test-image",
      RootDeviceName: "/dev/xvda",
      Architecture: "x86_64",
      VirtualizationType: "hvm",
      BlockDeviceMappings: [{ DeviceName: "/dev/xvda", Ebs: { SnapshotId: snapshotId } }],
      ...extra,
    }),
  );

describe("RegisterImage and DescribeImages", () => {
  it("registers an image over snapshots and describes every field", async () => {
    const snapshotId = await rootSnapshot();
    const { ImageId } = await register(snapshotId, {
      Description: "test image",
      EnaSupport: true,
      BootMode: "uefi",
      ImdsSupport: "v2.0",
      BlockDeviceMappings: [
        { DeviceName: "/dev/xvda", Ebs: { SnapshotId: snapshotId, VolumeSize: 10, VolumeType: "gp3", DeleteOnTermination: true } },
        { DeviceName: "/dev/sdb", Ebs: { VolumeSize: 100 } },
        { DeviceName: "/dev/sdc", VirtualName: "ephemeral0" },
      ],
      TagSpecifications: [{ ResourceType: "image", Tags: [{ Key: "Name", Value: "web" }] }],
    });
    assert.match(ImageId!, /^ami-[0-9a-f]{17}$/);
    await waitUntilImageAvailable({ client: ec2, maxWaitTime: 10, minDelay: 1 }, { ImageIds: [ImageId!] });
    const { Images } = await ec2.send(new DescribeImagesCommand({ ImageIds: [ImageId!] }));
    const image = Images![0]!;
    assert.equal(image.State, "available");
    assert.equal(image.Name, "kiln-test-image");
    assert.equal(image.Description, "test image");
    assert.equal(image.OwnerId, "000000000000");
    assert.equal(image.Public, false);
    assert.equal(image.Architecture, "x86_64");
    assert.equal(image.VirtualizationType, "hvm");
    assert.equal(image.RootDeviceType, "ebs");
    assert.equal(image.RootDeviceName, "/dev/xvda");
    assert.equal(image.EnaSupport, true);
    assert.equal(image.BootMode, "uefi");
    assert.equal(image.ImdsSupport, "v2.0");
    assert.equal(image.ImageType, "machine");
    assert.equal(image.Hypervisor, "xen");
    assert.equal(image.PlatformDetails, "Linux/UNIX");
    assert.equal(image.UsageOperation, "RunInstances");
    assert.match(image.CreationDate!, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
    assert.deepEqual(image.Tags, [{ Key: "Name", Value: "web" }]);
    assert.deepEqual(image.BlockDeviceMappings, [
      { DeviceName: "/dev/xvda", Ebs: { SnapshotId: snapshotId, VolumeSize: 10, VolumeType: "gp3", DeleteOnTermination: true, Encrypted: false } },
      { DeviceName: "/dev/sdb", Ebs: { VolumeSize: 100, VolumeType: "gp2", DeleteOnTermination: true, Encrypted: false } },
      { DeviceName: "/dev/sdc", VirtualName: "ephemeral0" },
    ]);
  });

  it("enforces names: form, and uniqueness per account", async () => {
    const snapshotId = await rootSnapshot();
    assert.equal(await errorName(register(snapshotId, { Name: "no" })), "InvalidAMIName.Malformed");
    assert.equal(await errorName(register(snapshotId, { Name: "bad*name" })), "InvalidAMIName.Malformed");
    await register(snapshotId, { Name: "taken (v1) [x] a/b-c'd@e_f.g" });
    assert.equal(await errorName(register(snapshotId, { Name: "taken (v1) [x] a/b-c'd@e_f.g" })), "InvalidAMIName.Duplicate");
    // Another account may use the same name, over its own snapshot; it cannot use this account's.
    const other = kiln.ec2({ accessKeyId: "111111111111" });
    assert.equal(await errorName(register(snapshotId, { Name: "mine" }, other)), "InvalidSnapshot.NotFound");
    const otherSnapshot = await rootSnapshot(kiln, 8, "111111111111");
    const { ImageId } = await register(otherSnapshot, { Name: "taken (v1) [x] a/b-c'd@e_f.g" }, other);
    assert.equal((await other.send(new DescribeImagesCommand({ ImageIds: [ImageId!] }))).Images![0]!.OwnerId, "111111111111");
  });

  it("refuses bad mappings", async () => {
    const snapshotId = await rootSnapshot(kiln, 16);
    assert.equal(await errorName(register(snapshotId, { RootDeviceName: undefined })), "MissingParameter");
    assert.equal(await errorName(register(snapshotId, { BlockDeviceMappings: [] })), "MissingParameter");
    assert.equal(await errorName(register(snapshotId, { RootDeviceName: "/dev/sda1" })), "InvalidBlockDeviceMapping");
    assert.equal(
      await errorName(register(snapshotId, { BlockDeviceMappings: [{ DeviceName: "/dev/xvda", Ebs: { SnapshotId: snapshotId, VolumeSize: 8 } }] })),
      "InvalidBlockDeviceMapping",
    );
    assert.equal(await errorName(register("snap-0123456789abcdef0")), "InvalidSnapshot.NotFound");
    assert.equal(await errorName(register(snapshotId, { TagSpecifications: [{ ResourceType: "volume", Tags: [] }] })), "InvalidParameterValue");
    assert.equal(await errorName(register(snapshotId, { DryRun: true })), "DryRunOperation");
    assert.deepEqual((await ec2.send(new DescribeImagesCommand({ Owners: ["self"] }))).Images, []);
  });

  it("shows an account only what it may see", async () => {
    const { ImageId } = await register(await rootSnapshot());
    const other = kiln.ec2({ accessKeyId: "111111111111" });
    const seen = (await other.send(new DescribeImagesCommand({}))).Images!;
    assert.ok(!seen.some((i) => i.ImageId === ImageId), "not another account's private image");
    assert.ok(
      seen.every((i) => i.Public),
      "only public (catalogue) images",
    );
    assert.equal(await errorName(other.send(new DescribeImagesCommand({ ImageIds: [ImageId!] }))), "InvalidAMIID.NotFound");
    assert.equal(await errorName(other.send(new DeregisterImageCommand({ ImageId }))), "InvalidAMIID.NotFound");
    assert.equal(await errorName(ec2.send(new DescribeImagesCommand({ ImageIds: ["ami-xyz"] }))), "InvalidAMIID.Malformed");
    assert.equal(await errorName(ec2.send(new DescribeImagesCommand({ Owners: ["nobody"] }))), "InvalidParameterValue");
  });

  it("filters and paginates over 1,000 images", async () => {
    const snapshotId = await rootSnapshot();
    const made: string[] = [];
    for (let i = 0; i < 1000; i++) {
      const { ImageId } = await register(snapshotId, {
        Name: `app-${i % 2 ? "arm" : "x86"}-${String(i).padStart(4, "0")}`,
        Architecture: i % 2 ? "arm64" : "x86_64",
      });
      made.push(ImageId!);
    }
    const seen: string[] = [];
    let pages = 0;
    for await (const page of paginateDescribeImages({ client: ec2, pageSize: 100 }, { Owners: ["self"] })) {
      pages++;
      seen.push(...page.Images!.map((i) => i.ImageId!));
    }
    assert.equal(pages, 10);
    assert.deepEqual(seen, [...made].sort());
    const arm = await ec2.send(
      new DescribeImagesCommand({
        Filters: [
          { Name: "architecture", Values: ["arm64"] },
          { Name: "name", Values: ["app-arm-00*"] },
        ],
      }),
    );
    assert.equal(arm.Images!.length, 50);
    assert.ok(arm.Images!.every((i) => i.Architecture === "arm64" && i.Name!.startsWith("app-arm-00")));
    const bySnapshot = await ec2.send(
      new DescribeImagesCommand({ Filters: [{ Name: "block-device-mapping.snapshot-id", Values: [snapshotId] }], MaxResults: 5 }),
    );
    assert.equal(bySnapshot.Images!.length, 5);
    assert.ok(bySnapshot.NextToken);
    assert.equal(await errorName(ec2.send(new DescribeImagesCommand({ ImageIds: [made[0]!], MaxResults: 5 }))), "InvalidParameterCombination");
    // Pages stay full and complete when a filter drops rows after SQL has read them.
    const armPages: number[] = [];
    const arm64: string[] = [];
    for await (const page of paginateDescribeImages(
      { client: ec2, pageSize: 7 },
      { Owners: ["self"], Filters: [{ Name: "architecture", Values: ["arm64"] }] },
    )) {
      armPages.push(page.Images!.length);
      arm64.push(...page.Images!.map((i) => i.ImageId!));
    }
    assert.equal(arm64.length, 500);
    assert.ok(
      armPages.slice(0, -1).every((n) => n === 7),
      `page sizes ${armPages.join(",")}`,
    );
    const byPrefix = await ec2.send(new DescribeImagesCommand({ Filters: [{ Name: "name", Values: ["app-x86-000*", "app-arm-0001"] }] }));
    assert.deepEqual(byPrefix.Images!.map((i) => i.Name).sort(), [
      "app-arm-0001",
      "app-x86-0000",
      "app-x86-0002",
      "app-x86-0004",
      "app-x86-0006",
      "app-x86-0008",
    ]);
  });
});

describe("DeregisterImage", () => {
  it("keeps an image's snapshots in use until it is deregistered, and can delete them with it", async () => {
    const snapshotId = await rootSnapshot();
    const { ImageId } = await register(snapshotId);
    assert.equal(await errorName(ec2.send(new DeleteSnapshotCommand({ SnapshotId: snapshotId }))), "InvalidSnapshot.InUse");
    const result = await ec2.send(new DeregisterImageCommand({ ImageId, DeleteAssociatedSnapshots: true }));
    assert.equal(result.Return, true);
    assert.deepEqual(result.DeleteSnapshotResults, [{ SnapshotId: snapshotId, ReturnCode: "success" }]);
    assert.equal(await errorName(ec2.send(new DescribeImagesCommand({ ImageIds: [ImageId!] }))), "InvalidAMIID.NotFound");
    assert.equal(await errorName(ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [snapshotId] }))), "InvalidSnapshot.NotFound");
    assert.equal(await errorName(ec2.send(new DeregisterImageCommand({ ImageId }))), "InvalidAMIID.NotFound");
  });

  it("leaves a snapshot another image still uses", async () => {
    const snapshotId = await rootSnapshot();
    const first = await register(snapshotId, { Name: "first" });
    await register(snapshotId, { Name: "second" });
    const result = await ec2.send(new DeregisterImageCommand({ ImageId: first.ImageId, DeleteAssociatedSnapshots: true }));
    assert.deepEqual(result.DeleteSnapshotResults, [{ SnapshotId: snapshotId, ReturnCode: "skipped" }]);
    assert.equal((await ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [snapshotId] }))).Snapshots!.length, 1);
  });
});
