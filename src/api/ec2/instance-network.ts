// Where a launched instance sits on the network: its subnet (named, or the default subnet of its
// zone), security groups (named, or its VPC's default group), private address and public address;
// and how that reads back in DescribeInstances.
import type { InstanceNetworkInterface, RunInstancesRequest } from "@aws-sdk/client-ec2";
import { randomInt } from "node:crypto";
import { ApiError } from "../../protocol/errors.js";
import type { LaunchInterface } from "../../store/meta/instances.js";
import { addressInSubnet, listNetworkInterfaces, listSubnets, type NetworkInterfaceRow, type SubnetRow } from "../../store/meta/network.js";
import { listSecurityGroups } from "../../store/meta/security-groups.js";
import type { ActionContext } from "./action.js";
import { toNetworkInterfaces } from "./network-interfaces.js";
import { groupsById, groupsByName, requireDefaultVpc, subnetOf } from "./lookups.js";

/** The instance's zone and its primary interface, from RunInstances' parameters. */
export async function planLaunchNetwork(
  ctx: ActionContext,
  input: RunInstancesRequest,
  requestedZone: string | undefined,
): Promise<{ zone: string; network: LaunchInterface }> {
  const primary = input.NetworkInterfaces?.find((n) => (n.DeviceIndex ?? 0) === 0);
  if (primary && (input.SubnetId || input.SecurityGroupIds?.length || input.SecurityGroups?.length)) {
    throw new ApiError(
      "InvalidParameterCombination",
      "Network interfaces and an instance-level subnet ID or security groups may not be specified on the same request",
    );
  }
  const subnetId = primary?.SubnetId ?? input.SubnetId;
  let subnet: SubnetRow;
  if (subnetId) {
    subnet = await subnetOf(ctx, subnetId);
    if (requestedZone && requestedZone !== subnet.availability_zone) {
      throw new ApiError(
        "InvalidParameterValue",
        `Value (${requestedZone}) for parameter availabilityZone is invalid. Subnet '${subnet.subnet_id}' is in the availability zone ${subnet.availability_zone}`,
      );
    }
  } else {
    const vpc = await requireDefaultVpc(ctx);
    const defaults = (await listSubnets(ctx.meta.db, ctx, { vpcId: vpc.vpc_id })).filter((s) => s.default_for_az);
    const found = requestedZone
      ? defaults.find((s) => s.availability_zone === requestedZone)
      : defaults.sort((a, b) => a.availability_zone.localeCompare(b.availability_zone))[0];
    if (!found) throw new ApiError("InvalidParameterValue", `No default subnet for availability zone: '${requestedZone ?? ""}'.`);
    subnet = found;
  }

  const groupIds = primary?.Groups ?? input.SecurityGroupIds ?? [];
  const groupNames = input.SecurityGroups ?? [];
  const groups = [...(groupIds.length ? await groupsById(ctx, groupIds) : [])];
  if (groupNames.length) {
    if (!subnet.default_for_az) {
      throw new ApiError("InvalidParameterCombination", "The parameter groupName cannot be used with the parameter subnet");
    }
    groups.push(...(await groupsByName(ctx, groupNames)));
  }
  for (const group of groups) {
    if (group.vpc_id !== subnet.vpc_id)
      throw new ApiError("InvalidParameter", `Security group ${group.group_id} and subnet ${subnet.subnet_id} belong to different networks.`);
  }
  if (!groups.length) groups.push(...(await listSecurityGroups(ctx.meta.db, ctx, { vpcId: subnet.vpc_id, names: ["default"] })));

  const privateIp = primary?.PrivateIpAddress ?? input.PrivateIpAddress;
  if (privateIp) {
    if ((input.MaxCount ?? 1) > 1) throw new ApiError("InvalidParameterValue", "A private IP address can only be given when launching one instance.");
    if (!addressInSubnet(privateIp, subnet))
      throw new ApiError("InvalidParameterValue", `Address ${privateIp} does not fall within the subnet's address range`);
    if ((await listNetworkInterfaces(ctx.meta.db, ctx, { subnetId: subnet.subnet_id })).some((n) => n.private_ip === privateIp)) {
      throw new ApiError("InvalidIPAddress.InUse", `Address ${privateIp} is in use.`);
    }
  }
  const wantsPublic = primary?.AssociatePublicIpAddress ?? Boolean(subnet.map_public_ip_on_launch);
  return {
    zone: subnet.availability_zone,
    network: {
      subnet,
      groupIds: [...new Set(groups.map((g) => g.group_id))],
      privateIp,
      publicIp: () => (wantsPublic ? (ctx.machines.reachableAddress?.() ?? publicAddress()) : null),
      description: primary?.Description ?? "",
      deleteOnTermination: primary?.DeleteOnTermination ?? true,
    },
  };
}

