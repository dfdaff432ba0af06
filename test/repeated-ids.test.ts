// A repeated id is one id: every action taking a list of ids (or names) answers, and acts on, a
// resource named twice exactly as if it were named once, and an error names a missing id once.
// One table row per action, through @aws-sdk/client-ec2.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  AuthorizeSecurityGroupIngressCommand,
  CreateInternetGatewayCommand,
  CreateKeyPairCommand,
  CreateSecurityGroupCommand,
  CreateStoreImageTaskCommand,
  CreateSubnetCommand,
  CreateTagsCommand,
  CreateVpcCommand,
  DeleteTagsCommand,
  DescribeAccountAttributesCommand,
  DescribeAvailabilityZonesCommand,
  DescribeExportImageTasksCommand,
  DescribeImageAttributeCommand,
  DescribeImagesCommand,
  DescribeImportImageTasksCommand,
  DescribeImportSnapshotTasksCommand,
  DescribeInstanceAttributeCommand,
  DescribeInstanceCreditSpecificationsCommand,
  DescribeInstancesCommand,
  DescribeInstanceStatusCommand,
  DescribeInstanceTypesCommand,
  DescribeInternetGatewaysCommand,
  DescribeKeyPairsCommand,
  DescribeNetworkInterfacesCommand,
  DescribeRegionsCommand,
  DescribeRouteTablesCommand,
  DescribeSecurityGroupRulesCommand,
  DescribeSecurityGroupsCommand,
  DescribeSnapshotsCommand,
  DescribeStoreImageTasksCommand,
  DescribeSubnetsCommand,
  DescribeTagsCommand,
  DescribeVolumesCommand,
  DescribeVpcsCommand,
  ExportImageCommand,
  ImportImageCommand,
  ImportSnapshotCommand,
  ModifyImageAttributeCommand,
  ModifyInstanceAttributeCommand,
  ModifyInstanceCreditSpecificationCommand,
  RebootInstancesCommand,
  RegisterImageCommand,
  RevokeSecurityGroupIngressCommand,
  RunInstancesCommand,
  StartInstancesCommand,
  StopInstancesCommand,
  TerminateInstancesCommand,
  type AccountAttributeName,
  type EC2Client,
  type _InstanceType,
} from "@aws-sdk/client-ec2";
import { CreateBucketCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { startTestKiln, type TestKiln } from "./helpers/kiln.js";
import { catalogueImage, createSnapshot, createVolumes, launchInstances } from "./helpers/resources.js";

let kiln: TestKiln;
let ec2: EC2Client;
const BUCKET = "repeated-ids";
const FRIEND = "111122223333";
type Kind =
  | "shown"
  | "cycled"
  | "ended"
  | "volume"
  | "tagged"
  | "snapshot"
  | "image"
  | "keyName"
  | "keyPair"
  | "groupName"
  | "group"
  | "rule"
  | "vpc"
  | "subnet"
  | "gateway"
  | "routeTable"
  | "networkInterface"
  | "importImage"
  | "importSnapshot"
  | "exportImage";
// One of each kind of resource, made in `before`.
const made = {} as Record<Kind, string>;

before(async () => {
  kiln = await startTestKiln();
  ec2 = kiln.ec2();
  // `shown` is described, `cycled` stopped, started and rebooted, `ended` terminated.
  const [shown, cycled, ended] = await launchInstances(ec2, 3);
  const [volume, tagged] = await createVolumes(ec2, 2);
  Object.assign(made, { shown, cycled, ended, volume, tagged, keyName: "repeated-ids", groupName: "repeated-ids" });
  made.snapshot = await createSnapshot(ec2);
  made.image = (
    await ec2.send(
      new RegisterImageCommand({
        Name: "repeated-ids",
        Architecture: "x86_64",
        VirtualizationType: "hvm",
        RootDeviceName: "/dev/xvda",
        BlockDeviceMappings: [{ DeviceName: "/dev/xvda", Ebs: { SnapshotId: made.snapshot } }],
      }),
    )
  ).ImageId!;
  made.keyPair = (await ec2.send(new CreateKeyPairCommand({ KeyName: made.keyName }))).KeyPairId!;
  made.group = (await ec2.send(new CreateSecurityGroupCommand({ GroupName: made.groupName, Description: "repeated ids" }))).GroupId!;
  const ssh = { IpProtocol: "tcp", FromPort: 22, ToPort: 22, IpRanges: [{ CidrIp: "10.0.0.0/8" }] };
  const authorized = await ec2.send(new AuthorizeSecurityGroupIngressCommand({ GroupId: made.group, IpPermissions: [ssh] }));
  made.rule = authorized.SecurityGroupRules![0]!.SecurityGroupRuleId!;
  made.vpc = (await ec2.send(new CreateVpcCommand({ CidrBlock: "10.20.0.0/16" }))).Vpc!.VpcId!;
  made.subnet = (await ec2.send(new CreateSubnetCommand({ VpcId: made.vpc, CidrBlock: "10.20.1.0/24" }))).Subnet!.SubnetId!;
  made.gateway = (await ec2.send(new CreateInternetGatewayCommand({}))).InternetGateway!.InternetGatewayId!;
  const tables = await ec2.send(new DescribeRouteTablesCommand({ Filters: [{ Name: "vpc-id", Values: [made.vpc] }] }));
  made.routeTable = tables.RouteTables![0]!.RouteTableId!;
  const instance = (await ec2.send(new DescribeInstancesCommand({ InstanceIds: [made.shown] }))).Reservations![0]!.Instances![0]!;
  made.networkInterface = instance.NetworkInterfaces![0]!.NetworkInterfaceId!;
  await ec2.send(new CreateTagsCommand({ Resources: [made.volume], Tags: [{ Key: "Name", Value: "repeated" }] }));

  const s3 = kiln.s3();
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "disk.raw", Body: Buffer.alloc(1024 * 1024) }));
  const disk = { Format: "RAW", UserBucket: { S3Bucket: BUCKET, S3Key: "disk.raw" } };
  made.importImage = (await ec2.send(new ImportImageCommand({ DiskContainers: [disk] }))).ImportTaskId!;
  made.importSnapshot = (await ec2.send(new ImportSnapshotCommand({ DiskContainer: disk }))).ImportTaskId!;
  const exported = await ec2.send(new ExportImageCommand({ ImageId: made.image, DiskImageFormat: "VMDK", S3ExportLocation: { S3Bucket: BUCKET } }));
  made.exportImage = exported.ExportImageTaskId!;
  await ec2.send(new CreateStoreImageTaskCommand({ ImageId: made.image, Bucket: BUCKET }));
});
after(() => kiln.close());

