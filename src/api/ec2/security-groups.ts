// Security groups: CreateSecurityGroup, DescribeSecurityGroups, DescribeSecurityGroupRules,
// Authorize/Revoke ingress and egress, DeleteSecurityGroup. Each IpPermission becomes one rule
// per range, prefix list or group pair (as DescribeSecurityGroupRules lists them), and rules are
// gathered back into IpPermissions by protocol and ports for DescribeSecurityGroups.
import type {
  AuthorizeSecurityGroupEgressRequest,
  AuthorizeSecurityGroupIngressRequest,
  CreateSecurityGroupRequest,
  DeleteSecurityGroupRequest,
  DescribeSecurityGroupRulesRequest,
  DescribeSecurityGroupsRequest,
  IpPermission,
  RevokeSecurityGroupEgressRequest,
  RevokeSecurityGroupIngressRequest,
  SecurityGroup,
  SecurityGroupRule,
} from "@aws-sdk/client-ec2";
import { parseCidr } from "../../domain/cidr.js";
import { newId, requestedIds } from "../../domain/ids.js";
import { ApiError } from "../../protocol/errors.js";
import {
  ALL_TRAFFIC_OUT,
  deleteRules,
  deleteSecurityGroup,
  groupDependents,
  insertRules,
  insertSecurityGroup,
  listRules,
  listSecurityGroups,
  type RuleSpec,
  type SecurityGroupRow,
  type SecurityGroupRuleRow,
} from "../../store/meta/security-groups.js";
import { putTags } from "../../store/meta/tags.js";
import type { ActionContext, ActionTable } from "./action.js";
import { checkGroupId, groupsById, groupsByName, network, requireDefaultVpc, ruleNotFound, vpcOf } from "./lookups.js";
import { checkListing, listPage, requireIds, tagList, type Tagged } from "./listing.js";
import { TAG_LIMITS, tagSpecificationsFor } from "./tag-specifications.js";

async function targetGroup(ctx: ActionContext, input: { GroupId?: string; GroupName?: string }): Promise<SecurityGroupRow> {
  if (input.GroupId) return (await groupsById(ctx, [input.GroupId]))[0]!;
  if (input.GroupName) return (await groupsByName(ctx, [input.GroupName]))[0]!;
  throw new ApiError("MissingParameter", "The request must contain the parameter groupName or groupId");
}

const PROTOCOL_NAMES: Record<string, string> = {
  "6": "tcp",
  "17": "udp",
  "1": "icmp",
  "58": "icmpv6",
  all: "-1",
  "-1": "-1",
  tcp: "tcp",
  udp: "udp",
  icmp: "icmp",
  icmpv6: "icmpv6",
};

function normalProtocol(protocol: string | undefined): string {
  const lower = (protocol ?? "").toLowerCase();
  if (PROTOCOL_NAMES[lower]) return PROTOCOL_NAMES[lower]!;
  if (/^\d{1,3}$/.test(lower) && Number(lower) <= 255) return String(Number(lower));
  throw new ApiError("InvalidParameterValue", `Invalid value '${protocol ?? ""}' for IP protocol. Unknown protocol.`);
}

function ports(protocol: string, from: number | undefined, to: number | undefined): { from_port: number | null; to_port: number | null } {
  if (protocol === "tcp" || protocol === "udp") {
    if (from === undefined || to === undefined)
      throw new ApiError("InvalidParameterValue", "Invalid value 'Must specify both from and to ports with TCP/UDP.' for portRange.");
    if (from < 0 || to > 65535 || from > to)
      throw new ApiError("InvalidParameterValue", `Invalid port range ${from}-${to}: ports are 0 to 65535, from no greater than to.`);
    return { from_port: from, to_port: to };
  }
  if (protocol === "icmp" || protocol === "icmpv6") {
    // ICMP: FromPort is the type and ToPort the code; -1 means any.
    const type = from ?? -1;
    const code = to ?? -1;
    if (type < -1 || type > 255 || code < -1 || code > 255) throw new ApiError("InvalidParameterValue", `Invalid ICMP type ${type} or code ${code}.`);
    return { from_port: type, to_port: code };
  }
  return { from_port: null, to_port: null };
}

