// What cannot succeed is refused before any work, with EC2's errors and bounds: the instance
// limit (InstanceLimitExceeded; MinCount must fit, up to MaxCount launched), a subnet's free
// addresses (InsufficientFreeAddressesInSubnet), the resources of one CreateTags
// (ResourceCountExceeded), filter values (FilterLimitExceeded); and the wildcard matcher that
// replaced a backtracking regular expression answers at once, and right.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  AuthorizeSecurityGroupIngressCommand,
  CreateSecurityGroupCommand,
  CreateSubnetCommand,
  CreateTagsCommand,
  CreateVpcCommand,
  DescribeImagesCommand,
  DescribeInstancesCommand,
  DescribeSubnetsCommand,
  DescribeTagsCommand,
  RunInstancesCommand,
  TerminateInstancesCommand,
  type EC2Client,
  type Instance,
} from "@aws-sdk/client-ec2";
import { startTestKiln, type TestKiln } from "./helpers/kiln.js";

const LIMIT = 20;

async function failure(promise: Promise<unknown>): Promise<{ name: string; message: string }> {
  try {
    await promise;
  } catch (error) {
    return error as { name: string; message: string };
  }
  throw new Error("expected the request to fail");
}

const templates = (count: number, from = 1) => Array.from({ length: count }, (_, i) => `lt-${(from + i).toString(16).padStart(17, "0")}`);