interface Listing {
  action: string;
  /** The id (or name) of what the row describes. */
  id: () => string;
  /** A well-formed id (or name) nothing has, when the action refuses one. */
  missing?: string;
  /** Calls the action with `ids`; the ids (or names) of the items it answers. */
  list: (ids: string[]) => Promise<(string | undefined)[]>;
}

const of = (kind: Kind) => () => made[kind];
const named = (name: string) => () => name;
const NONE = "0123456789abcdef0";

// One row per action (and per id list of an action).
const LISTINGS: Listing[] = [
  {
    action: "DescribeInstances",
    id: of("shown"),
    missing: `i-${NONE}`,
    list: async (InstanceIds) =>
      (await ec2.send(new DescribeInstancesCommand({ InstanceIds }))).Reservations!.flatMap((r) => r.Instances!.map((i) => i.InstanceId)),
  },
  {
    action: "DescribeInstanceStatus",
    id: of("shown"),
    missing: `i-${NONE}`,
    list: async (InstanceIds) =>
      (await ec2.send(new DescribeInstanceStatusCommand({ InstanceIds, IncludeAllInstances: true }))).InstanceStatuses!.map((s) => s.InstanceId),
  },
  {
    action: "DescribeInstanceCreditSpecifications",
    id: of("shown"),
    missing: `i-${NONE}`,
    list: async (InstanceIds) =>
      (await ec2.send(new DescribeInstanceCreditSpecificationsCommand({ InstanceIds }))).InstanceCreditSpecifications!.map((s) => s.InstanceId),
  },
  {
    action: "DescribeVolumes",
    id: of("volume"),
    missing: `vol-${NONE}`,
    list: async (VolumeIds) => (await ec2.send(new DescribeVolumesCommand({ VolumeIds }))).Volumes!.map((v) => v.VolumeId),
  },
  {
    action: "DescribeSnapshots",
    id: of("snapshot"),
    missing: `snap-${NONE}`,
    list: async (SnapshotIds) => (await ec2.send(new DescribeSnapshotsCommand({ SnapshotIds }))).Snapshots!.map((s) => s.SnapshotId),
  },
  {
    action: "DescribeImages",
    id: of("image"),
    missing: `ami-${NONE}`,
    list: async (ImageIds) => (await ec2.send(new DescribeImagesCommand({ ImageIds }))).Images!.map((i) => i.ImageId),
  },
  {
    action: "DescribeKeyPairs (ids)",
    id: of("keyPair"),
    missing: `key-${NONE}`,
    list: async (KeyPairIds) => (await ec2.send(new DescribeKeyPairsCommand({ KeyPairIds }))).KeyPairs!.map((k) => k.KeyPairId),
  },
  {
    action: "DescribeKeyPairs (names)",
    id: of("keyName"),
    missing: "no-such-key",
    list: async (KeyNames) => (await ec2.send(new DescribeKeyPairsCommand({ KeyNames }))).KeyPairs!.map((k) => k.KeyName),
  },
  {
    action: "DescribeSecurityGroups (ids)",
    id: of("group"),
    missing: `sg-${NONE}`,
    list: async (GroupIds) => (await ec2.send(new DescribeSecurityGroupsCommand({ GroupIds }))).SecurityGroups!.map((g) => g.GroupId),
  },
  {
    action: "DescribeSecurityGroups (names)",
    id: of("groupName"),
    missing: "no-such-group",
    list: async (GroupNames) => (await ec2.send(new DescribeSecurityGroupsCommand({ GroupNames }))).SecurityGroups!.map((g) => g.GroupName),
  },
  {
    action: "DescribeSecurityGroupRules",
    id: of("rule"),
    missing: `sgr-${NONE}`,
    list: async (SecurityGroupRuleIds) =>
      (await ec2.send(new DescribeSecurityGroupRulesCommand({ SecurityGroupRuleIds }))).SecurityGroupRules!.map((r) => r.SecurityGroupRuleId),
  },
  {
    action: "DescribeVpcs",
    id: of("vpc"),
    missing: `vpc-${NONE}`,
    list: async (VpcIds) => (await ec2.send(new DescribeVpcsCommand({ VpcIds }))).Vpcs!.map((v) => v.VpcId),
  },
  {
    action: "DescribeSubnets",
    id: of("subnet"),
    missing: `subnet-${NONE}`,
    list: async (SubnetIds) => (await ec2.send(new DescribeSubnetsCommand({ SubnetIds }))).Subnets!.map((s) => s.SubnetId),
  },
  {
    action: "DescribeInternetGateways",
    id: of("gateway"),
    missing: `igw-${NONE}`,
    list: async (InternetGatewayIds) =>
      (await ec2.send(new DescribeInternetGatewaysCommand({ InternetGatewayIds }))).InternetGateways!.map((g) => g.InternetGatewayId),
  },
  {
    action: "DescribeRouteTables",
    id: of("routeTable"),
    missing: `rtb-${NONE}`,
    list: async (RouteTableIds) => (await ec2.send(new DescribeRouteTablesCommand({ RouteTableIds }))).RouteTables!.map((t) => t.RouteTableId),
  },
  {
    action: "DescribeNetworkInterfaces",
    id: of("networkInterface"),
    missing: `eni-${NONE}`,
    list: async (NetworkInterfaceIds) =>
      (await ec2.send(new DescribeNetworkInterfacesCommand({ NetworkInterfaceIds }))).NetworkInterfaces!.map((n) => n.NetworkInterfaceId),
  },
  {
    action: "DescribeImportImageTasks",
    id: of("importImage"),
    missing: `import-ami-${NONE}`,
    list: async (ImportTaskIds) => (await ec2.send(new DescribeImportImageTasksCommand({ ImportTaskIds }))).ImportImageTasks!.map((t) => t.ImportTaskId),
  },
  {
    action: "DescribeImportSnapshotTasks",
    id: of("importSnapshot"),
    missing: `import-snap-${NONE}`,
    list: async (ImportTaskIds) => (await ec2.send(new DescribeImportSnapshotTasksCommand({ ImportTaskIds }))).ImportSnapshotTasks!.map((t) => t.ImportTaskId),
  },
  {
    action: "DescribeExportImageTasks",
    id: of("exportImage"),
    missing: `export-ami-${NONE}`,
    list: async (ExportImageTaskIds) =>
      (await ec2.send(new DescribeExportImageTasksCommand({ ExportImageTaskIds }))).ExportImageTasks!.map((t) => t.ExportImageTaskId),
  },
  {
    action: "DescribeStoreImageTasks",
    id: of("image"),
    list: async (ImageIds) => (await ec2.send(new DescribeStoreImageTasksCommand({ ImageIds }))).StoreImageTaskResults!.map((t) => t.AmiId),
  },
  {
    action: "DescribeTags (resource-id filter)",
    id: of("volume"),
    list: async (Values) => (await ec2.send(new DescribeTagsCommand({ Filters: [{ Name: "resource-id", Values }] }))).Tags!.map((t) => t.ResourceId),
  },
  {
    action: "DescribeAccountAttributes",
    id: named("default-vpc"),
    list: async (names) =>
      (await ec2.send(new DescribeAccountAttributesCommand({ AttributeNames: names as AccountAttributeName[] }))).AccountAttributes!.map(
        (a) => a.AttributeName,
      ),
  },
  {
    action: "DescribeRegions",
    id: named("us-east-1"),
    missing: "xx-nowhere-1",
    list: async (RegionNames) => (await ec2.send(new DescribeRegionsCommand({ RegionNames }))).Regions!.map((r) => r.RegionName),
  },
  {
    action: "DescribeAvailabilityZones (names)",
    id: named("us-east-1a"),
    list: async (ZoneNames) => (await ec2.send(new DescribeAvailabilityZonesCommand({ ZoneNames }))).AvailabilityZones!.map((z) => z.ZoneName),
  },
  {
    action: "DescribeAvailabilityZones (ids)",
    id: named("use1-az1"),
    list: async (ZoneIds) => (await ec2.send(new DescribeAvailabilityZonesCommand({ ZoneIds }))).AvailabilityZones!.map((z) => z.ZoneId),
  },
  {
    action: "DescribeInstanceTypes",
    id: named("t3.micro"),
    list: async (types) =>
      (await ec2.send(new DescribeInstanceTypesCommand({ InstanceTypes: types as _InstanceType[] }))).InstanceTypes!.map((t) => t.InstanceType),
  },
];