/** The rules an IpPermission stands for, one per range, prefix list and group pair. */
async function rulesOf(ctx: ActionContext, group: SecurityGroupRow, permission: IpPermission, egress: boolean): Promise<RuleSpec[]> {
  const protocol = normalProtocol(permission.IpProtocol);
  const base = {
    is_egress: egress ? 1 : 0,
    ip_protocol: protocol,
    ...ports(protocol, permission.FromPort, permission.ToPort),
    cidr_ipv4: null,
    cidr_ipv6: null,
    prefix_list_id: null,
    referenced_group_id: null,
    referenced_account_id: null,
  };
  const rules: RuleSpec[] = [];
  for (const range of permission.IpRanges ?? []) {
    if (!range.CidrIp || !parseCidr(range.CidrIp))
      throw new ApiError("InvalidParameterValue", `Value (${range.CidrIp ?? ""}) for parameter cidrIp is invalid. This is not a valid CIDR block.`);
    rules.push({ ...base, cidr_ipv4: range.CidrIp, description: range.Description ?? null });
  }
  for (const range of permission.Ipv6Ranges ?? []) {
    if (!range.CidrIpv6 || !/^[0-9a-f:]+\/\d{1,3}$/i.test(range.CidrIpv6))
      throw new ApiError("InvalidParameterValue", `Value (${range.CidrIpv6 ?? ""}) for parameter cidrIpv6 is invalid. This is not a valid IPv6 CIDR block.`);
    rules.push({ ...base, cidr_ipv6: range.CidrIpv6.toLowerCase(), description: range.Description ?? null });
  }
  for (const list of permission.PrefixListIds ?? []) {
    if (!list.PrefixListId || !/^pl-[0-9a-f]{8,17}$/.test(list.PrefixListId))
      throw new ApiError("InvalidParameterValue", `Value (${list.PrefixListId ?? ""}) for parameter prefixListId is invalid.`);
    rules.push({ ...base, prefix_list_id: list.PrefixListId, description: list.Description ?? null });
  }
  for (const pair of permission.UserIdGroupPairs ?? []) {
    const account = pair.UserId ?? ctx.accountId;
    let groupId = pair.GroupId;
    if (account === ctx.accountId) {
      const [referenced] = groupId ? await groupsById(ctx, [groupId]) : pair.GroupName ? await groupsByName(ctx, [pair.GroupName]) : [];
      if (!referenced) throw new ApiError("MissingParameter", "A group pair must name a group (GroupId or GroupName).");
      if (referenced.vpc_id !== group.vpc_id)
        throw new ApiError("InvalidParameterValue", `The security group '${referenced.group_id}' is in a different VPC from '${group.group_id}'.`);
      groupId = referenced.group_id;
    } else {
      groupId = checkGroupId(groupId ?? "");
    }
    rules.push({ ...base, referenced_group_id: groupId, referenced_account_id: account, description: pair.Description ?? null });
  }
  if (!rules.length) throw new ApiError("InvalidParameterValue", "An IpPermission must name at least one IP range, IPv6 range, prefix list or security group.");
  return rules;
}

/** The IpPermissions a request gives, including the flat parameters of the older ingress form. */
function permissionsOf(input: AuthorizeSecurityGroupIngressRequest | AuthorizeSecurityGroupEgressRequest): IpPermission[] {
  const flat = input as AuthorizeSecurityGroupIngressRequest;
  const permissions = [...(input.IpPermissions ?? [])];
  if (flat.CidrIp || flat.SourceSecurityGroupName || flat.IpProtocol) {
    permissions.push({
      IpProtocol: flat.IpProtocol ?? "-1",
      FromPort: flat.FromPort,
      ToPort: flat.ToPort,
      IpRanges: flat.CidrIp ? [{ CidrIp: flat.CidrIp }] : undefined,
      UserIdGroupPairs: flat.SourceSecurityGroupName ? [{ GroupName: flat.SourceSecurityGroupName, UserId: flat.SourceSecurityGroupOwnerId }] : undefined,
    });
  }
  if (!permissions.length) throw new ApiError("MissingParameter", "The request must contain the parameter ipPermissions");
  return permissions;
}

