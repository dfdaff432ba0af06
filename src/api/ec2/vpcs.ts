// The network around instances: VPCs, subnets, internet gateways, route tables and network
// interfaces. Every account has a default network in every region, made on first use
// (store/meta/network.ts); users may add VPCs and subnets of their own.
import type {
  AttachInternetGatewayRequest,
  CreateInternetGatewayRequest,
  CreateSubnetRequest,
  CreateVpcRequest,
  DeleteInternetGatewayRequest,
  DeleteSubnetRequest,
  DeleteVpcRequest,
  DescribeInternetGatewaysRequest,
  DescribeNetworkInterfacesRequest,
  DescribeRouteTablesRequest,
  DescribeSubnetsRequest,
  DescribeVpcAttributeRequest,
  DescribeVpcsRequest,
  DetachInternetGatewayRequest,
  InternetGateway,
  ModifySubnetAttributeRequest,
  ModifyVpcAttributeRequest,
  RouteTable,
  Subnet,
  Vpc,
} from "@aws-sdk/client-ec2";
import { cidrContains, cidrsOverlap, parseCidr } from "../../domain/cidr.js";
import { newId, requestedIds } from "../../domain/ids.js";
import { zonesOf } from "../../domain/regions.js";
import { ApiError } from "../../protocol/errors.js";
import {
  availableAddresses,
  defaultVpc,
  forgetDefaultNetwork,
  insertInternetGateway,
  insertSubnet,
  insertVpc,
  interfaceGroups,
  listInternetGateways,
  listNetworkInterfaces,
  listRouteTables,
  listSubnets,
  listVpcs,
  removeResource,
  setGatewayVpc,
  setMapPublicIpOnLaunch,
  updateVpc,
  type InternetGatewayRow,
  type NetworkInterfaceRow,
  type Route,
  type RouteTableRow,
  type SubnetRow,
  type VpcRow,
} from "../../store/meta/network.js";
import { atomically } from "../../store/meta/database.js";
import { deleteSecurityGroup, listSecurityGroups } from "../../store/meta/security-groups.js";
import { putTags } from "../../store/meta/tags.js";
import type { ActionContext, ActionTable } from "./action.js";
import { toNetworkInterfaces } from "./network-interfaces.js";
import { gatewayNotFound, interfaceNotFound, network, routeTableNotFound, subnetNotFound, subnetOf, vpcNotFound, vpcOf } from "./lookups.js";
import { checkListing, describeAction, listPage, requireIds, tagList, type Tagged } from "./listing.js";
import { TAG_LIMITS, tagSpecificationsFor } from "./tag-specifications.js";

async function tagNew(ctx: ActionContext, id: string, type: string, tags: { key: string; value: string }[] | undefined): Promise<void> {
  if (tags?.length) await putTags(ctx.meta.db, ctx, [{ id, type }], tags, TAG_LIMITS.perResource);
}

const arn = (ctx: ActionContext, kind: string, id: string) => `arn:aws:ec2:${ctx.region}:${ctx.accountId}:${kind}/${id}`;
const zoneIdOf = (ctx: ActionContext, zone: string) => zonesOf(ctx.region).find((z) => z.zoneName === zone)?.zoneId;

function toVpc(_ctx: ActionContext, { row, tags }: Tagged<VpcRow>): Vpc {
  return {
    VpcId: row.vpc_id,
    OwnerId: row.account_id,
    State: "available",
    CidrBlock: row.cidr_block,
    CidrBlockAssociationSet: [{ AssociationId: row.cidr_association_id, CidrBlock: row.cidr_block, CidrBlockState: { State: "associated" } }],
    DhcpOptionsId: row.dhcp_options_id,
    InstanceTenancy: row.instance_tenancy as Vpc["InstanceTenancy"],
    IsDefault: Boolean(row.is_default),
    Tags: tags.size ? tagList(tags) : undefined,
  };
}