/** How often `text` occurs in `message`. */
const occurrences = (message: string, text: string) => message.split(text).length - 1;

describe("a Describe* action named the same id twice", () => {
  for (const row of LISTINGS) {
    it(`${row.action} answers it once`, async () => {
      const id = row.id();
      assert.deepEqual(await row.list([id, id]), [id]);
    });
    if (row.missing === undefined) continue;
    it(`${row.action} names a missing id once`, async () => {
      const missing = row.missing!;
      await assert.rejects(row.list([missing, row.id(), missing]), (error: Error) => {
        assert.equal(occurrences(error.message, missing), 1, error.message);
        return true;
      });
    });
  }
});

const stateOf = async (id: string) => (await ec2.send(new DescribeInstancesCommand({ InstanceIds: [id] }))).Reservations![0]!.Instances![0]!.State!.Name;
const tagsOf = async (id: string) =>
  ((await ec2.send(new DescribeTagsCommand({ Filters: [{ Name: "resource-id", Values: [id] }] }))).Tags ?? []).map((t) => `${t.Key}=${t.Value}`);
const groupsOf = async (InstanceId: string) =>
  (await ec2.send(new DescribeInstanceAttributeCommand({ InstanceId, Attribute: "groupSet" }))).Groups!.map((g) => g.GroupId);