/** Two rules allow the same traffic to or from the same peer (descriptions aside). */
/** What makes a rule the same as another: the same direction, protocol, ports and peer. */
const ruleKey = (r: RuleSpec) =>
  JSON.stringify([r.is_egress, r.ip_protocol, r.from_port, r.to_port, r.cidr_ipv4, r.cidr_ipv6, r.prefix_list_id, r.referenced_group_id]);

/** Rules a group may have in each direction: the most EC2's adjustable quota allows (60 by default). */
const RULES_PER_GROUP = 1000;

const describeRule = (rule: RuleSpec) =>
  `peer: ${rule.cidr_ipv4 ?? rule.cidr_ipv6 ?? rule.prefix_list_id ?? rule.referenced_group_id}, ${rule.ip_protocol === "-1" ? "ALL" : rule.ip_protocol.toUpperCase()}, from port: ${rule.from_port ?? "-1"}, to port: ${rule.to_port ?? "-1"}, ALLOW`;

const ruleArn = (rule: SecurityGroupRuleRow) => `arn:aws:ec2:${rule.region}:${rule.account_id}:security-group-rule/${rule.rule_id}`;

function toRule(rule: SecurityGroupRuleRow, tags: ReadonlyMap<string, string>): SecurityGroupRule {
  return {
    SecurityGroupRuleId: rule.rule_id,
    SecurityGroupRuleArn: ruleArn(rule),
    GroupId: rule.group_id,
    GroupOwnerId: rule.account_id,
    IsEgress: Boolean(rule.is_egress),
    IpProtocol: rule.ip_protocol,
    FromPort: rule.from_port ?? -1,
    ToPort: rule.to_port ?? -1,
    CidrIpv4: rule.cidr_ipv4 ?? undefined,
    CidrIpv6: rule.cidr_ipv6 ?? undefined,
    PrefixListId: rule.prefix_list_id ?? undefined,
    ReferencedGroupInfo: rule.referenced_group_id ? { GroupId: rule.referenced_group_id, UserId: rule.referenced_account_id ?? undefined } : undefined,
    Description: rule.description ?? undefined,
    Tags: tagList(tags),
  };
}

/** Rules gathered into IpPermissions by protocol and ports, as DescribeSecurityGroups shows them. */
function toPermissions(rules: readonly SecurityGroupRuleRow[]): IpPermission[] {
  const permissions = new Map<string, IpPermission>();
  for (const rule of rules) {
    const key = `${rule.ip_protocol}/${rule.from_port}/${rule.to_port}`;
    let permission = permissions.get(key);
    if (!permission) {
      permission = {
        IpProtocol: rule.ip_protocol,
        FromPort: rule.from_port ?? undefined,
        ToPort: rule.to_port ?? undefined,
        IpRanges: [],
        Ipv6Ranges: [],
        PrefixListIds: [],
        UserIdGroupPairs: [],
      };
      permissions.set(key, permission);
    }
    const Description = rule.description ?? undefined;
    if (rule.cidr_ipv4) permission.IpRanges!.push({ CidrIp: rule.cidr_ipv4, Description });
    if (rule.cidr_ipv6) permission.Ipv6Ranges!.push({ CidrIpv6: rule.cidr_ipv6, Description });
    if (rule.prefix_list_id) permission.PrefixListIds!.push({ PrefixListId: rule.prefix_list_id, Description });
    if (rule.referenced_group_id)
      permission.UserIdGroupPairs!.push({ GroupId: rule.referenced_group_id, UserId: rule.referenced_account_id ?? undefined, Description });
  }
  return [...permissions.values()];
}

type GroupRules = (groupId: string) => readonly SecurityGroupRuleRow[];

