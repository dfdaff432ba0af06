// What an instance's metadata service serves (vm/metadata-service.ts), read from the same rows
// and through the same code as DescribeInstances, so the two say the same of it.
import type { InstanceFacts } from "../../domain/instance-metadata.js";
import { zonesOf } from "../../domain/regions.js";
import type { MetaDb } from "../../store/meta/database.js";
import { instanceById } from "../../store/meta/instances.js";
import { listKeyPairs } from "../../store/meta/key-pairs.js";
import { listSubnets, listVpcs } from "../../store/meta/network.js";
import type { InstanceMetadata } from "../../vm/metadata-service.js";
import type { ActionContext } from "./action.js";
import { describeInstances } from "./instances.js";

/** Actions' context for one account and region (an instance's owner). */
export type ContextFor = (scope: { accountId: string; region: string }) => ActionContext;

/** The instance's metadata and options, or undefined when it is gone (terminated, or never was). */
export async function loadInstanceMetadata(deps: { db: MetaDb; contextFor: ContextFor }, instanceId: string): Promise<InstanceMetadata | undefined> {
  const record = await instanceById(deps.db, instanceId);
  if (!record || record.state === "terminated") return undefined;
  const { row } = record;
  const ctx = deps.contextFor({ accountId: row.account_id, region: row.region });
  const [instance] = await describeInstances(ctx, [record]);
  const subnetId = instance!.SubnetId;
  const [subnet] = subnetId ? await listSubnets(ctx.meta.db, ctx, { ids: [subnetId] }) : [];
  const [vpc] = subnet ? await listVpcs(ctx.meta.db, ctx, { ids: [subnet.vpc_id] }) : [];
  const [key] = row.key_name ? await listKeyPairs(ctx.meta.db, ctx, { names: [row.key_name] }) : [];
  const facts: InstanceFacts = {
    instance: instance!,
    reservationId: row.reservation_id,
    accountId: row.account_id,
    region: row.region,
    zoneId: zonesOf(row.region).find((z) => z.zoneName === row.availability_zone)?.zoneId ?? "",
    userData: row.user_data ? Buffer.from(row.user_data, "base64") : undefined,
    key: key ? { name: key.key_name, publicKey: key.public_key } : undefined,
    subnetCidr: subnet?.cidr_block ?? "",
    vpcCidrs: vpc ? [vpc.cidr_block] : [],
    tagsAllowed: row.instance_metadata_tags === "enabled",
  };
  return {
    facts,
    options: {
      httpTokens: row.http_tokens as "optional" | "required",
      httpEndpoint: row.http_endpoint as "enabled" | "disabled",
      httpProtocolIpv6: row.http_protocol_ipv6 as "enabled" | "disabled",
    },
  };
}
