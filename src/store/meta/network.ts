// VPCs, subnets, internet gateways, route tables and network interfaces, and the default network
// every account gets in every region on first use, as AWS makes it: a 172.31.0.0/16 VPC, a /20
// default subnet per zone that gives instances public addresses, an attached internet gateway, a
// main route table routing 0.0.0.0/0 through it, and a default security group.
import type { Transaction } from "kysely";
import { formatCidr, ipInCidr, ipToNumber, numberToIp, parseCidr, usableRange } from "../../domain/cidr.js";
import { groupBy } from "../../domain/collections.js";
import { newId } from "../../domain/ids.js";
import { insertInBatches } from "./batches.js";
import type { MetaDb } from "./database.js";
import { atomically } from "./database.js";
import type { InternetGatewayTable, MetaSchema, NetworkInterfaceTable, RouteTableTable, SubnetTable, VpcTable } from "./schema.js";
import { ALL_TRAFFIC_OUT, insertSecurityGroup } from "./security-groups.js";
import type { Scope } from "./tags.js";

export type VpcRow = VpcTable;
export type SubnetRow = SubnetTable;
export type InternetGatewayRow = InternetGatewayTable;
export type RouteTableRow = RouteTableTable;
export type NetworkInterfaceRow = NetworkInterfaceTable;
type Db = MetaDb | Transaction<MetaSchema>;

export interface Route {
  destination: string;
  gatewayId: string;
  origin: "CreateRouteTable" | "CreateRoute";
}

export const DEFAULT_VPC_CIDR = "172.31.0.0/16";
/** Default subnets are /20s, one per zone in order: 172.31.0.0/20, 172.31.16.0/20, … */
const DEFAULT_SUBNET_BITS = 20;

const owned = (scope: Scope) => ({ account_id: scope.accountId, region: scope.region });

/**
 * A VPC with what every VPC comes with: its main route table (the local route) and its default
 * security group (members reach each other; everything may go out).
 */
export async function insertVpc(db: Db, scope: Scope, vpc: { cidr: string; isDefault: boolean; tenancy: string; extraRoutes?: Route[] }): Promise<VpcRow> {
  const row: VpcRow = {
    ...owned(scope),
    vpc_id: newId("vpc"),
    cidr_block: vpc.cidr,
    cidr_association_id: newId("vpc-cidr-assoc"),
    is_default: vpc.isDefault ? 1 : 0,
    instance_tenancy: vpc.tenancy,
    dhcp_options_id: newId("dopt"),
    enable_dns_support: 1,
    enable_dns_hostnames: vpc.isDefault ? 1 : 0,
  };
  await db.insertInto("vpcs").values(row).execute();
  const routes: Route[] = [{ destination: vpc.cidr, gatewayId: "local", origin: "CreateRouteTable" }, ...(vpc.extraRoutes ?? [])];
  await db
    .insertInto("route_tables")
    .values({
      ...owned(scope),
      route_table_id: newId("rtb"),
      vpc_id: row.vpc_id,
      main: 1,
      main_association_id: newId("rtbassoc"),
      routes: JSON.stringify(routes),
    })
    .execute();
  const group = { ...owned(scope), group_id: newId("sg"), vpc_id: row.vpc_id, group_name: "default", description: "default VPC security group" };
  const fromMembers = { ...ALL_TRAFFIC_OUT, is_egress: 0, cidr_ipv4: null, referenced_group_id: group.group_id, referenced_account_id: scope.accountId };
  await insertSecurityGroup(db, group, [fromMembers, ALL_TRAFFIC_OUT]);
  return row;
}

