// DryRun over every served EC2 action the model gives a DryRun member: each request, valid but
// for DryRun, answers DryRunOperation (or the error its checks find), and the metadata store is
// row for row what it was before. The table must name every such action, so a new action joins
// it or this test fails.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import * as Ec2 from "@aws-sdk/client-ec2";
import { CreateBucketCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { ec2Actions } from "../src/api/ec2/index.js";
import { ec2Model } from "../src/protocol/model.js";
import { STATE_TABLES } from "../src/store/meta/schema.js";
import { startTestKiln, tempDir, type TestKiln } from "./helpers/kiln.js";

const BUCKET = "dry-run-bucket";
const DISK_KEY = "disk.raw";

/** What the fixtures made, for the table's requests. */
interface Made {
  zone: string;
  imageId: string;
  catalogueImageId: string;
  instanceId: string;
  freeVolumeId: string;
  attachedVolumeId: string;
  snapshotId: string;
  spareSnapshotId: string;
  keyName: string;
  publicKey: Uint8Array;
  groupId: string;
  spareGroupId: string;
  vpcA: string;
  subnetA: string;
  igwA: string;
  vpcB: string;
  igwB: string;
  vpcC: string;
  storedKey: string;
  importTaskId: string;
}

type Request = { params: Record<string, unknown>; expect?: string };

/** Each action's request, valid but for DryRun; `expect` when its checks refuse it for a reason of state. */
const table = (m: Made): Record<string, Request> => ({
  DescribeRegions: { params: {} },
  DescribeAvailabilityZones: { params: {} },
  DescribeAccountAttributes: { params: {} },
  CreateTags: { params: { Resources: [m.freeVolumeId], Tags: [{ Key: "k", Value: "v" }] } },
  DeleteTags: { params: { Resources: [m.freeVolumeId] } },
  DescribeTags: { params: {} },
  CreateSnapshot: { params: { VolumeId: m.freeVolumeId } },
  DescribeSnapshots: { params: {} },
  DeleteSnapshot: { params: { SnapshotId: m.spareSnapshotId } },
  AttachVolume: { params: { VolumeId: m.freeVolumeId, InstanceId: m.instanceId, Device: "/dev/sdg" } },
  DetachVolume: { params: { VolumeId: m.attachedVolumeId } },
  CreateVolume: { params: { AvailabilityZone: m.zone, Size: 1 } },
  DescribeVolumes: { params: {} },
  DeleteVolume: { params: { VolumeId: m.freeVolumeId } },
  RegisterImage: { params: { Name: "dry-register", RootDeviceName: "/dev/xvda", BlockDeviceMappings: [{ DeviceName: "/dev/xvda", Ebs: { SnapshotId: m.spareSnapshotId } }] } },
  DescribeImages: { params: { Owners: ["self"] } },
  DeregisterImage: { params: { ImageId: m.imageId } },
  RunInstances: { params: { ImageId: m.catalogueImageId, MinCount: 1, MaxCount: 1, InstanceType: "t3.micro" } },
  DescribeInstances: { params: {} },
  StopInstances: { params: { InstanceIds: [m.instanceId] } },
  StartInstances: { params: { InstanceIds: [m.instanceId] } },
  RebootInstances: { params: { InstanceIds: [m.instanceId] } },
  TerminateInstances: { params: { InstanceIds: [m.instanceId] } },
  CreateImage: { params: { InstanceId: m.instanceId, Name: "dry-create-image" } },
  DescribeImageAttribute: { params: { ImageId: m.imageId, Attribute: "description" } },
  ModifyImageAttribute: { params: { ImageId: m.imageId, Description: { Value: "changed" } } },
  ResetImageAttribute: { params: { ImageId: m.imageId, Attribute: "launchPermission" } },
  CopySnapshot: { params: { SourceSnapshotId: m.snapshotId, SourceRegion: "us-east-1" } },
  CopyImage: { params: { SourceImageId: m.imageId, SourceRegion: "us-east-1", Name: "dry-copy" } },
  DescribeInstanceTypes: { params: {} },
  DescribeInstanceAttribute: { params: { InstanceId: m.instanceId, Attribute: "instanceType" } },
  ModifyInstanceAttribute: { params: { InstanceId: m.instanceId, DisableApiTermination: { Value: true } } },
  DescribeInstanceStatus: { params: {} },
  GetConsoleOutput: { params: { InstanceId: m.instanceId } },
  DescribeInstanceTypeOfferings: { params: {} },
  ModifyInstanceCreditSpecification: { params: { InstanceCreditSpecifications: [{ InstanceId: m.instanceId, CpuCredits: "unlimited" }] } },
  DescribeInstanceCreditSpecifications: { params: {} },
  GetInstanceUefiData: { params: { InstanceId: m.instanceId } },
  CreateStoreImageTask: { params: { ImageId: m.imageId, Bucket: BUCKET } },
  DescribeStoreImageTasks: { params: {} },
  CreateRestoreImageTask: { params: { Bucket: BUCKET, ObjectKey: m.storedKey, Name: "dry-restore" } },
  ImportImage: { params: { DiskContainers: [{ Format: "raw", UserBucket: { S3Bucket: BUCKET, S3Key: DISK_KEY } }] } },
  ImportSnapshot: { params: { DiskContainer: { Format: "raw", UserBucket: { S3Bucket: BUCKET, S3Key: DISK_KEY } } } },
  DescribeImportImageTasks: { params: {} },
  DescribeImportSnapshotTasks: { params: {} },
  // Only an active task can be cancelled, and an import here completes in moments: the check
  // that refuses a completed one runs on DryRun too.
  CancelImportTask: { params: { ImportTaskId: m.importTaskId }, expect: "IncorrectState" },
  ExportImage: { params: { ImageId: m.imageId, DiskImageFormat: "RAW", S3ExportLocation: { S3Bucket: BUCKET } } },
  DescribeExportImageTasks: { params: {} },
  CreateKeyPair: { params: { KeyName: "dry-new-key" } },
  ImportKeyPair: { params: { KeyName: "dry-imported-key", PublicKeyMaterial: m.publicKey } },
  DescribeKeyPairs: { params: {} },
  DeleteKeyPair: { params: { KeyName: m.keyName } },
  DescribeVpcs: { params: {} },
  CreateVpc: { params: { CidrBlock: "10.30.0.0/16" } },
  // The account's default VPC exists (the fixtures used it), which the check refuses.
  CreateDefaultVpc: { params: {}, expect: "DefaultVpcAlreadyExists" },
  DeleteVpc: { params: { VpcId: m.vpcC } },
  DescribeVpcAttribute: { params: { VpcId: m.vpcA, Attribute: "enableDnsSupport" } },
  DescribeSubnets: { params: {} },
  CreateSubnet: { params: { VpcId: m.vpcA, CidrBlock: "10.9.2.0/24" } },
  DeleteSubnet: { params: { SubnetId: m.subnetA } },
  DescribeInternetGateways: { params: {} },
  CreateInternetGateway: { params: {} },
  AttachInternetGateway: { params: { InternetGatewayId: m.igwB, VpcId: m.vpcB } },
  DetachInternetGateway: { params: { InternetGatewayId: m.igwA, VpcId: m.vpcA } },
  DeleteInternetGateway: { params: { InternetGatewayId: m.igwB } },
  DescribeRouteTables: { params: {} },
  DescribeNetworkInterfaces: { params: {} },
  CreateSecurityGroup: { params: { GroupName: "dry-new-group", Description: "made on DryRun?" } },
  DescribeSecurityGroups: { params: {} },
  DescribeSecurityGroupRules: { params: {} },
  AuthorizeSecurityGroupIngress: { params: { GroupId: m.groupId, IpPermissions: [{ IpProtocol: "tcp", FromPort: 22, ToPort: 22, IpRanges: [{ CidrIp: "10.0.0.0/8" }] }] } },
  AuthorizeSecurityGroupEgress: { params: { GroupId: m.groupId, IpPermissions: [{ IpProtocol: "tcp", FromPort: 443, ToPort: 443, IpRanges: [{ CidrIp: "10.0.0.0/8" }] }] } },
  RevokeSecurityGroupIngress: { params: { GroupId: m.groupId, IpPermissions: [{ IpProtocol: "tcp", FromPort: 80, ToPort: 80, IpRanges: [{ CidrIp: "10.0.0.0/8" }] }] } },
  RevokeSecurityGroupEgress: { params: { GroupId: m.groupId, IpPermissions: [{ IpProtocol: "-1", IpRanges: [{ CidrIp: "0.0.0.0/0" }] }] } },
  DeleteSecurityGroup: { params: { GroupId: m.spareGroupId } },
});

/** Every row of every table a request can change, as text: two dumps are equal when nothing changed. */
async function dump(kiln: TestKiln): Promise<string> {
  const tables: Record<string, string[]> = {};
  for (const table of STATE_TABLES) {
    const rows = await kiln.kiln.meta.db.selectFrom(table).selectAll().execute();
    tables[table] = rows.map((row) => JSON.stringify(row)).sort();
  }
  return JSON.stringify(tables, null, 1);
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, deadlineMs = 60_000): Promise<T> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${deadlineMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

// biome-ignore lint/suspicious/noExplicitAny: each command class takes its own input; the table's params are checked by Kiln, not here.
const commandOf = (action: string) => (Ec2 as unknown as Record<string, new (input: any) => Ec2.EC2Client extends { send(command: infer C): unknown } ? C : never>)[`${action}Command`];

describe("DryRun on every served action", () => {
  let kiln: TestKiln;
  let ec2: Ec2.EC2Client;
  let made: Made;

  before(async () => {
    kiln = await startTestKiln();
    ec2 = kiln.ec2();
    const s3 = kiln.s3();
    await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: DISK_KEY, Body: Buffer.alloc(1024 * 1024, 7) }));

    const zone = (await ec2.send(new Ec2.DescribeAvailabilityZonesCommand({}))).AvailabilityZones![0]!.ZoneName!;
    const catalogue = (await ec2.send(new Ec2.DescribeImagesCommand({ Owners: ["amazon"], Filters: [{ Name: "name", Values: ["al2023-ami-2023.*-x86_64"] }] }))).Images!;
    const catalogueImageId = catalogue[0]!.ImageId!;
    const keyName = (await ec2.send(new Ec2.CreateKeyPairCommand({ KeyName: "dry-key", KeyType: "ed25519" }))).KeyName!;
    const keyFile = join(tempDir(), "key");
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", keyFile]);
    const publicKey = readFileSync(`${keyFile}.pub`);
    const groupId = (await ec2.send(new Ec2.CreateSecurityGroupCommand({ GroupName: "dry-group", Description: "DryRun fixtures" }))).GroupId!;
    const spareGroupId = (await ec2.send(new Ec2.CreateSecurityGroupCommand({ GroupName: "dry-spare", Description: "DryRun fixtures" }))).GroupId!;
    await ec2.send(
      new Ec2.AuthorizeSecurityGroupIngressCommand({ GroupId: groupId, IpPermissions: [{ IpProtocol: "tcp", FromPort: 80, ToPort: 80, IpRanges: [{ CidrIp: "10.0.0.0/8" }] }] }),
    );

    const vpcA = (await ec2.send(new Ec2.CreateVpcCommand({ CidrBlock: "10.9.0.0/16" }))).Vpc!.VpcId!;
    const subnetA = (await ec2.send(new Ec2.CreateSubnetCommand({ VpcId: vpcA, CidrBlock: "10.9.1.0/24" }))).Subnet!.SubnetId!;
    const igwA = (await ec2.send(new Ec2.CreateInternetGatewayCommand({}))).InternetGateway!.InternetGatewayId!;
    await ec2.send(new Ec2.AttachInternetGatewayCommand({ InternetGatewayId: igwA, VpcId: vpcA }));
    const vpcB = (await ec2.send(new Ec2.CreateVpcCommand({ CidrBlock: "10.10.0.0/16" }))).Vpc!.VpcId!;
    const igwB = (await ec2.send(new Ec2.CreateInternetGatewayCommand({}))).InternetGateway!.InternetGatewayId!;
    const vpcC = (await ec2.send(new Ec2.CreateVpcCommand({ CidrBlock: "10.11.0.0/16" }))).Vpc!.VpcId!;

    const instance = (await ec2.send(new Ec2.RunInstancesCommand({ ImageId: catalogueImageId, MinCount: 1, MaxCount: 1, InstanceType: "t3.micro", KeyName: keyName, SecurityGroupIds: [groupId] })))
      .Instances![0]!;
    const instanceId = instance.InstanceId!;
    const instanceZone = instance.Placement!.AvailabilityZone!;
    const freeVolumeId = (await ec2.send(new Ec2.CreateVolumeCommand({ AvailabilityZone: instanceZone, Size: 1 }))).VolumeId!;
    const attachedVolumeId = (await ec2.send(new Ec2.CreateVolumeCommand({ AvailabilityZone: instanceZone, Size: 1 }))).VolumeId!;
    await ec2.send(new Ec2.AttachVolumeCommand({ VolumeId: attachedVolumeId, InstanceId: instanceId, Device: "/dev/sdf" }));
    const snapshotId = (await ec2.send(new Ec2.CreateSnapshotCommand({ VolumeId: freeVolumeId }))).SnapshotId!;
    const spareSnapshotId = (await ec2.send(new Ec2.CreateSnapshotCommand({ VolumeId: freeVolumeId }))).SnapshotId!;
    const imageId = (await ec2.send(new Ec2.CreateImageCommand({ InstanceId: instanceId, Name: "dry-image", NoReboot: true }))).ImageId!;

    const storedKey = (await ec2.send(new Ec2.CreateStoreImageTaskCommand({ ImageId: imageId, Bucket: BUCKET }))).ObjectKey!;
    await until("the store task's completion", async () => {
      const [task] = (await ec2.send(new Ec2.DescribeStoreImageTasksCommand({ ImageIds: [imageId] }))).StoreImageTaskResults ?? [];
      assert.notEqual(task?.StoreTaskState, "Failed", task?.StoreTaskFailureReason);
      return task?.StoreTaskState === "Completed" ? true : undefined;
    });
    const importTaskId = (await ec2.send(new Ec2.ImportSnapshotCommand({ DiskContainer: { Format: "raw", UserBucket: { S3Bucket: BUCKET, S3Key: DISK_KEY } } }))).ImportTaskId!;
    await until("the import's completion", async () => {
      const [task] = (await ec2.send(new Ec2.DescribeImportSnapshotTasksCommand({ ImportTaskIds: [importTaskId] }))).ImportSnapshotTasks ?? [];
      return task?.SnapshotTaskDetail?.Status === "completed" ? true : undefined;
    });

    made = {
      zone,
      imageId,
      catalogueImageId,
      instanceId,
      freeVolumeId,
      attachedVolumeId,
      snapshotId,
      spareSnapshotId,
      keyName,
      publicKey,
      groupId,
      spareGroupId,
      vpcA,
      subnetA,
      igwA,
      vpcB,
      igwB,
      vpcC,
      storedKey,
      importTaskId,
    };
  });

  after(() => kiln?.close());

  it("names every served action whose request has DryRun, and no other", () => {
    const model = ec2Model();
    const withDryRun = [...ec2Actions(model).keys()].filter((name) => model.operations.get(name)?.input?.members.some((m) => m.name === "DryRun"));
    assert.ok(withDryRun.length >= 70, `only ${withDryRun.length} served actions with DryRun`);
    assert.deepEqual(Object.keys(table(made)).sort(), withDryRun.sort());
  });

  it("answers DryRunOperation (or what the checks find) and changes no row", async () => {
    const before = await dump(kiln);
    const answers: string[] = [];
    for (const [action, request] of Object.entries(table(made))) {
      const Command = commandOf(action);
      assert.ok(Command, `the client has no ${action}Command`);
      const answer = await ec2.send(new Command({ ...request.params, DryRun: true })).then(
        () => "succeeded",
        (error: Error) => error.name,
      );
      answers.push(`${action}: ${answer}`);
      assert.equal(await dump(kiln), before, `${action} with DryRun changed the store`);
    }
    assert.deepEqual(
      answers,
      Object.entries(table(made)).map(([action, request]) => `${action}: ${request.expect ?? "DryRunOperation"}`),
    );
  });
});