async function toSubnet(ctx: ActionContext, { row, tags }: Tagged<SubnetRow>): Promise<Subnet> {
  return {
    SubnetId: row.subnet_id,
    SubnetArn: arn(ctx, "subnet", row.subnet_id),
    VpcId: row.vpc_id,
    OwnerId: row.account_id,
    State: "available",
    CidrBlock: row.cidr_block,
    AvailabilityZone: row.availability_zone,
    AvailabilityZoneId: zoneIdOf(ctx, row.availability_zone),
    AvailableIpAddressCount: await availableAddresses(ctx.meta.db, row),
    DefaultForAz: Boolean(row.default_for_az),
    MapPublicIpOnLaunch: Boolean(row.map_public_ip_on_launch),
    MapCustomerOwnedIpOnLaunch: false,
    AssignIpv6AddressOnCreation: false,
    Ipv6CidrBlockAssociationSet: [],
    EnableDns64: false,
    Ipv6Native: false,
    PrivateDnsNameOptionsOnLaunch: { HostnameType: "ip-name", EnableResourceNameDnsARecord: false, EnableResourceNameDnsAAAARecord: false },
    Tags: tags.size ? tagList(tags) : undefined,
  };
}

const toGateway = ({ row, tags }: Tagged<InternetGatewayRow>): InternetGateway => ({
  InternetGatewayId: row.internet_gateway_id,
  OwnerId: row.account_id,
  // EC2 reports an attached internet gateway's attachment as "available", outside AttachmentStatus.
  Attachments: row.vpc_id ? [{ State: "available" as "attached", VpcId: row.vpc_id }] : [],
  Tags: tags.size ? tagList(tags) : undefined,
});

const toRouteTable = ({ row, tags }: Tagged<RouteTableRow>): RouteTable => ({
  RouteTableId: row.route_table_id,
  VpcId: row.vpc_id,
  OwnerId: row.account_id,
  Associations: row.main
    ? [{ Main: true, RouteTableAssociationId: row.main_association_id!, RouteTableId: row.route_table_id, AssociationState: { State: "associated" } }]
    : [],
  PropagatingVgws: [],
  Routes: (JSON.parse(row.routes) as Route[]).map((r) => ({ DestinationCidrBlock: r.destination, GatewayId: r.gatewayId, Origin: r.origin, State: "active" })),
  Tags: tags.size ? tagList(tags) : undefined,
});

const VPC_FIELDS = {
  "vpc-id": (t: Tagged<VpcRow>) => t.row.vpc_id,
  cidr: (t: Tagged<VpcRow>) => t.row.cidr_block,
  "cidr-block-association.cidr-block": (t: Tagged<VpcRow>) => t.row.cidr_block,
  "cidr-block-association.association-id": (t: Tagged<VpcRow>) => t.row.cidr_association_id,
  "cidr-block-association.state": () => "associated",
  "dhcp-options-id": (t: Tagged<VpcRow>) => t.row.dhcp_options_id,
  "is-default": (t: Tagged<VpcRow>) => String(Boolean(t.row.is_default)),
  "owner-id": (t: Tagged<VpcRow>) => t.row.account_id,
  state: () => "available",
};

const SUBNET_FIELDS = {
  "subnet-id": (t: Tagged<SubnetRow>) => t.row.subnet_id,
  "subnet-arn": (t: Tagged<SubnetRow>) => `arn:aws:ec2:${t.row.region}:${t.row.account_id}:subnet/${t.row.subnet_id}`,
  "vpc-id": (t: Tagged<SubnetRow>) => t.row.vpc_id,
  "availability-zone": (t: Tagged<SubnetRow>) => t.row.availability_zone,
  "availability-zone-id": (t: Tagged<SubnetRow>) => zonesOf(t.row.region).find((z) => z.zoneName === t.row.availability_zone)?.zoneId,
  "cidr-block": (t: Tagged<SubnetRow>) => t.row.cidr_block,
  cidr: (t: Tagged<SubnetRow>) => t.row.cidr_block,
  cidrBlock: (t: Tagged<SubnetRow>) => t.row.cidr_block,
  "default-for-az": (t: Tagged<SubnetRow>) => String(Boolean(t.row.default_for_az)),
  defaultForAz: (t: Tagged<SubnetRow>) => String(Boolean(t.row.default_for_az)),
  "map-public-ip-on-launch": (t: Tagged<SubnetRow>) => String(Boolean(t.row.map_public_ip_on_launch)),
  "owner-id": (t: Tagged<SubnetRow>) => t.row.account_id,
  state: () => "available",
};

const GATEWAY_FIELDS = {
  "internet-gateway-id": (t: Tagged<InternetGatewayRow>) => t.row.internet_gateway_id,
  "attachment.vpc-id": (t: Tagged<InternetGatewayRow>) => t.row.vpc_id ?? undefined,
  "attachment.state": (t: Tagged<InternetGatewayRow>) => (t.row.vpc_id ? "available" : undefined),
  "owner-id": (t: Tagged<InternetGatewayRow>) => t.row.account_id,
};

