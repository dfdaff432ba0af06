// Security groups and their rules (one row per rule, as DescribeSecurityGroupRules lists them).
import type { Transaction } from "kysely";
import { newId } from "../../domain/ids.js";
import type { MetaDb } from "./database.js";
import type { MetaSchema, SecurityGroupRuleTable, SecurityGroupTable } from "./schema.js";
import type { Scope } from "./tags.js";

export type SecurityGroupRow = SecurityGroupTable;
export type SecurityGroupRuleRow = SecurityGroupRuleTable;
type Db = MetaDb | Transaction<MetaSchema>;

/** A rule as given, before it has an id. */
export type RuleSpec = Omit<SecurityGroupRuleRow, "rule_id" | "group_id" | "account_id" | "region">;

export const ALL_TRAFFIC_OUT: RuleSpec = {
  is_egress: 1,
  ip_protocol: "-1",
  from_port: null,
  to_port: null,
  cidr_ipv4: "0.0.0.0/0",
  cidr_ipv6: null,
  prefix_list_id: null,
  referenced_group_id: null,
  referenced_account_id: null,
  description: null,
};

/**
 * A new group with its first rules (a VPC's default group lets its members reach each other;
 * every group may send anywhere). False when the VPC already has a group of that name.
 */
export async function insertSecurityGroup(db: Db, group: SecurityGroupRow, rules: readonly RuleSpec[]): Promise<boolean> {
  const inserted = await db
    .insertInto("security_groups")
    .values(group)
    .onConflict((oc) => oc.columns(["vpc_id", "group_name"]).doNothing())
    .executeTakeFirst();
  if (Number(inserted.numInsertedOrUpdatedRows ?? 0) === 0) return false;
  await insertRules(db, group, rules);
  return true;
}

export async function insertRules(
  db: Db,
  group: Pick<SecurityGroupRow, "group_id" | "account_id" | "region">,
  rules: readonly RuleSpec[],
): Promise<SecurityGroupRuleRow[]> {
  const rows = rules.map((rule) => ({ ...rule, rule_id: newId("sgr"), group_id: group.group_id, account_id: group.account_id, region: group.region }));
  for (const row of rows) await db.insertInto("security_group_rules").values(row).execute();
  return rows;
}

export async function listSecurityGroups(
  db: Db,
  scope: Scope,
  q: { ids?: readonly string[]; names?: readonly string[]; vpcId?: string; after?: string } = {},
): Promise<SecurityGroupRow[]> {
  let query = db.selectFrom("security_groups").selectAll().where("account_id", "=", scope.accountId).where("region", "=", scope.region);
  if (q.ids) query = query.where("group_id", "in", q.ids.length ? q.ids : [""]);
  if (q.names) query = query.where("group_name", "in", q.names.length ? q.names : [""]);
  if (q.vpcId) query = query.where("vpc_id", "=", q.vpcId);
  if (q.after) query = query.where("group_id", ">", q.after);
  return query.orderBy("group_id").execute();
}

export async function listRules(db: Db, scope: Scope, q: { groupIds?: readonly string[]; ruleIds?: readonly string[] } = {}): Promise<SecurityGroupRuleRow[]> {
  let query = db.selectFrom("security_group_rules").selectAll().where("account_id", "=", scope.accountId).where("region", "=", scope.region);
  if (q.groupIds) query = query.where("group_id", "in", q.groupIds.length ? q.groupIds : [""]);
  if (q.ruleIds) query = query.where("rule_id", "in", q.ruleIds.length ? q.ruleIds : [""]);
  return query.orderBy("group_id").orderBy("rule_id").execute();
}

export async function deleteRules(db: Db, ruleIds: readonly string[]): Promise<void> {
  if (ruleIds.length) await db.deleteFrom("security_group_rules").where("rule_id", "in", ruleIds).execute();
}

/** What keeps a group from being deleted: interfaces in it, or other groups' rules naming it. */
export async function groupDependents(db: Db, groupId: string): Promise<{ interfaces: number; referencingRules: number }> {
  const interfaces = await db
    .selectFrom("network_interface_groups")
    .select((eb) => eb.fn.countAll<number>().as("n"))
    .where("group_id", "=", groupId)
    .executeTakeFirstOrThrow();
  const rules = await db
    .selectFrom("security_group_rules")
    .select((eb) => eb.fn.countAll<number>().as("n"))
    .where("referenced_group_id", "=", groupId)
    .where("group_id", "!=", groupId)
    .executeTakeFirstOrThrow();
  return { interfaces: Number(interfaces.n), referencingRules: Number(rules.n) };
}

export async function deleteSecurityGroup(db: Db, scope: Scope, groupId: string): Promise<void> {
  await db.deleteFrom("security_group_rules").where("group_id", "=", groupId).execute();
  await db.deleteFrom("security_groups").where("group_id", "=", groupId).execute();
  await db.deleteFrom("tags").where("account_id", "=", scope.accountId).where("region", "=", scope.region).where("resource_id", "=", groupId).execute();
}
