// The network around instances through @aws-sdk/client-ec2: the default VPC, subnets, internet
// gateway, main route table and default security group every account gets on first use; VPCs
// and subnets of one's own; security groups and their rules; instances' interfaces and addresses.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  AttachInternetGatewayCommand,
  AuthorizeSecurityGroupEgressCommand,
  AuthorizeSecurityGroupIngressCommand,
  CreateDefaultVpcCommand,
  CreateInternetGatewayCommand,
  CreateSecurityGroupCommand,
  CreateSubnetCommand,
  CreateTagsCommand,
  CreateVpcCommand,
  DeleteInternetGatewayCommand,
  DescribeAccountAttributesCommand,
  DeleteSecurityGroupCommand,
  DeleteSubnetCommand,
  DeleteVpcCommand,
  DescribeImagesCommand,
  DescribeInstancesCommand,
  DescribeInternetGatewaysCommand,
  DescribeNetworkInterfacesCommand,
  DescribeRouteTablesCommand,
  DescribeSecurityGroupRulesCommand,
  DescribeSecurityGroupsCommand,
  DescribeSubnetsCommand,
  DescribeVpcsCommand,
  DetachInternetGatewayCommand,
  RevokeSecurityGroupEgressCommand,
  RevokeSecurityGroupIngressCommand,
  RunInstancesCommand,
  TerminateInstancesCommand,
  type EC2Client,
} from "@aws-sdk/client-ec2";
import { errorName } from "./helpers/data.js";
import { startTestKiln, type TestKiln } from "./helpers/kiln.js";

let kiln: TestKiln;
before(async () => {
  kiln = await startTestKiln();
});
after(() => kiln.close());

async function catalogueImage(ec2: EC2Client): Promise<string> {
  const images = await ec2.send(new DescribeImagesCommand({ Owners: ["amazon"], Filters: [{ Name: "architecture", Values: ["x86_64"] }] }));
  return images.Images![0]!.ImageId!;
}

const defaultVpcOf = async (ec2: EC2Client) => (await ec2.send(new DescribeVpcsCommand({ Filters: [{ Name: "is-default", Values: ["true"] }] }))).Vpcs![0]!;