const ROUTE_TABLE_FIELDS = {
  "route-table-id": (t: Tagged<RouteTableRow>) => t.row.route_table_id,
  "vpc-id": (t: Tagged<RouteTableRow>) => t.row.vpc_id,
  "association.main": (t: Tagged<RouteTableRow>) => (t.row.main ? "true" : undefined),
  "association.route-table-association-id": (t: Tagged<RouteTableRow>) => t.row.main_association_id ?? undefined,
  "association.route-table-id": (t: Tagged<RouteTableRow>) => (t.row.main ? t.row.route_table_id : undefined),
  "owner-id": (t: Tagged<RouteTableRow>) => t.row.account_id,
  "route.destination-cidr-block": (t: Tagged<RouteTableRow>) => (JSON.parse(t.row.routes) as Route[]).map((r) => r.destination),
  "route.gateway-id": (t: Tagged<RouteTableRow>) => (JSON.parse(t.row.routes) as Route[]).map((r) => r.gatewayId),
  "route.origin": (t: Tagged<RouteTableRow>) => (JSON.parse(t.row.routes) as Route[]).map((r) => r.origin),
  "route.state": () => "active",
};

type DescribedInterface = Tagged<NetworkInterfaceRow>;

/** DescribeNetworkInterfaces' filters; `group-id` reads the interfaces' groups. */
const interfaceFields = (groupsOf: (interfaceId: string) => readonly string[]) => ({
  "network-interface-id": (t: DescribedInterface) => t.row.network_interface_id,
  "subnet-id": (t: DescribedInterface) => t.row.subnet_id,
  "vpc-id": (t: DescribedInterface) => t.row.vpc_id,
  "availability-zone": (t: DescribedInterface) => t.row.availability_zone,
  "attachment.instance-id": (t: DescribedInterface) => t.row.instance_id ?? undefined,
  "attachment.attachment-id": (t: DescribedInterface) => t.row.attachment_id ?? undefined,
  "attachment.device-index": (t: DescribedInterface) => (t.row.device_index === null ? undefined : String(t.row.device_index)),
  "attachment.status": (t: DescribedInterface) => (t.row.instance_id ? "attached" : undefined),
  "attachment.delete-on-termination": (t: DescribedInterface) => String(Boolean(t.row.delete_on_termination)),
  "private-ip-address": (t: DescribedInterface) => t.row.private_ip,
  "addresses.private-ip-address": (t: DescribedInterface) => t.row.private_ip,
  "association.public-ip": (t: DescribedInterface) => t.row.public_ip ?? undefined,
  "mac-address": (t: DescribedInterface) => t.row.mac_address,
  description: (t: DescribedInterface) => t.row.description,
  "group-id": (t: DescribedInterface) => groupsOf(t.row.network_interface_id),
  "owner-id": (t: DescribedInterface) => t.row.account_id,
  status: (t: DescribedInterface) => (t.row.instance_id ? "in-use" : "available"),
  "source-dest-check": (t: DescribedInterface) => String(Boolean(t.row.source_dest_check)),
  "interface-type": () => "interface",
});

function checkCidr(text: string | undefined, code: "InvalidVpc.Range" | "InvalidSubnet.Range") {
  const cidr = text ? parseCidr(text) : undefined;
  // VPCs and subnets are between /16 and /28.
  if (!cidr || cidr.prefix < 16 || cidr.prefix > 28) throw new ApiError(code, `The CIDR '${text ?? ""}' is invalid.`);
  return cidr;
}

