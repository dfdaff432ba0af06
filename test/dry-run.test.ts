// DryRun over every EC2 action Kiln serves whose input has a DryRun member: each gets a request
// that would succeed (against resources made for it), sent with DryRun set, and must answer
// DryRunOperation (or, where noted, the error its checks give first) and leave the account as it
// was: every metadata table and the data home read the same before and after. A served action
// with DryRun that this table leaves out fails the test, so a new action cannot skip it.
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import * as EC2 from "@aws-sdk/client-ec2";
import { CreateBucketCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { STATE_TABLES } from "../src/store/meta/schema.js";
import { ec2Model } from "../src/protocol/model.js";
import { ec2Actions } from "../src/api/ec2/index.js";
import { BLOCK, writeSnapshot } from "./helpers/data.js";
import { makeDataDisk } from "./helpers/disks.js";
import { startTestKiln, type TestKiln } from "./helpers/kiln.js";
import { storedBlobs, storedChunkFiles } from "./helpers/storage.js";
import { scratch } from "./helpers/tools.js";

let kiln: TestKiln;
let ec2: EC2.EC2Client;

/** The resources the requests name, made in `before`. */
const r = {} as {
  vpc: string;
  emptyVpc: string;
  subnet: string;
  gateway: string;
  attachedGateway: string;
  group: string;
  ruledGroup: string;
  keyName: string;
  volume: string;
  attachedVolume: string;
  snapshot: string;
  spareSnapshot: string;
  image: string;
  instance: string;
  importTask: string;
};

async function until<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** An OpenSSH ed25519 public key line, made here. */
function sshPublicKey(): string {
  const { publicKey } = generateKeyPairSync("ed25519");
  const raw = publicKey.export({ format: "der", type: "spki" }).subarray(-32);
  const field = (bytes: Buffer) => Buffer.concat([Buffer.from([0, 0, 0, bytes.length]), bytes]);
  return `ssh-ed25519 ${Buffer.concat([field(Buffer.from("ssh-ed25519")), field(raw)]).toString("base64")} dry@run`;
}

before(async () => {
  kiln = await startTestKiln();
  ec2 = kiln.ec2();
  const s3 = kiln.s3();
  await s3.send(new CreateBucketCommand({ Bucket: "dry" }));
  await s3.send(new PutObjectCommand({ Bucket: "dry", Key: "disk.raw", Body: readFileSync(await makeDataDisk(scratch())) }));

  r.vpc = (await ec2.send(new EC2.CreateVpcCommand({ CidrBlock: "10.1.0.0/16" }))).Vpc!.VpcId!;
  r.emptyVpc = (await ec2.send(new EC2.CreateVpcCommand({ CidrBlock: "10.2.0.0/16" }))).Vpc!.VpcId!;
  r.subnet = (await ec2.send(new EC2.CreateSubnetCommand({ VpcId: r.vpc, CidrBlock: "10.1.1.0/24" }))).Subnet!.SubnetId!;
  r.gateway = (await ec2.send(new EC2.CreateInternetGatewayCommand({}))).InternetGateway!.InternetGatewayId!;
  r.attachedGateway = (await ec2.send(new EC2.CreateInternetGatewayCommand({}))).InternetGateway!.InternetGatewayId!;
  await ec2.send(new EC2.AttachInternetGatewayCommand({ InternetGatewayId: r.attachedGateway, VpcId: r.vpc }));
  r.group = (await ec2.send(new EC2.CreateSecurityGroupCommand({ GroupName: "dry-plain", Description: "plain", VpcId: r.vpc }))).GroupId!;
  r.ruledGroup = (await ec2.send(new EC2.CreateSecurityGroupCommand({ GroupName: "dry-ruled", Description: "ruled", VpcId: r.vpc }))).GroupId!;
  await ec2.send(new EC2.AuthorizeSecurityGroupIngressCommand({ GroupId: r.ruledGroup, IpPermissions: [ssh("10.9.0.0/16")] }));
  await ec2.send(new EC2.AuthorizeSecurityGroupEgressCommand({ GroupId: r.ruledGroup, IpPermissions: [ssh("10.9.0.0/16")] }));
  r.keyName = (await ec2.send(new EC2.CreateKeyPairCommand({ KeyName: "dry-key" }))).KeyName!;

  r.snapshot = await writeSnapshot(kiln, new Map([[0, Buffer.alloc(BLOCK, 7)]]));
  r.spareSnapshot = await writeSnapshot(kiln, new Map([[1, Buffer.alloc(BLOCK, 8)]]));
  r.image = (
    await ec2.send(
      new EC2.RegisterImageCommand({
        Name: "dry-image",
        RootDeviceName: "/dev/xvda",
        Architecture: "x86_64",
        VirtualizationType: "hvm",
        BlockDeviceMappings: [{ DeviceName: "/dev/xvda", Ebs: { SnapshotId: r.snapshot } }],
      }),
    )
  ).ImageId!;
  await until("the image", async () =>
    (await ec2.send(new EC2.DescribeImagesCommand({ ImageIds: [r.image] }))).Images![0]!.State === "available" ? true : undefined,
  );
  r.instance = (await ec2.send(new EC2.RunInstancesCommand({ ImageId: r.image, MinCount: 1, MaxCount: 1 }))).Instances![0]!.InstanceId!;
  await EC2.waitUntilInstanceRunning({ client: ec2, minDelay: 1, maxWaitTime: 60 }, { InstanceIds: [r.instance] });
  r.volume = (await ec2.send(new EC2.CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 1 }))).VolumeId!;
  r.attachedVolume = (await ec2.send(new EC2.CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 1 }))).VolumeId!;
  await EC2.waitUntilVolumeAvailable({ client: ec2, minDelay: 1, maxWaitTime: 60 }, { VolumeIds: [r.volume, r.attachedVolume] });
  await ec2.send(new EC2.AttachVolumeCommand({ VolumeId: r.attachedVolume, InstanceId: r.instance, Device: "/dev/sdh" }));

  // A stored image (for CreateRestoreImageTask) and a finished import (for CancelImportTask):
  // their tasks are over before the state is read, so no task changes it meanwhile.
  await ec2.send(new EC2.CreateStoreImageTaskCommand({ ImageId: r.image, Bucket: "dry" }));
  await until("the store task", async () => {
    const task = (await ec2.send(new EC2.DescribeStoreImageTasksCommand({ ImageIds: [r.image] }))).StoreImageTaskResults![0]!;
    if (task.StoreTaskState === "InProgress") return undefined;
    assert.equal(task.StoreTaskState, "Completed", task.StoreTaskFailureReason);
    return task;
  });
  r.importTask = (await ec2.send(new EC2.ImportSnapshotCommand({ DiskContainer: { Format: "RAW", Url: "s3://dry/disk.raw" } }))).ImportTaskId!;
  await until("the import", async () => {
    const detail = (await ec2.send(new EC2.DescribeImportSnapshotTasksCommand({ ImportTaskIds: [r.importTask] }))).ImportSnapshotTasks![0]!.SnapshotTaskDetail!;
    if (detail.Status === "active") return undefined;
    assert.equal(detail.Status, "completed", detail.StatusMessage);
    return detail;
  });
});
after(() => kiln.close());