/** The `ip-permission.*` (or `egress.ip-permission.*`) filters, over the group's rules. */
const permissionFields = (rulesOf: GroupRules, prefix: string, egress: boolean) => {
  const values = (pick: (r: SecurityGroupRuleRow) => string | number | null) => (t: Tagged<SecurityGroupRow>) =>
    rulesOf(t.row.group_id)
      .filter((r) => Boolean(r.is_egress) === egress)
      .map(pick)
      .filter((v): v is string | number => v !== null)
      .map(String);
  return {
    [`${prefix}ip-permission.cidr`]: values((r) => r.cidr_ipv4),
    [`${prefix}ip-permission.ipv6-cidr`]: values((r) => r.cidr_ipv6),
    [`${prefix}ip-permission.prefix-list-id`]: values((r) => r.prefix_list_id),
    [`${prefix}ip-permission.group-id`]: values((r) => r.referenced_group_id),
    [`${prefix}ip-permission.protocol`]: values((r) => r.ip_protocol),
    [`${prefix}ip-permission.from-port`]: values((r) => r.from_port),
    [`${prefix}ip-permission.to-port`]: values((r) => r.to_port),
    [`${prefix}ip-permission.user-id`]: values((r) => r.referenced_account_id),
  };
};

const groupFields = (rulesOf: GroupRules) => ({
  "group-id": (t: Tagged<SecurityGroupRow>) => t.row.group_id,
  "group-name": (t: Tagged<SecurityGroupRow>) => t.row.group_name,
  description: (t: Tagged<SecurityGroupRow>) => t.row.description,
  "vpc-id": (t: Tagged<SecurityGroupRow>) => t.row.vpc_id,
  "owner-id": (t: Tagged<SecurityGroupRow>) => t.row.account_id,
  ...permissionFields(rulesOf, "", false),
  ...permissionFields(rulesOf, "egress.", true),
});

const RULE_FIELDS = {
  "group-id": (t: Tagged<SecurityGroupRuleRow>) => t.row.group_id,
  "security-group-rule-id": (t: Tagged<SecurityGroupRuleRow>) => t.row.rule_id,
};

async function authorize(ctx: ActionContext, input: AuthorizeSecurityGroupIngressRequest | AuthorizeSecurityGroupEgressRequest, egress: boolean) {
  const group = await targetGroup(ctx, input as { GroupId?: string; GroupName?: string });
  const wanted: RuleSpec[] = [];
  for (const permission of permissionsOf(input)) wanted.push(...(await rulesOf(ctx, group, permission, egress)));
  const existing = await listRules(ctx.meta.db, ctx, { groupIds: [group.group_id] });
  const seen = new Set(existing.map(ruleKey));
  for (const rule of wanted) {
    const key = ruleKey(rule);
    if (seen.has(key)) throw new ApiError("InvalidPermission.Duplicate", `the specified rule "${describeRule(rule)}" already exists`);
    seen.add(key);
  }
  if (existing.filter((r) => Boolean(r.is_egress) === egress).length + wanted.length > RULES_PER_GROUP) {
    throw new ApiError("RulesPerSecurityGroupLimitExceeded", "The maximum number of rules per security group has been reached.");
  }
  const tags =
    tagSpecificationsFor((input as AuthorizeSecurityGroupIngressRequest).TagSpecifications, ["security-group-rule"]).get("security-group-rule") ?? [];
  return { group, wanted, tags };
}

async function applyAuthorize(ctx: ActionContext, { group, wanted, tags }: Awaited<ReturnType<typeof authorize>>) {
  const rows = await ctx.meta.db.transaction().execute((tx) => insertRules(tx, group, wanted));
  if (tags.length)
    await putTags(
      ctx.meta.db,
      ctx,
      rows.map((r) => ({ id: r.rule_id, type: "security-group-rule" })),
      tags,
      TAG_LIMITS.perResource,
    );
  const tagMap = new Map(tags.map((t) => [t.key, t.value]));
  return { Return: true, SecurityGroupRules: rows.map((r) => toRule(r, tagMap)) };
}