export const vpcActions: ActionTable = {
  DescribeVpcs: describeAction({
    member: "Vpcs",
    fields: VPC_FIELDS,
    prepare: network,
    ids: (input: DescribeVpcsRequest) => input.VpcIds,
    list: (ctx, ids) => listVpcs(ctx.meta.db, ctx, { ids }),
    idOf: (row) => row.vpc_id,
    notFound: vpcNotFound,
    render: (ctx, page) => page.map((t) => toVpc(ctx, t)),
  }),

  CreateVpc: {
    check(_ctx, input: CreateVpcRequest) {
      checkCidr(input.CidrBlock, "InvalidVpc.Range");
      return tagSpecificationsFor(input.TagSpecifications, ["vpc"]).get("vpc");
    },
    async run(ctx, input: CreateVpcRequest, tags: { key: string; value: string }[] | undefined) {
      await network(ctx);
      const row = await atomically(ctx.meta.db, (tx) =>
        insertVpc(tx, ctx, { cidr: input.CidrBlock!, isDefault: false, tenancy: input.InstanceTenancy ?? "default" }),
      );
      await tagNew(ctx, row.vpc_id, "vpc", tags);
      return { Vpc: toVpc(ctx, { row, tags: new Map((tags ?? []).map((t) => [t.key, t.value])) }) };
    },
  },

  CreateDefaultVpc: {
    async check(ctx) {
      await network(ctx);
      if (await defaultVpc(ctx.meta.db, ctx)) throw new ApiError("DefaultVpcAlreadyExists", "A Default VPC already exists for this account in this region.");
    },
    async run(ctx) {
      // The default network, made again as on first use.
      await forgetDefaultNetwork(ctx.meta.db, ctx);
      await network(ctx);
      const row = (await defaultVpc(ctx.meta.db, ctx))!;
      return { Vpc: toVpc(ctx, { row, tags: new Map() }) };
    },
  },

  DeleteVpc: {
    async check(ctx, input: DeleteVpcRequest) {
      const vpc = await vpcOf(ctx, input.VpcId!);
      const db = ctx.meta.db;
      const subnets = await listSubnets(db, ctx, { vpcId: vpc.vpc_id });
      const gateways = await listInternetGateways(db, ctx, { vpcId: vpc.vpc_id });
      const groups = (await listSecurityGroups(db, ctx, { vpcId: vpc.vpc_id })).filter((g) => g.group_name !== "default");
      const tables = (await listRouteTables(db, ctx, { vpcId: vpc.vpc_id })).filter((t) => !t.main);
      const interfaces = await listNetworkInterfaces(db, ctx, { vpcId: vpc.vpc_id });
      if (subnets.length || gateways.length || groups.length || tables.length || interfaces.length) {
        throw new ApiError("DependencyViolation", `The vpc '${vpc.vpc_id}' has dependencies and cannot be deleted.`);
      }
      return vpc;
    },
    async run(ctx, _input: DeleteVpcRequest, vpc: VpcRow) {
      await atomically(ctx.meta.db, async (tx) => {
        for (const table of await listRouteTables(tx, ctx, { vpcId: vpc.vpc_id })) await removeResource(tx, ctx, "route_tables", table.route_table_id);
        for (const group of await listSecurityGroups(tx, ctx, { vpcId: vpc.vpc_id })) await deleteSecurityGroup(tx, ctx, group.group_id);
        await removeResource(tx, ctx, "vpcs", vpc.vpc_id);
      });
      return { Return: true };
    },
  },

  DescribeVpcAttribute: {
    async check(ctx, input: DescribeVpcAttributeRequest) {
      if (!["enableDnsSupport", "enableDnsHostnames", "enableNetworkAddressUsageMetrics"].includes(input.Attribute ?? "")) {
        throw new ApiError("InvalidParameterValue", `Value (${input.Attribute}) for parameter attribute is invalid.`);
      }
      return vpcOf(ctx, input.VpcId!);
    },
    run(_ctx, input: DescribeVpcAttributeRequest, vpc: VpcRow) {
      const value = (flag: number) => ({ Value: Boolean(flag) });
      if (input.Attribute === "enableDnsSupport") return { VpcId: vpc.vpc_id, EnableDnsSupport: value(vpc.enable_dns_support) };
      if (input.Attribute === "enableDnsHostnames") return { VpcId: vpc.vpc_id, EnableDnsHostnames: value(vpc.enable_dns_hostnames) };
      return { VpcId: vpc.vpc_id, EnableNetworkAddressUsageMetrics: { Value: false } };
    },
  },

  ModifyVpcAttribute: {
    check: (ctx, input: ModifyVpcAttributeRequest) => vpcOf(ctx, input.VpcId!),
    async run(ctx, input: ModifyVpcAttributeRequest, vpc: VpcRow) {
      const set: Partial<VpcRow> = {};
      if (input.EnableDnsSupport?.Value !== undefined) set.enable_dns_support = input.EnableDnsSupport.Value ? 1 : 0;
      if (input.EnableDnsHostnames?.Value !== undefined) set.enable_dns_hostnames = input.EnableDnsHostnames.Value ? 1 : 0;
      await updateVpc(ctx.meta.db, vpc.vpc_id, set);
    },
  },

  DescribeSubnets: describeAction({
    member: "Subnets",
    fields: SUBNET_FIELDS,
    prepare: network,
    ids: (input: DescribeSubnetsRequest) => input.SubnetIds,
    list: (ctx, ids) => listSubnets(ctx.meta.db, ctx, { ids }),
    idOf: (row) => row.subnet_id,
    notFound: subnetNotFound,
    render: (ctx, page) => Promise.all(page.map((t) => toSubnet(ctx, t))),
  }),

  CreateSubnet: {
    async check(ctx, input: CreateSubnetRequest) {
      const vpc = await vpcOf(ctx, input.VpcId!);
      const cidr = checkCidr(input.CidrBlock, "InvalidSubnet.Range");
      if (!cidrContains(parseCidr(vpc.cidr_block)!, cidr)) throw new ApiError("InvalidSubnet.Range", `The CIDR '${input.CidrBlock}' is invalid.`);
      for (const other of await listSubnets(ctx.meta.db, ctx, { vpcId: vpc.vpc_id })) {
        if (cidrsOverlap(parseCidr(other.cidr_block)!, cidr))
          throw new ApiError("InvalidSubnet.Conflict", `The CIDR '${input.CidrBlock}' conflicts with another subnet`);
      }
      const zones = zonesOf(ctx.region);
      const zone =
        input.AvailabilityZone ??
        zones.find((z) => z.zoneId === input.AvailabilityZoneId)?.zoneName ??
        (input.AvailabilityZoneId ? undefined : zones[0]!.zoneName);
      if (!zone || !zones.some((z) => z.zoneName === zone))
        throw new ApiError(
          "InvalidParameterValue",
          `Value (${input.AvailabilityZone ?? input.AvailabilityZoneId}) for parameter availabilityZone is invalid. Subnets can currently only be created in the following availability zones: ${zones.map((z) => z.zoneName).join(", ")}.`,
        );
      return { zone, tags: tagSpecificationsFor(input.TagSpecifications, ["subnet"]).get("subnet") };
    },
    async run(ctx, input: CreateSubnetRequest, { zone, tags }: { zone: string; tags?: { key: string; value: string }[] }) {
      const row: SubnetRow = {
        account_id: ctx.accountId,
        region: ctx.region,
        subnet_id: newId("subnet"),
        vpc_id: input.VpcId!,
        cidr_block: input.CidrBlock!,
        availability_zone: zone,
        default_for_az: 0,
        map_public_ip_on_launch: 0,
      };
      await insertSubnet(ctx.meta.db, row);
      await tagNew(ctx, row.subnet_id, "subnet", tags);
      return { Subnet: await toSubnet(ctx, { row, tags: new Map((tags ?? []).map((t) => [t.key, t.value])) }) };
    },
  },

  ModifySubnetAttribute: {
    check: (ctx, input: ModifySubnetAttributeRequest) => subnetOf(ctx, input.SubnetId!),
    async run(ctx, input: ModifySubnetAttributeRequest, subnet: SubnetRow) {
      if (input.MapPublicIpOnLaunch?.Value !== undefined) {
        await setMapPublicIpOnLaunch(ctx.meta.db, subnet.subnet_id, input.MapPublicIpOnLaunch.Value);
      }
    },
  },

  DeleteSubnet: {
    async check(ctx, input: DeleteSubnetRequest) {
      const subnet = await subnetOf(ctx, input.SubnetId!);
      if ((await listNetworkInterfaces(ctx.meta.db, ctx, { subnetId: subnet.subnet_id })).length) {
        throw new ApiError("DependencyViolation", `The subnet '${subnet.subnet_id}' has dependencies and cannot be deleted.`);
      }
    },
    async run(ctx, input: DeleteSubnetRequest) {
      await removeResource(ctx.meta.db, ctx, "subnets", input.SubnetId!);
    },
  },

  DescribeInternetGateways: describeAction({
    member: "InternetGateways",
    fields: GATEWAY_FIELDS,
    prepare: network,
    ids: (input: DescribeInternetGatewaysRequest) => input.InternetGatewayIds,
    list: (ctx, ids) => listInternetGateways(ctx.meta.db, ctx, { ids }),
    idOf: (row) => row.internet_gateway_id,
    notFound: gatewayNotFound,
    render: (_ctx, page) => page.map(toGateway),
  }),

  CreateInternetGateway: {
    check: (_ctx, input: CreateInternetGatewayRequest) => tagSpecificationsFor(input.TagSpecifications, ["internet-gateway"]).get("internet-gateway"),
    async run(ctx, _input: CreateInternetGatewayRequest, tags: { key: string; value: string }[] | undefined) {
      const row: InternetGatewayRow = { account_id: ctx.accountId, region: ctx.region, internet_gateway_id: newId("igw"), vpc_id: null };
      await insertInternetGateway(ctx.meta.db, row);
      await tagNew(ctx, row.internet_gateway_id, "internet-gateway", tags);
      return { InternetGateway: toGateway({ row, tags: new Map((tags ?? []).map((t) => [t.key, t.value])) }) };
    },
  },

  AttachInternetGateway: {
    async check(ctx, input: AttachInternetGatewayRequest) {
      const vpc = await vpcOf(ctx, input.VpcId!);
      const [gateway] = await listInternetGateways(ctx.meta.db, ctx, { ids: [input.InternetGatewayId!] });
      if (!gateway) throw gatewayNotFound([input.InternetGatewayId!]);
      if (gateway.vpc_id)
        throw new ApiError("Resource.AlreadyAssociated", `resource ${gateway.internet_gateway_id} is already attached to network ${gateway.vpc_id}`);
      if ((await listInternetGateways(ctx.meta.db, ctx, { vpcId: vpc.vpc_id })).length)
        throw new ApiError("InvalidParameterValue", `Network ${vpc.vpc_id} already has an internet gateway attached`);
    },
    async run(ctx, input: AttachInternetGatewayRequest) {
      await setGatewayVpc(ctx.meta.db, input.InternetGatewayId!, input.VpcId!);
    },
  },

  DetachInternetGateway: {
    async check(ctx, input: DetachInternetGatewayRequest) {
      await network(ctx);
      const [gateway] = await listInternetGateways(ctx.meta.db, ctx, { ids: [input.InternetGatewayId!] });
      if (!gateway) throw gatewayNotFound([input.InternetGatewayId!]);
      if (gateway.vpc_id !== input.VpcId)
        throw new ApiError("Gateway.NotAttached", `resource ${gateway.internet_gateway_id} is not attached to network ${input.VpcId}`);
    },
    async run(ctx, input: DetachInternetGatewayRequest) {
      await setGatewayVpc(ctx.meta.db, input.InternetGatewayId!, null);
    },
  },

  DeleteInternetGateway: {
    async check(ctx, input: DeleteInternetGatewayRequest) {
      await network(ctx);
      const [gateway] = await listInternetGateways(ctx.meta.db, ctx, { ids: [input.InternetGatewayId!] });
      if (!gateway) throw gatewayNotFound([input.InternetGatewayId!]);
      if (gateway.vpc_id)
        throw new ApiError("DependencyViolation", `The internetGateway '${gateway.internet_gateway_id}' has dependencies and cannot be deleted.`);
    },
    async run(ctx, input: DeleteInternetGatewayRequest) {
      await removeResource(ctx.meta.db, ctx, "internet_gateways", input.InternetGatewayId!);
    },
  },

  DescribeRouteTables: describeAction({
    member: "RouteTables",
    fields: ROUTE_TABLE_FIELDS,
    bounds: { min: 5, max: 100 },
    prepare: network,
    ids: (input: DescribeRouteTablesRequest) => input.RouteTableIds,
    list: (ctx, ids) => listRouteTables(ctx.meta.db, ctx, { ids }),
    idOf: (row) => row.route_table_id,
    notFound: routeTableNotFound,
    render: (_ctx, page) => page.map(toRouteTable),
  }),

  DescribeNetworkInterfaces: {
    check: (_ctx, input: DescribeNetworkInterfacesRequest) =>
      checkListing(
        input,
        interfaceFields(() => []),
      ),
    async run(ctx, input: DescribeNetworkInterfacesRequest) {
      await network(ctx);
      const ids = requestedIds(input.NetworkInterfaceIds);
      const rows = await listNetworkInterfaces(ctx.meta.db, ctx, { ids });
      requireIds(ids, rows, (r) => r.network_interface_id, interfaceNotFound);
      const groups = await interfaceGroups(
        ctx.meta.db,
        rows.map((r) => r.network_interface_id),
      );
      const fields = interfaceFields((id) => groups.get(id) ?? []);
      const { page, nextToken } = await listPage(ctx, rows, (r) => r.network_interface_id, input, fields);
      return { NetworkInterfaces: await toNetworkInterfaces(ctx, page), NextToken: nextToken };
    },
  },
};