const ssh = (cidr: string): EC2.IpPermission => ({ IpProtocol: "tcp", FromPort: 22, ToPort: 22, IpRanges: [{ CidrIp: cidr }] });

interface Case {
  /** The request, less DryRun. */
  input: () => Record<string, unknown>;
  /** The error the dry run must answer: DryRunOperation unless said. */
  expect?: string;
}

/** Every served action with a DryRun member, and a request for it that would succeed. */
const cases: Record<string, Case> = {
  AttachInternetGateway: { input: () => ({ InternetGatewayId: r.gateway, VpcId: r.emptyVpc }) },
  AttachVolume: { input: () => ({ VolumeId: r.volume, InstanceId: r.instance, Device: "/dev/sdj" }) },
  AuthorizeSecurityGroupEgress: { input: () => ({ GroupId: r.group, IpPermissions: [ssh("10.3.0.0/16")] }) },
  AuthorizeSecurityGroupIngress: { input: () => ({ GroupId: r.group, IpPermissions: [ssh("10.3.0.0/16")] }) },
  // Only an active import can be cancelled, and an active one changes the state by itself: the
  // finished import's state error comes before DryRun.
  CancelImportTask: { input: () => ({ ImportTaskId: r.importTask }), expect: "IncorrectState" },
  CopyImage: { input: () => ({ Name: "dry-copy", SourceImageId: r.image, SourceRegion: "us-east-1" }) },
  CopySnapshot: { input: () => ({ SourceSnapshotId: r.snapshot, SourceRegion: "us-east-1" }) },
  // Every account has its default VPC already.
  CreateDefaultVpc: { input: () => ({}), expect: "DefaultVpcAlreadyExists" },
  CreateImage: { input: () => ({ InstanceId: r.instance, Name: "dry-create" }) },
  CreateInternetGateway: { input: () => ({}) },
  CreateKeyPair: { input: () => ({ KeyName: "dry-new-key" }) },
  CreateRestoreImageTask: { input: () => ({ Bucket: "dry", ObjectKey: `${r.image}.bin`, Name: "dry-restored" }) },
  CreateSecurityGroup: { input: () => ({ GroupName: "dry-new-group", Description: "new", VpcId: r.vpc }) },
  CreateSnapshot: { input: () => ({ VolumeId: r.volume }) },
  CreateStoreImageTask: { input: () => ({ ImageId: r.image, Bucket: "dry" }) },
  CreateSubnet: { input: () => ({ VpcId: r.vpc, CidrBlock: "10.1.2.0/24" }) },
  CreateTags: { input: () => ({ Resources: [r.volume], Tags: [{ Key: "dry", Value: "run" }] }) },
  CreateVolume: { input: () => ({ AvailabilityZone: "us-east-1a", Size: 1 }) },
  CreateVpc: { input: () => ({ CidrBlock: "10.4.0.0/16" }) },
  DeleteInternetGateway: { input: () => ({ InternetGatewayId: r.gateway }) },
  DeleteKeyPair: { input: () => ({ KeyName: r.keyName }) },
  DeleteSecurityGroup: { input: () => ({ GroupId: r.group }) },
  DeleteSnapshot: { input: () => ({ SnapshotId: r.spareSnapshot }) },
  DeleteSubnet: { input: () => ({ SubnetId: r.subnet }) },
  DeleteTags: { input: () => ({ Resources: [r.volume] }) },
  DeleteVolume: { input: () => ({ VolumeId: r.volume }) },
  DeleteVpc: { input: () => ({ VpcId: r.emptyVpc }) },
  DeregisterImage: { input: () => ({ ImageId: r.image }) },
  DescribeAccountAttributes: { input: () => ({}) },
  DescribeAvailabilityZones: { input: () => ({}) },
  DescribeExportImageTasks: { input: () => ({}) },
  DescribeImageAttribute: { input: () => ({ ImageId: r.image, Attribute: "description" }) },
  DescribeImages: { input: () => ({}) },
  DescribeImportImageTasks: { input: () => ({}) },
  DescribeImportSnapshotTasks: { input: () => ({}) },
  DescribeInstanceAttribute: { input: () => ({ InstanceId: r.instance, Attribute: "instanceType" }) },
  DescribeInstanceCreditSpecifications: { input: () => ({}) },
  DescribeInstanceStatus: { input: () => ({}) },
  DescribeInstanceTypeOfferings: { input: () => ({}) },
  DescribeInstanceTypes: { input: () => ({}) },
  DescribeInstances: { input: () => ({}) },
  DescribeInternetGateways: { input: () => ({}) },
  DescribeKeyPairs: { input: () => ({}) },
  DescribeNetworkInterfaces: { input: () => ({}) },
  DescribeRegions: { input: () => ({}) },
  DescribeRouteTables: { input: () => ({}) },
  DescribeSecurityGroupRules: { input: () => ({}) },
  DescribeSecurityGroups: { input: () => ({}) },
  DescribeSnapshots: { input: () => ({}) },
  DescribeStoreImageTasks: { input: () => ({}) },
  DescribeSubnets: { input: () => ({}) },
  DescribeTags: { input: () => ({}) },
  DescribeVolumes: { input: () => ({}) },
  DescribeVpcAttribute: { input: () => ({ VpcId: r.vpc, Attribute: "enableDnsSupport" }) },
  DescribeVpcs: { input: () => ({}) },
  DetachInternetGateway: { input: () => ({ InternetGatewayId: r.attachedGateway, VpcId: r.vpc }) },
  DetachVolume: { input: () => ({ VolumeId: r.attachedVolume }) },
  ExportImage: { input: () => ({ ImageId: r.image, DiskImageFormat: "RAW", S3ExportLocation: { S3Bucket: "dry", S3Prefix: "exports/" } }) },
  GetConsoleOutput: { input: () => ({ InstanceId: r.instance }) },
  GetConsoleScreenshot: { input: () => ({ InstanceId: r.instance }) },
  GetInstanceUefiData: { input: () => ({ InstanceId: r.instance }) },
  ImportImage: { input: () => ({ DiskContainers: [{ Format: "RAW", Url: "s3://dry/disk.raw" }] }) },
  ImportKeyPair: { input: () => ({ KeyName: "dry-imported", PublicKeyMaterial: Buffer.from(sshPublicKey()) }) },
  ImportSnapshot: { input: () => ({ DiskContainer: { Format: "RAW", Url: "s3://dry/disk.raw" } }) },
  ModifyImageAttribute: { input: () => ({ ImageId: r.image, Description: { Value: "changed" } }) },
  ModifyInstanceAttribute: { input: () => ({ InstanceId: r.instance, DisableApiTermination: { Value: true } }) },
  ModifyInstanceCreditSpecification: { input: () => ({ InstanceCreditSpecifications: [{ InstanceId: r.instance, CpuCredits: "unlimited" }] }) },
  ModifyInstanceMetadataOptions: { input: () => ({ InstanceId: r.instance, HttpTokens: "required", HttpPutResponseHopLimit: 3 }) },
  RebootInstances: { input: () => ({ InstanceIds: [r.instance] }) },
  RegisterImage: {
    input: () => ({
      Name: "dry-registered",
      RootDeviceName: "/dev/xvda",
      BlockDeviceMappings: [{ DeviceName: "/dev/xvda", Ebs: { SnapshotId: r.spareSnapshot } }],
    }),
  },
  ResetImageAttribute: { input: () => ({ ImageId: r.image, Attribute: "launchPermission" }) },
  RevokeSecurityGroupEgress: { input: () => ({ GroupId: r.ruledGroup, IpPermissions: [ssh("10.9.0.0/16")] }) },
  RevokeSecurityGroupIngress: { input: () => ({ GroupId: r.ruledGroup, IpPermissions: [ssh("10.9.0.0/16")] }) },
  RunInstances: { input: () => ({ ImageId: r.image, MinCount: 1, MaxCount: 1 }) },
  StartInstances: { input: () => ({ InstanceIds: [r.instance] }) },
  StopInstances: { input: () => ({ InstanceIds: [r.instance] }) },
  TerminateInstances: { input: () => ({ InstanceIds: [r.instance] }) },
};