describe("the default network", () => {
  it("is made on first use: a 172.31.0.0/16 VPC, a /20 default subnet per zone, an internet gateway, a main route table and a default group", async () => {
    const ec2 = kiln.ec2({ accessKeyId: "100000000001" });
    const vpcs = (await ec2.send(new DescribeVpcsCommand({}))).Vpcs!;
    assert.equal(vpcs.length, 1);
    const vpc = vpcs[0]!;
    assert.equal(vpc.CidrBlock, "172.31.0.0/16");
    assert.equal(vpc.IsDefault, true);
    assert.equal(vpc.State, "available");
    assert.equal(vpc.OwnerId, "100000000001");
    assert.match(vpc.DhcpOptionsId!, /^dopt-/);
    assert.equal(vpc.CidrBlockAssociationSet![0]!.CidrBlockState!.State, "associated");

    const subnets = (await ec2.send(new DescribeSubnetsCommand({ Filters: [{ Name: "vpc-id", Values: [vpc.VpcId!] }] }))).Subnets!;
    assert.deepEqual(subnets.map((s) => s.AvailabilityZone).sort(), ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d", "us-east-1e", "us-east-1f"]);
    const byZone = Object.fromEntries(subnets.map((s) => [s.AvailabilityZone, s]));
    assert.equal(byZone["us-east-1a"]!.CidrBlock, "172.31.0.0/20");
    assert.equal(byZone["us-east-1b"]!.CidrBlock, "172.31.16.0/20");
    for (const subnet of subnets) {
      assert.equal(subnet.DefaultForAz, true);
      assert.equal(subnet.MapPublicIpOnLaunch, true);
      // 4096 addresses less the 5 AWS reserves.
      assert.equal(subnet.AvailableIpAddressCount, 4091);
      assert.match(subnet.AvailabilityZoneId!, /^use1-az\d$/);
      assert.equal(subnet.SubnetArn, `arn:aws:ec2:us-east-1:100000000001:subnet/${subnet.SubnetId}`);
    }

    const gateways = (await ec2.send(new DescribeInternetGatewaysCommand({ Filters: [{ Name: "attachment.vpc-id", Values: [vpc.VpcId!] }] })))
      .InternetGateways!;
    assert.equal(gateways.length, 1);
    assert.equal(gateways[0]!.Attachments![0]!.State, "available");

    const [main] = (
      await ec2.send(
        new DescribeRouteTablesCommand({
          Filters: [
            { Name: "association.main", Values: ["true"] },
            { Name: "vpc-id", Values: [vpc.VpcId!] },
          ],
        }),
      )
    ).RouteTables!;
    assert.deepEqual(
      main!.Routes!.map((r) => [r.DestinationCidrBlock, r.GatewayId, r.State]),
      [
        ["172.31.0.0/16", "local", "active"],
        ["0.0.0.0/0", gateways[0]!.InternetGatewayId, "active"],
      ],
    );
    assert.equal(main!.Associations![0]!.Main, true);

    const [group] = (await ec2.send(new DescribeSecurityGroupsCommand({ GroupNames: ["default"] }))).SecurityGroups!;
    assert.equal(group!.VpcId, vpc.VpcId);
    assert.equal(group!.Description, "default VPC security group");
    // Members reach each other; everything may go out.
    assert.deepEqual(group!.IpPermissions, [
      { IpProtocol: "-1", IpRanges: [], Ipv6Ranges: [], PrefixListIds: [], UserIdGroupPairs: [{ GroupId: group!.GroupId, UserId: "100000000001" }] },
    ]);
    assert.deepEqual(group!.IpPermissionsEgress, [
      { IpProtocol: "-1", IpRanges: [{ CidrIp: "0.0.0.0/0" }], Ipv6Ranges: [], PrefixListIds: [], UserIdGroupPairs: [] },
    ]);

    // Each account and region has its own.
    const other = await defaultVpcOf(kiln.ec2({ accessKeyId: "100000000002" }));
    const west = await defaultVpcOf(kiln.ec2({ accessKeyId: "100000000001", region: "us-west-2" }));
    assert.notEqual(other.VpcId, vpc.VpcId);
    assert.notEqual(west.VpcId, vpc.VpcId);
    assert.equal(await errorName(kiln.ec2({ accessKeyId: "100000000002" }).send(new DescribeVpcsCommand({ VpcIds: [vpc.VpcId!] }))), "InvalidVpcID.NotFound");
  });

  it("is made once when the first requests arrive together", async () => {
    const ec2 = kiln.ec2({ accessKeyId: "100000000009" });
    const answers = await Promise.all([1, 2, 3, 4, 5].map(() => ec2.send(new DescribeVpcsCommand({}))));
    const ids = new Set(answers.flatMap((a) => a.Vpcs!.map((v) => v.VpcId)));
    assert.equal(ids.size, 1);
    assert.equal((await ec2.send(new DescribeSubnetsCommand({}))).Subnets!.length, 6);
    assert.equal((await ec2.send(new DescribeSecurityGroupsCommand({}))).SecurityGroups!.length, 1);
  });
});

describe("instances on the network", () => {
  it("get a default subnet, the lowest free private address, a public address, DNS names, an interface and the default group", async () => {
    const ec2 = kiln.ec2({ accessKeyId: "100000000003" });
    const run = await ec2.send(
      new RunInstancesCommand({
        ImageId: await catalogueImage(ec2),
        MinCount: 2,
        MaxCount: 2,
        InstanceType: "t3.micro",
        Placement: { AvailabilityZone: "us-east-1b" },
      }),
    );
    const [first, second] = run.Instances!;
    const subnet = (
      await ec2.send(
        new DescribeSubnetsCommand({
          Filters: [
            { Name: "availability-zone", Values: ["us-east-1b"] },
            { Name: "default-for-az", Values: ["true"] },
          ],
        }),
      )
    ).Subnets![0]!;
    assert.equal(first!.SubnetId, subnet.SubnetId);
    assert.equal(first!.VpcId, subnet.VpcId);
    // 172.31.16.0/20: the first four addresses are reserved.
    assert.equal(first!.PrivateIpAddress, "172.31.16.4");
    assert.equal(second!.PrivateIpAddress, "172.31.16.5");
    assert.equal(first!.PrivateDnsName, "ip-172-31-16-4.ec2.internal");
    assert.match(first!.PublicIpAddress!, /^\d+\.\d+\.\d+\.\d+$/);
    assert.equal(first!.PublicDnsName, `ec2-${first!.PublicIpAddress!.replaceAll(".", "-")}.compute-1.amazonaws.com`);
    const [defaultGroup] = (await ec2.send(new DescribeSecurityGroupsCommand({ GroupNames: ["default"] }))).SecurityGroups!;
    assert.deepEqual(first!.SecurityGroups, [{ GroupId: defaultGroup!.GroupId, GroupName: "default" }]);
    const eni = first!.NetworkInterfaces![0]!;
    assert.match(eni.NetworkInterfaceId!, /^eni-[0-9a-f]{17}$/);
    assert.equal(eni.Attachment!.DeviceIndex, 0);
    assert.equal(eni.Attachment!.DeleteOnTermination, true);
    assert.match(eni.MacAddress!, /^0e(:[0-9a-f]{2}){5}$/);
    assert.equal((await ec2.send(new DescribeSubnetsCommand({ SubnetIds: [subnet.SubnetId!] }))).Subnets![0]!.AvailableIpAddressCount, 4089);

    const interfaces = (await ec2.send(new DescribeNetworkInterfacesCommand({ Filters: [{ Name: "attachment.instance-id", Values: [first!.InstanceId!] }] })))
      .NetworkInterfaces!;
    assert.equal(interfaces.length, 1);
    assert.equal(interfaces[0]!.Status, "in-use");
    assert.equal(interfaces[0]!.PrivateIpAddress, "172.31.16.4");
    assert.equal(interfaces[0]!.Association!.PublicIp, first!.PublicIpAddress);
    const inGroup = (await ec2.send(new DescribeNetworkInterfacesCommand({ Filters: [{ Name: "group-id", Values: [defaultGroup!.GroupId!] }] })))
      .NetworkInterfaces!;
    assert.equal(inGroup.length, 2);
    const bySubnet = await ec2.send(
      new DescribeInstancesCommand({
        Filters: [
          { Name: "subnet-id", Values: [subnet.SubnetId!] },
          { Name: "private-ip-address", Values: ["172.31.16.5"] },
        ],
      }),
    );
    assert.deepEqual(
      bySubnet.Reservations!.flatMap((r) => r.Instances!.map((i) => i.InstanceId)),
      [second!.InstanceId],
    );

    // Termination takes the interfaces (DeleteOnTermination) and frees their addresses.
    await ec2.send(new TerminateInstancesCommand({ InstanceIds: [first!.InstanceId!, second!.InstanceId!] }));
    assert.deepEqual(
      (await ec2.send(new DescribeNetworkInterfacesCommand({ Filters: [{ Name: "subnet-id", Values: [subnet.SubnetId!] }] }))).NetworkInterfaces,
      [],
    );
    const again = await ec2.send(
      new RunInstancesCommand({
        ImageId: await catalogueImage(ec2),
        MinCount: 1,
        MaxCount: 1,
        InstanceType: "t3.micro",
        Placement: { AvailabilityZone: "us-east-1b" },
      }),
    );
    assert.equal(again.Instances![0]!.PrivateIpAddress, "172.31.16.4");
    // Groups by name mean groups of the default VPC.
    const named = await ec2.send(new CreateSecurityGroupCommand({ GroupName: "by-name", Description: "named at launch" }));
    const byName = await ec2.send(
      new RunInstancesCommand({
        ImageId: await catalogueImage(ec2),
        MinCount: 1,
        MaxCount: 1,
        InstanceType: "t3.micro",
        SecurityGroups: ["by-name", "default"],
      }),
    );
    assert.deepEqual(byName.Instances![0]!.SecurityGroups!.map((g) => g.GroupId).sort(), [named.GroupId, defaultGroup!.GroupId].sort());
    assert.equal(
      await errorName(
        ec2.send(
          new RunInstancesCommand({ ImageId: await catalogueImage(ec2), MinCount: 1, MaxCount: 1, InstanceType: "t3.micro", SecurityGroups: ["absent"] }),
        ),
      ),
      "InvalidGroup.NotFound",
    );
  });

  it("launch into a subnet of one's own, with named groups and a chosen address; no public address unless asked", async () => {
    const ec2 = kiln.ec2({ accessKeyId: "100000000004" });
    const vpc = (
      await ec2.send(new CreateVpcCommand({ CidrBlock: "10.8.0.0/16", TagSpecifications: [{ ResourceType: "vpc", Tags: [{ Key: "Name", Value: "lab" }] }] }))
    ).Vpc!;
    assert.equal(vpc.IsDefault, false);
    assert.deepEqual(vpc.Tags, [{ Key: "Name", Value: "lab" }]);
    const subnet = (await ec2.send(new CreateSubnetCommand({ VpcId: vpc.VpcId, CidrBlock: "10.8.1.0/24", AvailabilityZone: "us-east-1c" }))).Subnet!;
    assert.equal(subnet.AvailableIpAddressCount, 251);
    assert.equal(subnet.MapPublicIpOnLaunch, false);
    const group = await ec2.send(new CreateSecurityGroupCommand({ GroupName: "web", Description: "web servers", VpcId: vpc.VpcId }));
    const image = await catalogueImage(ec2);
    const run = await ec2.send(
      new RunInstancesCommand({
        ImageId: image,
        MinCount: 1,
        MaxCount: 1,
        InstanceType: "t3.micro",
        SubnetId: subnet.SubnetId,
        SecurityGroupIds: [group.GroupId!],
        PrivateIpAddress: "10.8.1.50",
      }),
    );
    const instance = run.Instances![0]!;
    assert.equal(instance.Placement!.AvailabilityZone, "us-east-1c");
    assert.equal(instance.PrivateIpAddress, "10.8.1.50");
    assert.equal(instance.PublicIpAddress, undefined);
    assert.deepEqual(instance.SecurityGroups, [{ GroupId: group.GroupId, GroupName: "web" }]);

    // The same address again, an address outside the subnet, a group of another VPC: refused.
    assert.equal(
      await errorName(
        ec2.send(
          new RunInstancesCommand({
            ImageId: image,
            MinCount: 1,
            MaxCount: 1,
            InstanceType: "t3.micro",
            SubnetId: subnet.SubnetId,
            PrivateIpAddress: "10.8.1.50",
          }),
        ),
      ),
      "InvalidIPAddress.InUse",
    );
    assert.equal(
      await errorName(
        ec2.send(
          new RunInstancesCommand({
            ImageId: image,
            MinCount: 1,
            MaxCount: 1,
            InstanceType: "t3.micro",
            SubnetId: subnet.SubnetId,
            PrivateIpAddress: "10.9.0.5",
          }),
        ),
      ),
      "InvalidParameterValue",
    );
    const [defaultGroup] = (await ec2.send(new DescribeSecurityGroupsCommand({ GroupNames: ["default"] }))).SecurityGroups!;
    assert.equal(
      await errorName(
        ec2.send(
          new RunInstancesCommand({
            ImageId: image,
            MinCount: 1,
            MaxCount: 1,
            InstanceType: "t3.micro",
            SubnetId: subnet.SubnetId,
            SecurityGroupIds: [defaultGroup!.GroupId!],
          }),
        ),
      ),
      "InvalidParameter",
    );
    assert.equal(
      await errorName(
        ec2.send(new RunInstancesCommand({ ImageId: image, MinCount: 1, MaxCount: 1, InstanceType: "t3.micro", SubnetId: "subnet-0123456789abcdef0" })),
      ),
      "InvalidSubnetID.NotFound",
    );
    // A public address when the interface asks for one.
    const withPublic = await ec2.send(
      new RunInstancesCommand({
        ImageId: image,
        MinCount: 1,
        MaxCount: 1,
        InstanceType: "t3.micro",
        NetworkInterfaces: [{ DeviceIndex: 0, SubnetId: subnet.SubnetId, AssociatePublicIpAddress: true, Groups: [group.GroupId!] }],
      }),
    );
    assert.ok(withPublic.Instances![0]!.PublicIpAddress);
    assert.equal(withPublic.Instances![0]!.PrivateIpAddress, "10.8.1.4");

    // In use: the subnet, the group and the VPC cannot go.
    assert.equal(await errorName(ec2.send(new DeleteSubnetCommand({ SubnetId: subnet.SubnetId }))), "DependencyViolation");
    assert.equal(await errorName(ec2.send(new DeleteSecurityGroupCommand({ GroupId: group.GroupId }))), "DependencyViolation");
    assert.equal(await errorName(ec2.send(new DeleteVpcCommand({ VpcId: vpc.VpcId }))), "DependencyViolation");
    await ec2.send(new TerminateInstancesCommand({ InstanceIds: [instance.InstanceId!, withPublic.Instances![0]!.InstanceId!] }));
    await ec2.send(new DeleteSecurityGroupCommand({ GroupId: group.GroupId }));
    await ec2.send(new DeleteSubnetCommand({ SubnetId: subnet.SubnetId }));
    await ec2.send(new DeleteVpcCommand({ VpcId: vpc.VpcId }));
    assert.equal(await errorName(ec2.send(new DescribeVpcsCommand({ VpcIds: [vpc.VpcId!] }))), "InvalidVpcID.NotFound");
    // The VPC's main route table and default group went with it.
    assert.deepEqual((await ec2.send(new DescribeRouteTablesCommand({ Filters: [{ Name: "vpc-id", Values: [vpc.VpcId!] }] }))).RouteTables, []);
    assert.deepEqual((await ec2.send(new DescribeSecurityGroupsCommand({ Filters: [{ Name: "vpc-id", Values: [vpc.VpcId!] }] }))).SecurityGroups, []);
  });
});

describe("VPCs, subnets and gateways of one's own", () => {
  it("checks CIDR blocks, and attaches, detaches and deletes internet gateways", async () => {
    const ec2 = kiln.ec2({ accessKeyId: "100000000005" });
    assert.equal(await errorName(ec2.send(new CreateVpcCommand({ CidrBlock: "10.0.0.0/8" }))), "InvalidVpc.Range");
    assert.equal(await errorName(ec2.send(new CreateVpcCommand({ CidrBlock: "10.0.0.1/16" }))), "InvalidVpc.Range");
    const vpc = (await ec2.send(new CreateVpcCommand({ CidrBlock: "10.1.0.0/16" }))).Vpc!;
    await ec2.send(new CreateSubnetCommand({ VpcId: vpc.VpcId, CidrBlock: "10.1.0.0/24" }));
    assert.equal(await errorName(ec2.send(new CreateSubnetCommand({ VpcId: vpc.VpcId, CidrBlock: "10.1.0.128/25" }))), "InvalidSubnet.Conflict");
    assert.equal(await errorName(ec2.send(new CreateSubnetCommand({ VpcId: vpc.VpcId, CidrBlock: "10.2.0.0/24" }))), "InvalidSubnet.Range");
    assert.equal(await errorName(ec2.send(new CreateSubnetCommand({ VpcId: "vpc-0123456789abcdef0", CidrBlock: "10.1.1.0/24" }))), "InvalidVpcID.NotFound");

    const gateway = (
      await ec2.send(new CreateInternetGatewayCommand({ TagSpecifications: [{ ResourceType: "internet-gateway", Tags: [{ Key: "k", Value: "v" }] }] }))
    ).InternetGateway!;
    assert.deepEqual(gateway.Attachments, []);
    await ec2.send(new AttachInternetGatewayCommand({ InternetGatewayId: gateway.InternetGatewayId, VpcId: vpc.VpcId }));
    assert.equal(await errorName(ec2.send(new DeleteInternetGatewayCommand({ InternetGatewayId: gateway.InternetGatewayId }))), "DependencyViolation");
    const tagged = await ec2.send(new DescribeInternetGatewaysCommand({ Filters: [{ Name: "tag:k", Values: ["v"] }] }));
    assert.equal(tagged.InternetGateways![0]!.Attachments![0]!.VpcId, vpc.VpcId);
    await ec2.send(new DetachInternetGatewayCommand({ InternetGatewayId: gateway.InternetGatewayId, VpcId: vpc.VpcId }));
    await ec2.send(new DeleteInternetGatewayCommand({ InternetGatewayId: gateway.InternetGatewayId }));
    assert.equal(
      await errorName(ec2.send(new DescribeInternetGatewaysCommand({ InternetGatewayIds: [gateway.InternetGatewayId!] }))),
      "InvalidInternetGatewayID.NotFound",
    );

    // CreateTags checks network ids exist for the caller.
    await ec2.send(new CreateTagsCommand({ Resources: [vpc.VpcId!], Tags: [{ Key: "Name", Value: "mine" }] }));
    assert.equal(
      await errorName(
        kiln.ec2({ accessKeyId: "100000000006" }).send(new CreateTagsCommand({ Resources: [vpc.VpcId!], Tags: [{ Key: "Name", Value: "theirs" }] })),
      ),
      "InvalidVpcID.NotFound",
    );
    assert.deepEqual(
      (await ec2.send(new DescribeVpcsCommand({ Filters: [{ Name: "tag:Name", Values: ["mine"] }] }))).Vpcs!.map((v) => v.VpcId),
      [vpc.VpcId],
    );
  });
});

describe("deleting the default VPC", () => {
  it("leaves the account without one (launches need a subnet) until CreateDefaultVpc makes it again", async () => {
    const ec2 = kiln.ec2({ accessKeyId: "100000000010" });
    const vpc = await defaultVpcOf(ec2);
    assert.equal(await errorName(ec2.send(new DeleteVpcCommand({ VpcId: vpc.VpcId }))), "DependencyViolation");
    for (const subnet of (await ec2.send(new DescribeSubnetsCommand({ Filters: [{ Name: "vpc-id", Values: [vpc.VpcId!] }] }))).Subnets!) {
      await ec2.send(new DeleteSubnetCommand({ SubnetId: subnet.SubnetId }));
    }
    const [gateway] = (await ec2.send(new DescribeInternetGatewaysCommand({ Filters: [{ Name: "attachment.vpc-id", Values: [vpc.VpcId!] }] })))
      .InternetGateways!;
    await ec2.send(new DetachInternetGatewayCommand({ InternetGatewayId: gateway!.InternetGatewayId, VpcId: vpc.VpcId }));
    await ec2.send(new DeleteInternetGatewayCommand({ InternetGatewayId: gateway!.InternetGatewayId }));
    await ec2.send(new DeleteVpcCommand({ VpcId: vpc.VpcId }));
    assert.deepEqual((await ec2.send(new DescribeVpcsCommand({}))).Vpcs, []);
    const attributes = await ec2.send(new DescribeAccountAttributesCommand({ AttributeNames: ["default-vpc"] }));
    assert.equal(attributes.AccountAttributes![0]!.AttributeValues![0]!.AttributeValue, "none");
    assert.equal(
      await errorName(ec2.send(new RunInstancesCommand({ ImageId: await catalogueImage(ec2), MinCount: 1, MaxCount: 1, InstanceType: "t3.micro" }))),
      "VPCIdNotSpecified",
    );
    assert.equal(await errorName(ec2.send(new CreateSecurityGroupCommand({ GroupName: "x", Description: "x" }))), "VPCIdNotSpecified");

    const again = (await ec2.send(new CreateDefaultVpcCommand({}))).Vpc!;
    assert.equal(again.IsDefault, true);
    assert.equal(again.CidrBlock, "172.31.0.0/16");
    assert.notEqual(again.VpcId, vpc.VpcId);
    assert.equal((await ec2.send(new DescribeSubnetsCommand({ Filters: [{ Name: "vpc-id", Values: [again.VpcId!] }] }))).Subnets!.length, 6);
    assert.equal(await errorName(ec2.send(new CreateDefaultVpcCommand({}))), "DefaultVpcAlreadyExists");
  });
});

describe("security groups", () => {
  it("start with the all-out egress rule, take ingress and egress rules, refuse duplicates, and revoke", async () => {
    const ec2 = kiln.ec2({ accessKeyId: "100000000007" });
    const vpc = await defaultVpcOf(ec2);
    const created = await ec2.send(
      new CreateSecurityGroupCommand({
        GroupName: "ssh",
        Description: "ssh in",
        TagSpecifications: [{ ResourceType: "security-group", Tags: [{ Key: "team", Value: "images" }] }],
      }),
    );
    const peer = await ec2.send(new CreateSecurityGroupCommand({ GroupName: "peer", Description: "peers" }));
    assert.match(created.GroupId!, /^sg-[0-9a-f]{17}$/);
    assert.equal(await errorName(ec2.send(new CreateSecurityGroupCommand({ GroupName: "ssh", Description: "again" }))), "InvalidGroup.Duplicate");
    assert.equal(await errorName(ec2.send(new CreateSecurityGroupCommand({ GroupName: "default", Description: "x" }))), "InvalidGroup.Reserved");
    assert.equal(await errorName(ec2.send(new CreateSecurityGroupCommand({ GroupName: "sg-like", Description: "x" }))), "InvalidParameterValue");

    const authorized = await ec2.send(
      new AuthorizeSecurityGroupIngressCommand({
        GroupId: created.GroupId,
        IpPermissions: [
          { IpProtocol: "tcp", FromPort: 22, ToPort: 22, IpRanges: [{ CidrIp: "10.0.0.0/8", Description: "office" }, { CidrIp: "192.168.0.0/16" }] },
          { IpProtocol: "6", FromPort: 443, ToPort: 443, Ipv6Ranges: [{ CidrIpv6: "2001:db8::/32" }], PrefixListIds: [{ PrefixListId: "pl-63a5400a" }] },
          { IpProtocol: "-1", UserIdGroupPairs: [{ GroupId: peer.GroupId }] },
        ],
      }),
    );
    assert.equal(authorized.Return, true);
    assert.equal(authorized.SecurityGroupRules!.length, 5);
    assert.ok(authorized.SecurityGroupRules!.every((r) => /^sgr-[0-9a-f]{17}$/.test(r.SecurityGroupRuleId!) && r.IsEgress === false));
    assert.equal(
      await errorName(
        ec2.send(
          new AuthorizeSecurityGroupIngressCommand({
            GroupId: created.GroupId,
            IpPermissions: [{ IpProtocol: "tcp", FromPort: 22, ToPort: 22, IpRanges: [{ CidrIp: "10.0.0.0/8" }] }],
          }),
        ),
      ),
      "InvalidPermission.Duplicate",
    );
    assert.equal(
      await errorName(
        ec2.send(
          new AuthorizeSecurityGroupIngressCommand({
            GroupId: created.GroupId,
            IpPermissions: [{ IpProtocol: "tcp", FromPort: 80, ToPort: 79, IpRanges: [{ CidrIp: "10.0.0.0/8" }] }],
          }),
        ),
      ),
      "InvalidParameterValue",
    );
    assert.equal(
      await errorName(
        ec2.send(
          new AuthorizeSecurityGroupIngressCommand({
            GroupId: created.GroupId,
            IpPermissions: [{ IpProtocol: "tcp", FromPort: 80, ToPort: 80, IpRanges: [{ CidrIp: "10.0.0.0/33" }] }],
          }),
        ),
      ),
      "InvalidParameterValue",
    );
    // The older flat form, by group name in the default VPC.
    await ec2.send(new AuthorizeSecurityGroupIngressCommand({ GroupName: "ssh", IpProtocol: "udp", FromPort: 53, ToPort: 53, CidrIp: "0.0.0.0/0" }));

    const [group] = (await ec2.send(new DescribeSecurityGroupsCommand({ GroupIds: [created.GroupId!] }))).SecurityGroups!;
    assert.equal(group!.VpcId, vpc.VpcId);
    assert.deepEqual(group!.Tags, [{ Key: "team", Value: "images" }]);
    const ssh = group!.IpPermissions!.find((p) => p.FromPort === 22)!;
    assert.deepEqual(ssh.IpRanges!.map((r) => [r.CidrIp, r.Description]).sort(), [
      ["10.0.0.0/8", "office"],
      ["192.168.0.0/16", undefined],
    ]);
    const https = group!.IpPermissions!.find((p) => p.FromPort === 443)!;
    assert.equal(https.IpProtocol, "tcp");
    assert.deepEqual(https.Ipv6Ranges, [{ CidrIpv6: "2001:db8::/32" }]);
    assert.deepEqual(https.PrefixListIds, [{ PrefixListId: "pl-63a5400a" }]);
    assert.deepEqual(group!.IpPermissions!.find((p) => p.IpProtocol === "-1")!.UserIdGroupPairs, [{ GroupId: peer.GroupId, UserId: "100000000007" }]);
    assert.deepEqual(group!.IpPermissionsEgress, [
      { IpProtocol: "-1", IpRanges: [{ CidrIp: "0.0.0.0/0" }], Ipv6Ranges: [], PrefixListIds: [], UserIdGroupPairs: [] },
    ]);

    const filtered = async (name: string, value: string) =>
      (await ec2.send(new DescribeSecurityGroupsCommand({ Filters: [{ Name: name, Values: [value] }] }))).SecurityGroups!.map((g) => g.GroupName).sort();
    assert.deepEqual(await filtered("ip-permission.from-port", "22"), ["ssh"]);
    assert.deepEqual(await filtered("ip-permission.cidr", "192.168.*"), ["ssh"]);
    assert.deepEqual(await filtered("ip-permission.group-id", peer.GroupId!), ["ssh"]);
    assert.deepEqual(await filtered("egress.ip-permission.cidr", "0.0.0.0/0"), ["default", "peer", "ssh"]);
    assert.deepEqual(await filtered("tag:team", "images"), ["ssh"]);

    const rules = (await ec2.send(new DescribeSecurityGroupRulesCommand({ Filters: [{ Name: "group-id", Values: [created.GroupId!] }] }))).SecurityGroupRules!;
    assert.equal(rules.length, 7);
    const egress = rules.find((r) => r.IsEgress)!;
    assert.deepEqual([egress.IpProtocol, egress.FromPort, egress.ToPort, egress.CidrIpv4], ["-1", -1, -1, "0.0.0.0/0"]);

    // The peer is referenced: it cannot go while the rule stands.
    assert.equal(await errorName(ec2.send(new DeleteSecurityGroupCommand({ GroupId: peer.GroupId }))), "DependencyViolation");
    await ec2.send(
      new RevokeSecurityGroupIngressCommand({ GroupId: created.GroupId, IpPermissions: [{ IpProtocol: "-1", UserIdGroupPairs: [{ GroupId: peer.GroupId }] }] }),
    );
    await ec2.send(new DeleteSecurityGroupCommand({ GroupId: peer.GroupId }));
    // Revoking by rule id, and the all-out egress rule, as Terraform does.
    const udp = rules.find((r) => r.IpProtocol === "udp")!;
    await ec2.send(new RevokeSecurityGroupIngressCommand({ GroupId: created.GroupId, SecurityGroupRuleIds: [udp.SecurityGroupRuleId!] }));
    await ec2.send(
      new RevokeSecurityGroupEgressCommand({ GroupId: created.GroupId, IpPermissions: [{ IpProtocol: "-1", IpRanges: [{ CidrIp: "0.0.0.0/0" }] }] }),
    );
    assert.equal(
      await errorName(
        ec2.send(
          new RevokeSecurityGroupEgressCommand({ GroupId: created.GroupId, IpPermissions: [{ IpProtocol: "-1", IpRanges: [{ CidrIp: "0.0.0.0/0" }] }] }),
        ),
      ),
      "InvalidPermission.NotFound",
    );
    await ec2.send(
      new AuthorizeSecurityGroupEgressCommand({
        GroupId: created.GroupId,
        IpPermissions: [{ IpProtocol: "tcp", FromPort: 443, ToPort: 443, IpRanges: [{ CidrIp: "0.0.0.0/0" }] }],
      }),
    );
    const [after] = (await ec2.send(new DescribeSecurityGroupsCommand({ GroupIds: [created.GroupId!] }))).SecurityGroups!;
    assert.deepEqual(
      after!.IpPermissionsEgress!.map((p) => [p.IpProtocol, p.FromPort]),
      [["tcp", 443]],
    );
    assert.equal(after!.IpPermissions!.length, 2);

    const [defaultGroup] = (await ec2.send(new DescribeSecurityGroupsCommand({ GroupNames: ["default"] }))).SecurityGroups!;
    assert.equal(await errorName(ec2.send(new DeleteSecurityGroupCommand({ GroupId: defaultGroup!.GroupId }))), "CannotDelete");
    assert.equal(await errorName(ec2.send(new DescribeSecurityGroupsCommand({ GroupIds: ["sg-nothex"] }))), "InvalidGroupId.Malformed");
    assert.equal(await errorName(ec2.send(new DescribeSecurityGroupsCommand({ GroupIds: ["sg-0123456789abcdef0"] }))), "InvalidGroup.NotFound");
    // Another account cannot see or change the group.
    const stranger = kiln.ec2({ accessKeyId: "100000000008" });
    assert.equal(await errorName(stranger.send(new DescribeSecurityGroupsCommand({ GroupIds: [created.GroupId!] }))), "InvalidGroup.NotFound");
    assert.equal(await errorName(stranger.send(new DeleteSecurityGroupCommand({ GroupId: created.GroupId }))), "InvalidGroup.NotFound");
    await ec2.send(new DeleteSecurityGroupCommand({ GroupId: created.GroupId }));
    assert.equal(await errorName(ec2.send(new DescribeSecurityGroupsCommand({ GroupIds: [created.GroupId!] }))), "InvalidGroup.NotFound");
  });
});