/** Makes the account's default network in this region unless it was made before. */
export async function ensureDefaultNetwork(db: MetaDb, scope: Scope, zones: readonly string[]): Promise<void> {
  const made = await db
    .selectFrom("default_networks")
    .select("vpc_id")
    .where("account_id", "=", scope.accountId)
    .where("region", "=", scope.region)
    .executeTakeFirst();
  if (made) return;
  await atomically(db, async (tx) => {
    const gatewayId = newId("igw");
    const vpc = await insertVpc(tx, scope, {
      cidr: DEFAULT_VPC_CIDR,
      isDefault: true,
      tenancy: "default",
      extraRoutes: [{ destination: "0.0.0.0/0", gatewayId, origin: "CreateRoute" }],
    });
    // The primary key settles a race between two first requests: one inserts, the other stops.
    const claimed = await tx
      .insertInto("default_networks")
      .values({ ...owned(scope), vpc_id: vpc.vpc_id })
      .onConflict((oc) => oc.columns(["account_id", "region"]).doNothing())
      .executeTakeFirst();
    if (Number(claimed.numInsertedOrUpdatedRows ?? 0) === 0) throw new DefaultNetworkRace();
    await tx
      .insertInto("internet_gateways")
      .values({ ...owned(scope), internet_gateway_id: gatewayId, vpc_id: vpc.vpc_id })
      .execute();
    const base = parseCidr(DEFAULT_VPC_CIDR)!.base;
    const subnetSize = 2 ** (32 - DEFAULT_SUBNET_BITS);
    for (const [i, zone] of zones.entries()) {
      await tx
        .insertInto("subnets")
        .values({
          ...owned(scope),
          subnet_id: newId("subnet"),
          vpc_id: vpc.vpc_id,
          cidr_block: formatCidr({ base: base + i * subnetSize, prefix: DEFAULT_SUBNET_BITS, size: subnetSize }),
          availability_zone: zone,
          default_for_az: 1,
          map_public_ip_on_launch: 1,
        })
        .execute();
    }
  }).catch((error: unknown) => {
    if (!(error instanceof DefaultNetworkRace)) throw error;
  });
}

class DefaultNetworkRace extends Error {}

export async function defaultVpc(db: Db, scope: Scope): Promise<VpcRow | undefined> {
  return db
    .selectFrom("vpcs")
    .selectAll()
    .where("account_id", "=", scope.accountId)
    .where("region", "=", scope.region)
    .where("is_default", "=", 1)
    .executeTakeFirst();
}

export async function listVpcs(db: Db, scope: Scope, q: { ids?: readonly string[] } = {}): Promise<VpcRow[]> {
  let query = db.selectFrom("vpcs").selectAll().where("account_id", "=", scope.accountId).where("region", "=", scope.region);
  if (q.ids) query = query.where("vpc_id", "in", q.ids.length ? q.ids : [""]);
  return query.orderBy("vpc_id").execute();
}

export async function listSubnets(db: Db, scope: Scope, q: { ids?: readonly string[]; vpcId?: string } = {}): Promise<SubnetRow[]> {
  let query = db.selectFrom("subnets").selectAll().where("account_id", "=", scope.accountId).where("region", "=", scope.region);
  if (q.ids) query = query.where("subnet_id", "in", q.ids.length ? q.ids : [""]);
  if (q.vpcId) query = query.where("vpc_id", "=", q.vpcId);
  return query.orderBy("subnet_id").execute();
}

export async function listInternetGateways(db: Db, scope: Scope, q: { ids?: readonly string[]; vpcId?: string } = {}): Promise<InternetGatewayRow[]> {
  let query = db.selectFrom("internet_gateways").selectAll().where("account_id", "=", scope.accountId).where("region", "=", scope.region);
  if (q.ids) query = query.where("internet_gateway_id", "in", q.ids.length ? q.ids : [""]);
  if (q.vpcId) query = query.where("vpc_id", "=", q.vpcId);
  return query.orderBy("internet_gateway_id").execute();
}