/** Every metadata table's rows (in a stable order), and what the data home holds. */
async function accountState(): Promise<Record<string, unknown>> {
  const state: Record<string, unknown> = {};
  for (const table of STATE_TABLES) {
    const rows = await kiln.kiln.meta.db.selectFrom(table).selectAll().execute();
    state[table] = rows.map((row) => JSON.stringify(row, (_, value: unknown) => (typeof value === "bigint" ? value.toString() : value))).sort();
  }
  state.blobs = await storedBlobs(kiln);
  state.chunkFiles = await storedChunkFiles(kiln);
  return state;
}

describe("DryRun", () => {
  it("covers every served action whose input has DryRun", () => {
    const model = ec2Model();
    const served = [...ec2Actions(model).keys()].filter((name) => model.operations.get(name)!.input?.members.some((m) => m.name === "DryRun")).sort();
    assert.ok(served.length > 50, `only ${served.length} served actions take DryRun`);
    assert.deepEqual(Object.keys(cases).sort(), served);
  });

  for (const [action, { input, expect = "DryRunOperation" }] of Object.entries(cases)) {
    it(`${action} with DryRun answers ${expect} and changes nothing`, async () => {
      const Command = (EC2 as unknown as Record<string, new (input: object) => EC2.EC2Client["send"] extends (command: infer C) => unknown ? C : never>)[
        `${action}Command`
      ];
      assert.ok(Command, `the SDK has no ${action}Command`);
      const before = await accountState();
      let outcome: { name: string; status?: number; message?: string };
      try {
        await ec2.send(new Command({ ...input(), DryRun: true }));
        outcome = { name: "succeeded" };
      } catch (error) {
        const failure = error as { name: string; message: string; $metadata?: { httpStatusCode?: number } };
        outcome = { name: failure.name, status: failure.$metadata?.httpStatusCode, message: failure.message };
      }
      assert.equal(outcome.name, expect, `${action}: ${outcome.message ?? ""}`);
      if (expect === "DryRunOperation") assert.equal(outcome.status, 412);
      assert.deepEqual(await accountState(), before, `${action} with DryRun changed the account's state`);
    });
  }
});