/** An instance's primary interface (device index 0). */
export async function primaryInterface(ctx: ActionContext, instanceId: string): Promise<NetworkInterfaceRow | undefined> {
  return (await listNetworkInterfaces(ctx.meta.db, ctx, { instanceIds: [instanceId] })).find((n) => n.device_index === 0);
}

/** An address from a range EC2 hands out in us-east-1 (3.80.0.0/12). */
const publicAddress = () => `3.${80 + randomInt(16)}.${randomInt(256)}.${1 + randomInt(254)}`;

/** Each instance's network interfaces as DescribeInstances shows them, by instance id. */
export async function instanceInterfaces(ctx: ActionContext, instanceIds: readonly string[]): Promise<Map<string, InstanceNetworkInterface[]>> {
  const rows = await listNetworkInterfaces(ctx.meta.db, ctx, { instanceIds });
  const described = await toNetworkInterfaces(
    ctx,
    rows.map((row) => ({ row, tags: new Map() })),
  );
  const byInstance = new Map<string, InstanceNetworkInterface[]>();
  for (const eni of described) {
    const id = eni.Attachment!.InstanceId!;
    const view: InstanceNetworkInterface = {
      NetworkInterfaceId: eni.NetworkInterfaceId,
      SubnetId: eni.SubnetId,
      VpcId: eni.VpcId,
      Description: eni.Description,
      OwnerId: eni.OwnerId,
      Status: eni.Status,
      MacAddress: eni.MacAddress,
      PrivateIpAddress: eni.PrivateIpAddress,
      PrivateDnsName: eni.PrivateDnsName,
      SourceDestCheck: eni.SourceDestCheck,
      Groups: eni.Groups,
      Attachment: {
        AttachmentId: eni.Attachment!.AttachmentId,
        AttachTime: eni.Attachment!.AttachTime,
        DeleteOnTermination: eni.Attachment!.DeleteOnTermination,
        DeviceIndex: eni.Attachment!.DeviceIndex,
        NetworkCardIndex: 0,
        Status: "attached",
      },
      Association: eni.Association
        ? { IpOwnerId: eni.Association.IpOwnerId, PublicIp: eni.Association.PublicIp, PublicDnsName: eni.Association.PublicDnsName }
        : undefined,
      PrivateIpAddresses: eni.PrivateIpAddresses?.map((p) => ({
        Primary: p.Primary,
        PrivateIpAddress: p.PrivateIpAddress,
        PrivateDnsName: p.PrivateDnsName,
        Association: p.Association
          ? { IpOwnerId: p.Association.IpOwnerId, PublicIp: p.Association.PublicIp, PublicDnsName: p.Association.PublicDnsName }
          : undefined,
      })),
      Ipv6Addresses: [],
      InterfaceType: "interface",
    };
    const views = byInstance.get(id);
    if (views) views.push(view);
    else byInstance.set(id, [view]);
  }
  for (const list of byInstance.values()) list.sort((a, b) => a.Attachment!.DeviceIndex! - b.Attachment!.DeviceIndex!);
  return byInstance;
}