export async function listRouteTables(db: Db, scope: Scope, q: { ids?: readonly string[]; vpcId?: string } = {}): Promise<RouteTableRow[]> {
  let query = db.selectFrom("route_tables").selectAll().where("account_id", "=", scope.accountId).where("region", "=", scope.region);
  if (q.ids) query = query.where("route_table_id", "in", q.ids.length ? q.ids : [""]);
  if (q.vpcId) query = query.where("vpc_id", "=", q.vpcId);
  return query.orderBy("route_table_id").execute();
}

export async function listNetworkInterfaces(
  db: Db,
  scope: Scope,
  q: { ids?: readonly string[]; instanceIds?: readonly string[]; subnetId?: string; vpcId?: string } = {},
): Promise<NetworkInterfaceRow[]> {
  let query = db.selectFrom("network_interfaces").selectAll().where("account_id", "=", scope.accountId).where("region", "=", scope.region);
  if (q.ids) query = query.where("network_interface_id", "in", q.ids.length ? q.ids : [""]);
  if (q.instanceIds) query = query.where("instance_id", "in", q.instanceIds.length ? q.instanceIds : [""]);
  if (q.subnetId) query = query.where("subnet_id", "=", q.subnetId);
  if (q.vpcId) query = query.where("vpc_id", "=", q.vpcId);
  return query.orderBy("network_interface_id").execute();
}

/** The security groups of each interface, by interface id. */
export async function interfaceGroups(db: Db, interfaceIds: readonly string[]): Promise<Map<string, string[]>> {
  const rows = interfaceIds.length
    ? await db.selectFrom("network_interface_groups").selectAll().where("network_interface_id", "in", interfaceIds).orderBy("group_id").execute()
    : [];
  const groups = new Map<string, string[]>();
  for (const [interfaceId, memberships] of groupBy(rows, (row) => row.network_interface_id))
    groups.set(
      interfaceId,
      memberships.map((row) => row.group_id),
    );
  return groups;
}

export async function setInterfaceGroups(db: Db, interfaceId: string, groupIds: readonly string[]): Promise<void> {
  await db.deleteFrom("network_interface_groups").where("network_interface_id", "=", interfaceId).execute();
  for (const groupId of groupIds) await db.insertInto("network_interface_groups").values({ network_interface_id: interfaceId, group_id: groupId }).execute();
}

/** The `count` lowest addresses of `subnet` no interface holds (fewer when the subnet has fewer). */
export async function freeAddresses(db: Db, subnet: SubnetRow, count: number): Promise<string[]> {
  const cidr = parseCidr(subnet.cidr_block)!;
  const used = new Set(
    (await db.selectFrom("network_interfaces").select("private_ip").where("subnet_id", "=", subnet.subnet_id).execute()).map((r) => ipToNumber(r.private_ip)),
  );
  const { first, last } = usableRange(cidr);
  const free: string[] = [];
  // At most `used.size + count` steps, whatever the subnet's size.
  for (let ip = first; ip <= last && free.length < count; ip++) if (!used.has(ip)) free.push(numberToIp(ip));
  return free;
}

/** Addresses left in a subnet (AvailableIpAddressCount). */
export async function availableAddresses(db: Db, subnet: SubnetRow): Promise<number> {
  const { first, last } = usableRange(parseCidr(subnet.cidr_block)!);
  const used = await db
    .selectFrom("network_interfaces")
    .select((eb) => eb.fn.countAll<number>().as("n"))
    .where("subnet_id", "=", subnet.subnet_id)
    .executeTakeFirstOrThrow();
  return last - first + 1 - Number(used.n);
}

export const addressInSubnet = (ip: string, subnet: SubnetRow) => {
  const n = ipToNumber(ip);
  const cidr = parseCidr(subnet.cidr_block)!;
  const { first, last } = usableRange(cidr);
  return n !== undefined && ipInCidr(n, cidr) && n >= first && n <= last;
};