const twice = (id: string) => [id, id];

interface Change {
  action: string;
  /** Calls the action with the resource named twice; the ids it reports changed, when it reports any. */
  act: () => Promise<(string | undefined)[] | undefined>;
  /** The id the action reports, when it reports one. */
  reports?: () => string;
  /** Reads what the action left, to compare with what `expected` gives. */
  read: () => Promise<unknown>;
  expected: () => unknown;
}

let launched: string[] = [];

// In order: each row may rely on the ones before it (the instance is stopped before it starts).
const CHANGES: Change[] = [
  {
    action: "StopInstances",
    reports: of("cycled"),
    read: () => stateOf(made.cycled),
    expected: () => "stopped",
    act: async () => (await ec2.send(new StopInstancesCommand({ InstanceIds: twice(made.cycled) }))).StoppingInstances!.map((c) => c.InstanceId),
  },
  {
    action: "StartInstances",
    reports: of("cycled"),
    read: () => stateOf(made.cycled),
    expected: () => "running",
    act: async () => (await ec2.send(new StartInstancesCommand({ InstanceIds: twice(made.cycled) }))).StartingInstances!.map((c) => c.InstanceId),
  },
  {
    action: "RebootInstances",
    read: () => stateOf(made.cycled),
    expected: () => "running",
    act: async () => void (await ec2.send(new RebootInstancesCommand({ InstanceIds: twice(made.cycled) }))),
  },
  {
    action: "TerminateInstances",
    reports: of("ended"),
    read: () => stateOf(made.ended),
    expected: () => "terminated",
    act: async () => (await ec2.send(new TerminateInstancesCommand({ InstanceIds: twice(made.ended) }))).TerminatingInstances!.map((c) => c.InstanceId),
  },
  {
    action: "CreateTags",
    read: () => tagsOf(made.tagged),
    expected: () => ["team=infra"],
    act: async () => void (await ec2.send(new CreateTagsCommand({ Resources: twice(made.tagged), Tags: [{ Key: "team", Value: "infra" }] }))),
  },
  {
    action: "DeleteTags",
    read: () => tagsOf(made.tagged),
    expected: () => [],
    act: async () => void (await ec2.send(new DeleteTagsCommand({ Resources: twice(made.tagged), Tags: [{ Key: "team" }] }))),
  },
  {
    action: "ModifyInstanceAttribute (Groups)",
    read: () => groupsOf(made.shown),
    expected: () => [made.group],
    act: async () => void (await ec2.send(new ModifyInstanceAttributeCommand({ InstanceId: made.shown, Groups: twice(made.group) }))),
  },
  {
    action: "RunInstances (SecurityGroupIds, SecurityGroups)",
    act: async () => {
      const launch = { ImageId: await catalogueImage(ec2), InstanceType: "t3.micro" as const, MinCount: 1, MaxCount: 1 };
      const byId = await ec2.send(new RunInstancesCommand({ ...launch, SecurityGroupIds: twice(made.group) }));
      const byName = await ec2.send(new RunInstancesCommand({ ...launch, SecurityGroups: twice(made.groupName) }));
      launched = [byId, byName].map((reservation) => reservation.Instances![0]!.InstanceId!);
    },
    read: () => Promise.all(launched.map(groupsOf)),
    expected: () => [[made.group], [made.group]],
  },
  {
    action: "ModifyInstanceCreditSpecification",
    reports: of("shown"),
    act: async () => {
      const spec = { InstanceId: made.shown, CpuCredits: "unlimited" };
      const modified = await ec2.send(new ModifyInstanceCreditSpecificationCommand({ InstanceCreditSpecifications: [spec, spec] }));
      return modified.SuccessfulInstanceCreditSpecifications!.map((s) => s.InstanceId);
    },
    read: async () =>
      (await ec2.send(new DescribeInstanceCreditSpecificationsCommand({ InstanceIds: [made.shown] }))).InstanceCreditSpecifications!.map((s) => s.CpuCredits),
    expected: () => ["unlimited"],
  },
  {
    action: "ModifyImageAttribute (UserIds)",
    act: async () => {
      await ec2.send(new ModifyImageAttributeCommand({ ImageId: made.image, Attribute: "launchPermission", OperationType: "add", UserIds: twice(FRIEND) }));
    },
    read: async () => (await ec2.send(new DescribeImageAttributeCommand({ ImageId: made.image, Attribute: "launchPermission" }))).LaunchPermissions,
    expected: () => [{ UserId: FRIEND }],
  },
  {
    action: "RevokeSecurityGroupIngress (SecurityGroupRuleIds)",
    reports: of("rule"),
    act: async () => {
      const revoked = await ec2.send(new RevokeSecurityGroupIngressCommand({ GroupId: made.group, SecurityGroupRuleIds: twice(made.rule) }));
      return revoked.RevokedSecurityGroupRules!.map((r) => r.SecurityGroupRuleId);
    },
    read: async () => {
      const rules = await ec2.send(new DescribeSecurityGroupRulesCommand({ Filters: [{ Name: "group-id", Values: [made.group] }] }));
      return rules.SecurityGroupRules!.filter((r) => !r.IsEgress).length;
    },
    expected: () => 0,
  },
];

describe("a state-changing action named the same resource twice", () => {
  for (const row of CHANGES) {
    it(`${row.action} acts once${row.reports ? " and reports it once" : ""}`, async () => {
      const reported = await row.act();
      if (row.reports) assert.deepEqual(reported, [row.reports()]);
      assert.deepEqual(await row.read(), row.expected());
    });
  }

  it("CreateTags over the tag limit names the resource once", async () => {
    const fifty = Array.from({ length: 50 }, (_, i) => ({ Key: `k${i}`, Value: "v" }));
    await ec2.send(new CreateTagsCommand({ Resources: [made.tagged], Tags: fifty }));
    const oneMore = ec2.send(new CreateTagsCommand({ Resources: twice(made.tagged), Tags: [{ Key: "one-more", Value: "v" }] }));
    await assert.rejects(oneMore, (error: Error) => {
      assert.equal(error.name, "TagLimitExceeded");
      assert.equal(occurrences(error.message, made.tagged), 1, error.message);
      return true;
    });
  });
});