async function revoke(ctx: ActionContext, input: RevokeSecurityGroupIngressRequest | RevokeSecurityGroupEgressRequest, egress: boolean) {
  const group = await targetGroup(ctx, input as { GroupId?: string; GroupName?: string });
  const existing = (await listRules(ctx.meta.db, ctx, { groupIds: [group.group_id] })).filter((r) => Boolean(r.is_egress) === egress);
  const byKey = new Map(existing.map((r) => [ruleKey(r), r]));
  const ids = new Set(existing.map((r) => r.rule_id));
  const doomed = new Set<string>();
  const unknown: IpPermission[] = [];
  for (const id of input.SecurityGroupRuleIds ?? []) {
    if (!ids.has(id)) throw ruleNotFound([id]);
    doomed.add(id);
  }
  if (!input.SecurityGroupRuleIds?.length) {
    for (const permission of permissionsOf(input)) {
      const rules = await rulesOf(ctx, group, permission, egress);
      const matched = rules.map((rule) => byKey.get(ruleKey(rule)));
      if (matched.some((m) => !m)) unknown.push(permission);
      for (const m of matched) if (m) doomed.add(m.rule_id);
    }
  }
  if (!doomed.size) throw new ApiError("InvalidPermission.NotFound", "The specified rule does not exist in this security group.");
  return { doomed: [...doomed], unknown };
}

async function applyRevoke(ctx: ActionContext, { doomed, unknown }: Awaited<ReturnType<typeof revoke>>) {
  await deleteRules(ctx.meta.db, doomed);
  return {
    Return: true,
    UnknownIpPermissions: unknown.length ? unknown : undefined,
    RevokedSecurityGroupRules: doomed.map((id) => ({ SecurityGroupRuleId: id })),
  };
}