describe("limits refused up front", () => {
  let kiln: TestKiln;
  let ec2: EC2Client;
  let imageId: string;

  before(async () => {
    kiln = await startTestKiln({}, { KILN_MAX_INSTANCES: String(LIMIT) });
    ec2 = kiln.ec2();
    const images = await ec2.send(new DescribeImagesCommand({ Owners: ["amazon"], Filters: [{ Name: "architecture", Values: ["x86_64"] }] }));
    imageId = images.Images![0]!.ImageId!;
  });

  after(() => kiln.close());

  const launch = (input: { MinCount: number; MaxCount: number; SubnetId?: string }) =>
    ec2.send(new RunInstancesCommand({ ImageId: imageId, InstanceType: "t3.micro", ...input }));
  const liveInstances = async () =>
    ((await ec2.send(new DescribeInstancesCommand({}))).Reservations ?? [])
      .flatMap((r) => r.Instances ?? [])
      .filter((i) => i.State?.Name !== "terminated" && i.State?.Name !== "shutting-down");
  const terminate = (instances: readonly Instance[]) => ec2.send(new TerminateInstancesCommand({ InstanceIds: instances.map((i) => i.InstanceId!) }));

  it("launches up to MaxCount as far as the instance limit allows, and nothing when MinCount cannot fit", async () => {
    const tooMany = await failure(launch({ MinCount: LIMIT + 1, MaxCount: 100000 }));
    assert.equal(tooMany.name, "InstanceLimitExceeded");
    assert.equal(
      tooMany.message,
      `You have requested more instances (${LIMIT + 1}) than your current instance limit of ${LIMIT} allows for the specified instance type. ` +
        "Please visit http://aws.amazon.com/contact-us/ec2-request to request an adjustment to this limit.",
    );
    assert.equal((await liveInstances()).length, 0, "nothing launched");

    const all = await launch({ MinCount: 1, MaxCount: 100000 });
    assert.equal(all.Instances!.length, LIMIT);
    // Each its own addresses: a launch of several gave every instance the same public one.
    assert.equal(new Set(all.Instances!.map((i) => i.PrivateIpAddress)).size, LIMIT);
    assert.equal(new Set(all.Instances!.map((i) => i.PublicIpAddress)).size, LIMIT);

    const full = await failure(launch({ MinCount: 1, MaxCount: 1 }));
    assert.equal(full.name, "InstanceLimitExceeded");
    assert.match(full.message, new RegExp(`requested more instances \\(${LIMIT + 1}\\) than your current instance limit of ${LIMIT}`));

    // Terminated instances no longer count.
    await terminate(all.Instances!.slice(0, 5));
    const more = await launch({ MinCount: 2, MaxCount: 100 });
    assert.equal(more.Instances!.length, 5);
    await terminate(await liveInstances());
  });

  it("refuses a launch whose MinCount the subnet has no addresses for, and launches as many as it has", async () => {
    const { Vpc } = await ec2.send(new CreateVpcCommand({ CidrBlock: "10.9.0.0/16" }));
    // A /28 has 16 addresses, of which EC2 keeps 5: 11 for instances.
    const { Subnet } = await ec2.send(new CreateSubnetCommand({ VpcId: Vpc!.VpcId, CidrBlock: "10.9.0.0/28" }));
    const SubnetId = Subnet!.SubnetId!;
    const short = await failure(launch({ MinCount: 12, MaxCount: 12, SubnetId }));
    assert.equal(short.name, "InsufficientFreeAddressesInSubnet");
    assert.equal((await liveInstances()).length, 0, "nothing launched");

    const launched = await launch({ MinCount: 1, MaxCount: 15, SubnetId });
    assert.equal(launched.Instances!.length, 11);
    const { Subnets } = await ec2.send(new DescribeSubnetsCommand({ SubnetIds: [SubnetId] }));
    assert.equal(Subnets![0]!.AvailableIpAddressCount, 0);
    assert.equal((await failure(launch({ MinCount: 1, MaxCount: 1, SubnetId }))).name, "InsufficientFreeAddressesInSubnet");
    await terminate(launched.Instances!);
  });

  it("refuses a launch of more volumes than an instance attaches, and more mappings than a request may give", async () => {
    const letter = (n: number) => String.fromCharCode(97 + n);
    const mappings = (count: number) =>
      Array.from({ length: count }, (_, i) => ({ DeviceName: `/dev/xvd${letter(1 + Math.floor(i / 26))}${letter(i % 26)}`, Ebs: { VolumeSize: 1 } }));
    const launchWith = (count: number, InstanceType: "t3.micro" | "t2.micro") =>
      ec2.send(new RunInstancesCommand({ ImageId: imageId, InstanceType, MinCount: 1, MaxCount: 1, BlockDeviceMappings: mappings(count) }));
    // A Nitro type: 28 attachments, one of them the network interface; the image's root is one volume.
    const nitro = await failure(launchWith(27, "t3.micro"));
    assert.equal(nitro.name, "AttachmentLimitExceeded");
    assert.match(nitro.message, /at most 27 volumes attached; the launch gives it 28/);
    assert.equal((await launchWith(26, "t3.micro")).Instances![0]!.BlockDeviceMappings!.length, 27);
    // Xen: 40 volumes.
    assert.equal((await launchWith(39, "t2.micro")).Instances![0]!.BlockDeviceMappings!.length, 40);
    assert.equal((await failure(launchWith(40, "t2.micro"))).name, "AttachmentLimitExceeded");
    assert.equal((await failure(launchWith(129, "t2.micro"))).name, "InvalidBlockDeviceMapping");
    await terminate(await liveInstances());
  });

  it("keeps a security group within 1,000 rules a direction, and finds duplicates among them", async () => {
    const { GroupId } = await ec2.send(new CreateSecurityGroupCommand({ GroupName: "many-rules", Description: "many" }));
    const cidr = (n: number) => `10.${Math.floor(n / 256)}.${n % 256}.0/24`;
    const ranges = (count: number, from = 0) => Array.from({ length: count }, (_, i) => ({ CidrIp: cidr(from + i) }));
    const authorize = (count: number, from = 0) => {
      const IpPermissions = [{ IpProtocol: "tcp", FromPort: 22, ToPort: 22, IpRanges: ranges(count, from) }];
      return ec2.send(new AuthorizeSecurityGroupIngressCommand({ GroupId, IpPermissions }));
    };
    assert.equal((await failure(authorize(1001))).name, "RulesPerSecurityGroupLimitExceeded");
    assert.equal((await authorize(999)).SecurityGroupRules!.length, 999);
    assert.equal((await failure(authorize(1, 998))).name, "InvalidPermission.Duplicate");
    assert.equal((await failure(authorize(2, 999))).name, "RulesPerSecurityGroupLimitExceeded");
    assert.equal((await authorize(1, 999)).SecurityGroupRules!.length, 1);
  });

  it("tags at most 1,000 resources in one CreateTags, each named once however often it is given", async () => {
    const over = await failure(ec2.send(new CreateTagsCommand({ Resources: templates(1001), Tags: [{ Key: "k", Value: "v" }] })));
    assert.equal(over.name, "ResourceCountExceeded");
    const twice = [
      { Key: "k", Value: "v" },
      { Key: "k", Value: "last" },
    ];
    await ec2.send(new CreateTagsCommand({ Resources: [...templates(1000), ...templates(10)], Tags: twice }));
    const fiftyOne = Array.from({ length: 51 }, (_, i) => ({ Key: `key-${i}`, Value: "v" }));
    assert.equal((await failure(ec2.send(new CreateTagsCommand({ Resources: templates(1), Tags: fiftyOne })))).name, "TagLimitExceeded");

    // Read back a page at a time, and whole without MaxResults.
    const { Tags } = await ec2.send(new DescribeTagsCommand({ Filters: [{ Name: "key", Values: ["k"] }] }));
    assert.equal(Tags!.length, 1000);
    assert.ok(Tags!.every((t) => t.Value === "last"));
    let NextToken: string | undefined;
    let paged = 0;
    do {
      const page = await ec2.send(new DescribeTagsCommand({ Filters: [{ Name: "resource-type", Values: ["launch-template"] }], MaxResults: 300, NextToken }));
      paged += page.Tags!.length;
      NextToken = page.NextToken;
    } while (NextToken);
    assert.equal(paged, 1000);
  });

  it("bounds filter values as EC2 does, and matches wildcards without backtracking", async () => {
    const values = (count: number) => Array.from({ length: count }, (_, i) => `v${i}`);
    const filters = [
      { Name: "key", Values: values(150) },
      { Name: "value", Values: values(51) },
    ];
    const tooMany = await failure(ec2.send(new DescribeTagsCommand({ Filters: filters })));
    assert.equal(tooMany.name, "FilterLimitExceeded");
    assert.equal(tooMany.message, "The maximum number of filter values specified on a single call is 200");
    const tooLong = await failure(ec2.send(new DescribeTagsCommand({ Filters: [{ Name: "value", Values: ["x".repeat(256)] }] })));
    assert.equal(tooLong.name, "FilterLimitExceeded");
    assert.equal(tooLong.message, "The maximum length for a filter value is 255 characters");

    const [long, stars, question] = templates(3, 5000);
    await ec2.send(new CreateTagsCommand({ Resources: [long!], Tags: [{ Key: "w", Value: "a".repeat(255) }] }));
    await ec2.send(new CreateTagsCommand({ Resources: [stars!], Tags: [{ Key: "w", Value: "a*b" }] }));
    await ec2.send(new CreateTagsCommand({ Resources: [question!], Tags: [{ Key: "w", Value: "axb" }] }));
    const matching = async (...patterns: string[]) => {
      const { Tags } = await ec2.send(
        new DescribeTagsCommand({
          Filters: [
            { Name: "key", Values: ["w"] },
            { Name: "value", Values: patterns },
          ],
        }),
      );
      return Tags!.map((t) => t.ResourceId).sort();
    };
    // As a regular expression this took time growing with 255 to the power of its stars.
    const started = performance.now();
    assert.deepEqual(await matching(...Array(199).fill(`${"*a".repeat(126)}*b`)), []);
    assert.ok(performance.now() - started < 2000, "answered at once");
    assert.deepEqual(await matching(`*${"a*".repeat(120)}`), [long]);
    assert.deepEqual(await matching("*a*b"), [stars, question].sort());
    assert.deepEqual(await matching("a?b"), [stars, question].sort());
    assert.deepEqual(await matching("a\\*b"), [stars]);
    assert.deepEqual(await matching("*x*"), [question]);
    assert.deepEqual(await matching("a*b*"), [stars, question].sort());
  });
});
