// Network interfaces as DescribeNetworkInterfaces and DescribeInstances show them, with EC2's
// DNS names for their addresses.
import type { NetworkInterface } from "@aws-sdk/client-ec2";
import { interfaceGroups, type NetworkInterfaceRow } from "../../store/meta/network.js";
import { listSecurityGroups } from "../../store/meta/security-groups.js";
import type { ActionContext } from "./action.js";
import { tagList, type Tagged } from "./listing.js";

/** EC2's DNS names for an address: `ip-10-0-0-5.ec2.internal` in us-east-1, `…​.<region>.compute.internal` elsewhere. */
export function privateDnsName(region: string, ip: string): string {
  return `ip-${ip.replaceAll(".", "-")}.${region === "us-east-1" ? "ec2.internal" : `${region}.compute.internal`}`;
}

export function publicDnsName(region: string, ip: string): string {
  return `ec2-${ip.replaceAll(".", "-")}.${region === "us-east-1" ? "compute-1.amazonaws.com" : `${region}.compute.amazonaws.com`}`;
}

export async function toNetworkInterfaces(ctx: ActionContext, rows: readonly Tagged<NetworkInterfaceRow>[]): Promise<NetworkInterface[]> {
  const groups = await interfaceGroups(
    ctx.meta.db,
    rows.map((r) => r.row.network_interface_id),
  );
  const groupRows = await listSecurityGroups(ctx.meta.db, ctx, { ids: [...new Set([...groups.values()].flat())] });
  const nameOf = new Map(groupRows.map((g) => [g.group_id, g.group_name]));
  return rows.map(({ row, tags }) => {
    const association = row.public_ip ? { IpOwnerId: "amazon", PublicIp: row.public_ip, PublicDnsName: publicDnsName(ctx.region, row.public_ip) } : undefined;
    return {
      NetworkInterfaceId: row.network_interface_id,
      SubnetId: row.subnet_id,
      VpcId: row.vpc_id,
      AvailabilityZone: row.availability_zone,
      Description: row.description,
      OwnerId: row.account_id,
      RequesterManaged: false,
      Status: row.instance_id ? "in-use" : "available",
      MacAddress: row.mac_address,
      PrivateIpAddress: row.private_ip,
      PrivateDnsName: privateDnsName(ctx.region, row.private_ip),
      SourceDestCheck: Boolean(row.source_dest_check),
      InterfaceType: "interface",
      Groups: (groups.get(row.network_interface_id) ?? []).map((id) => ({ GroupId: id, GroupName: nameOf.get(id) })),
      Attachment: row.instance_id
        ? {
            AttachmentId: row.attachment_id!,
            AttachTime: new Date(row.attach_time!),
            DeleteOnTermination: Boolean(row.delete_on_termination),
            DeviceIndex: row.device_index!,
            NetworkCardIndex: 0,
            InstanceId: row.instance_id,
            InstanceOwnerId: row.account_id,
            Status: "attached",
          }
        : undefined,
      Association: association,
      PrivateIpAddresses: [
        { Primary: true, PrivateIpAddress: row.private_ip, PrivateDnsName: privateDnsName(ctx.region, row.private_ip), Association: association },
      ],
      Ipv6Addresses: [],
      TagSet: tagList(tags),
    };
  });
}