export const securityGroupActions: ActionTable = {
  CreateSecurityGroup: {
    async check(ctx, input: CreateSecurityGroupRequest) {
      const name = input.GroupName;
      if (!name) throw new ApiError("MissingParameter", "The request must contain the parameter GroupName");
      if (!input.Description) throw new ApiError("MissingParameter", "The request must contain the parameter GroupDescription");
      if (name.length > 255 || input.Description.length > 255)
        throw new ApiError("InvalidParameterValue", "Group names and descriptions are at most 255 characters.");
      if (name.toLowerCase().startsWith("sg-")) throw new ApiError("InvalidParameterValue", "Group names may not be in the format sg-*");
      if (name === "default") throw new ApiError("InvalidGroup.Reserved", "The security group 'default' is reserved");
      const vpc = input.VpcId ? await vpcOf(ctx, input.VpcId) : await requireDefaultVpc(ctx);
      if ((await listSecurityGroups(ctx.meta.db, ctx, { names: [name], vpcId: vpc.vpc_id })).length) throw duplicateGroup(name, vpc.vpc_id);
      return { vpcId: vpc.vpc_id, tags: tagSpecificationsFor(input.TagSpecifications, ["security-group"]).get("security-group") ?? [] };
    },
    async run(ctx, input: CreateSecurityGroupRequest, { vpcId, tags }: { vpcId: string; tags: { key: string; value: string }[] }) {
      const group: SecurityGroupRow = {
        account_id: ctx.accountId,
        region: ctx.region,
        group_id: newId("sg"),
        vpc_id: vpcId,
        group_name: input.GroupName!,
        description: input.Description!,
      };
      // Every new group may send anywhere until that rule is revoked.
      const made = await ctx.meta.db.transaction().execute((tx) => insertSecurityGroup(tx, group, [ALL_TRAFFIC_OUT]));
      if (!made) throw duplicateGroup(group.group_name, vpcId);
      if (tags.length) await putTags(ctx.meta.db, ctx, [{ id: group.group_id, type: "security-group" }], tags, TAG_LIMITS.perResource);
      return {
        GroupId: group.group_id,
        SecurityGroupArn: `arn:aws:ec2:${ctx.region}:${ctx.accountId}:security-group/${group.group_id}`,
        Tags: tags.length ? tags.map((t) => ({ Key: t.key, Value: t.value })) : undefined,
      };
    },
  },

  DescribeSecurityGroups: {
    check(_ctx, input: DescribeSecurityGroupsRequest) {
      input.GroupIds?.forEach(checkGroupId);
      checkListing(
        input,
        groupFields(() => []),
      );
    },
    async run(ctx, input: DescribeSecurityGroupsRequest) {
      await network(ctx);
      const rows = input.GroupIds?.length
        ? await groupsById(ctx, input.GroupIds)
        : input.GroupNames?.length
          ? await groupsByName(ctx, input.GroupNames)
          : await listSecurityGroups(ctx.meta.db, ctx);
      rows.sort((a, b) => a.group_id.localeCompare(b.group_id));
      const rules = await listRules(ctx.meta.db, ctx, { groupIds: rows.map((r) => r.group_id) });
      const rulesByGroup = (id: string) => rules.filter((r) => r.group_id === id);
      const { page, nextToken } = await listPage(ctx, rows, (r) => r.group_id, input, groupFields(rulesByGroup));
      const groups: SecurityGroup[] = page.map(({ row, tags }) => ({
        GroupId: row.group_id,
        GroupName: row.group_name,
        Description: row.description,
        OwnerId: row.account_id,
        VpcId: row.vpc_id,
        SecurityGroupArn: `arn:aws:ec2:${row.region}:${row.account_id}:security-group/${row.group_id}`,
        IpPermissions: toPermissions(rulesByGroup(row.group_id).filter((r) => !r.is_egress)),
        IpPermissionsEgress: toPermissions(rulesByGroup(row.group_id).filter((r) => r.is_egress)),
        Tags: tags.size ? tagList(tags) : undefined,
      }));
      return { SecurityGroups: groups, NextToken: nextToken };
    },
  },

  DescribeSecurityGroupRules: {
    check: (_ctx, input: DescribeSecurityGroupRulesRequest) => checkListing(input, RULE_FIELDS),
    async run(ctx, input: DescribeSecurityGroupRulesRequest) {
      await network(ctx);
      const ids = requestedIds(input.SecurityGroupRuleIds);
      const rows = await listRules(ctx.meta.db, ctx, { ruleIds: ids });
      requireIds(ids, rows, (r) => r.rule_id, ruleNotFound);
      rows.sort((a, b) => a.rule_id.localeCompare(b.rule_id));
      const { page, nextToken } = await listPage(ctx, rows, (r) => r.rule_id, input, RULE_FIELDS);
      return { SecurityGroupRules: page.map(({ row, tags }) => toRule(row, tags)), NextToken: nextToken };
    },
  },

  AuthorizeSecurityGroupIngress: {
    check: (ctx, input: AuthorizeSecurityGroupIngressRequest) => authorize(ctx, input, false),
    run: (ctx, _input, planned: Awaited<ReturnType<typeof authorize>>) => applyAuthorize(ctx, planned),
  },

  AuthorizeSecurityGroupEgress: {
    check: (ctx, input: AuthorizeSecurityGroupEgressRequest) => authorize(ctx, input, true),
    run: (ctx, _input, planned: Awaited<ReturnType<typeof authorize>>) => applyAuthorize(ctx, planned),
  },

  RevokeSecurityGroupIngress: {
    check: (ctx, input: RevokeSecurityGroupIngressRequest) => revoke(ctx, input, false),
    run: (ctx, _input, planned: Awaited<ReturnType<typeof revoke>>) => applyRevoke(ctx, planned),
  },

  RevokeSecurityGroupEgress: {
    check: (ctx, input: RevokeSecurityGroupEgressRequest) => revoke(ctx, input, true),
    run: (ctx, _input, planned: Awaited<ReturnType<typeof revoke>>) => applyRevoke(ctx, planned),
  },

  DeleteSecurityGroup: {
    async check(ctx, input: DeleteSecurityGroupRequest) {
      const group = await targetGroup(ctx, input);
      if (group.group_name === "default")
        throw new ApiError("CannotDelete", `the specified group: "${group.group_id}" name: "default" cannot be deleted by a user`);
      const { interfaces, referencingRules } = await groupDependents(ctx.meta.db, group.group_id);
      if (interfaces || referencingRules) throw new ApiError("DependencyViolation", `resource ${group.group_id} has a dependent object`);
      return group;
    },
    async run(ctx, _input, group: SecurityGroupRow) {
      await ctx.meta.db.transaction().execute((tx) => deleteSecurityGroup(tx, ctx, group.group_id));
      return { Return: true, GroupId: group.group_id };
    },
  },
};

const duplicateGroup = (name: string, vpcId: string) =>
  new ApiError("InvalidGroup.Duplicate", `The security group '${name}' already exists for VPC '${vpcId}'`);