/** New interfaces (made as they are taken, if a generator), each in the same security groups. */
export async function insertNetworkInterfaces(db: Db, rows: Iterable<NetworkInterfaceRow>, groupIds: readonly string[]): Promise<void> {
  const ids: string[] = [];
  function* taken() {
    for (const row of rows) {
      ids.push(row.network_interface_id);
      yield row;
    }
  }
  await insertInBatches(taken(), (batch) => db.insertInto("network_interfaces").values(batch).execute());
  const memberships = ids.flatMap((id) => groupIds.map((groupId) => ({ network_interface_id: id, group_id: groupId })));
  await insertInBatches(memberships, (batch) => db.insertInto("network_interface_groups").values(batch).execute());
}

/** Termination: interfaces marked DeleteOnTermination go; the rest are detached. */
export async function releaseInterfaces(db: Db, instanceId: string): Promise<void> {
  const rows = await db
    .selectFrom("network_interfaces")
    .select(["network_interface_id", "delete_on_termination"])
    .where("instance_id", "=", instanceId)
    .execute();
  const doomed = rows.filter((r) => r.delete_on_termination).map((r) => r.network_interface_id);
  if (doomed.length) {
    await db.deleteFrom("network_interface_groups").where("network_interface_id", "in", doomed).execute();
    await db.deleteFrom("network_interfaces").where("network_interface_id", "in", doomed).execute();
  }
  await db
    .updateTable("network_interfaces")
    .set({ instance_id: null, device_index: null, attachment_id: null, attach_time: null, public_ip: null })
    .where("instance_id", "=", instanceId)
    .execute();
}

/** Forgets that the default network was made, so the next use makes it again (CreateDefaultVpc). */
export async function forgetDefaultNetwork(db: Db, scope: Scope): Promise<void> {
  await db.deleteFrom("default_networks").where("account_id", "=", scope.accountId).where("region", "=", scope.region).execute();
}

export async function updateVpc(db: Db, vpcId: string, columns: Partial<Pick<VpcRow, "enable_dns_support" | "enable_dns_hostnames">>): Promise<void> {
  if (Object.keys(columns).length) await db.updateTable("vpcs").set(columns).where("vpc_id", "=", vpcId).execute();
}

export async function insertSubnet(db: Db, row: SubnetRow): Promise<void> {
  await db.insertInto("subnets").values(row).execute();
}

export async function setMapPublicIpOnLaunch(db: Db, subnetId: string, on: boolean): Promise<void> {
  await db
    .updateTable("subnets")
    .set({ map_public_ip_on_launch: on ? 1 : 0 })
    .where("subnet_id", "=", subnetId)
    .execute();
}

export async function insertInternetGateway(db: Db, row: InternetGatewayRow): Promise<void> {
  await db.insertInto("internet_gateways").values(row).execute();
}

/** Attaches the gateway to a VPC, or detaches it (null). */
export async function setGatewayVpc(db: Db, gatewayId: string, vpcId: string | null): Promise<void> {
  await db.updateTable("internet_gateways").set({ vpc_id: vpcId }).where("internet_gateway_id", "=", gatewayId).execute();
}

export async function setSourceDestCheck(db: Db, interfaceId: string, on: boolean): Promise<void> {
  await db
    .updateTable("network_interfaces")
    .set({ source_dest_check: on ? 1 : 0 })
    .where("network_interface_id", "=", interfaceId)
    .execute();
}

/** Each network table's id column, for removeResource. */
const ID_COLUMNS = { vpcs: "vpc_id", subnets: "subnet_id", internet_gateways: "internet_gateway_id", route_tables: "route_table_id" } as const;

/** Deletes a VPC, subnet, internet gateway or route table, and its tags. */
export async function removeResource(db: Db, scope: Scope, table: keyof typeof ID_COLUMNS, id: string): Promise<void> {
  // Kysely cannot type a column chosen by a table union; the map above pairs them.
  await db
    .deleteFrom(table)
    .where(ID_COLUMNS[table] as "vpc_id", "=", id)
    .execute();
  await db.deleteFrom("tags").where("account_id", "=", scope.accountId).where("region", "=", scope.region).where("resource_id", "=", id).execute();
}
