// CreateTags, DeleteTags, DescribeTags over the shared tag table.
import type { CreateTagsRequest, DeleteTagsRequest, DescribeTagsRequest, DescribeTagsResult, TagDescription } from "@aws-sdk/client-ec2";
import { groupBy } from "../../domain/collections.js";
import { resourceTypeOf, uniqueIds } from "../../domain/ids.js";
import { ApiError } from "../../protocol/errors.js";
import { visibleImages } from "../../store/meta/images.js";
import { listSnapshots } from "../../store/meta/snapshots.js";
import { deleteTags, listTags, putTags, TAG_PAGE, type TagQuery, type TagRow } from "../../store/meta/tags.js";
import { listVolumes } from "../../store/meta/volumes.js";
import type { ActionContext, ActionTable } from "./action.js";
import {
  gatewayNotFound,
  groupsById,
  imageNotFound,
  instancesOf,
  interfaceNotFound,
  keyPairNotFound,
  network,
  routeTableNotFound,
  ruleNotFound,
  snapshotNotFound,
  subnetNotFound,
  volumeNotFound,
  vpcNotFound,
} from "./lookups.js";
import { listKeyPairs } from "../../store/meta/key-pairs.js";
import { listInternetGateways, listNetworkInterfaces, listRouteTables, listSubnets, listVpcs } from "../../store/meta/network.js";
import { listRules } from "../../store/meta/security-groups.js";
import { checkDescribe, describePage, requireIds } from "./listing.js";
import { checkTagKey, checkTagValue, TAG_LIMITS } from "./tag-specifications.js";

/** The resources a CreateTags or DeleteTags names, each once, with its type. */
function typedResources(ids: readonly string[]): { id: string; type: string }[] {
  const unique = uniqueIds(ids);
  if (unique.length > TAG_LIMITS.resourcesPerRequest) {
    const limit = TAG_LIMITS.resourcesPerRequest;
    throw new ApiError("ResourceCountExceeded", `You have exceeded the number of resources allowed in a single call of this type (${limit}).`);
  }
  return unique.map((id) => ({ id, type: resourceTypeOf(id) }));
}

/** Per resource type Kiln keeps: a check that every id exists for the caller, or its NotFound. */
const EXISTENCE: Record<string, (ctx: ActionContext, ids: string[]) => Promise<void>> = {
  instance: async (ctx, ids) => void (await instancesOf(ctx, ids)),
  image: async (ctx, ids) => requireIds(ids, await visibleImages(ctx.meta.db, ctx, { ids }), (r) => r.image.image_id, imageNotFound),
  volume: async (ctx, ids) => requireIds(ids, await listVolumes(ctx.meta.db, ctx, { ids }), (v) => v.volume_id, volumeNotFound),
  snapshot: async (ctx, ids) => requireIds(ids, await listSnapshots(ctx.meta.db, ctx, { ids }), (s) => s.snapshot_id, snapshotNotFound),
  vpc: async (ctx, ids) => {
    await network(ctx);
    requireIds(ids, await listVpcs(ctx.meta.db, ctx, { ids }), (r) => r.vpc_id, vpcNotFound);
  },
  subnet: async (ctx, ids) => {
    await network(ctx);
    requireIds(ids, await listSubnets(ctx.meta.db, ctx, { ids }), (r) => r.subnet_id, subnetNotFound);
  },
  "internet-gateway": async (ctx, ids) => {
    await network(ctx);
    requireIds(ids, await listInternetGateways(ctx.meta.db, ctx, { ids }), (r) => r.internet_gateway_id, gatewayNotFound);
  },
  "route-table": async (ctx, ids) => {
    await network(ctx);
    requireIds(ids, await listRouteTables(ctx.meta.db, ctx, { ids }), (r) => r.route_table_id, routeTableNotFound);
  },
  "network-interface": async (ctx, ids) =>
    requireIds(ids, await listNetworkInterfaces(ctx.meta.db, ctx, { ids }), (r) => r.network_interface_id, interfaceNotFound),
  "security-group": async (ctx, ids) => void (await groupsById(ctx, ids)),
  "security-group-rule": async (ctx, ids) => requireIds(ids, await listRules(ctx.meta.db, ctx, { ruleIds: ids }), (r) => r.rule_id, ruleNotFound),
  "key-pair": async (ctx, ids) => requireIds(ids, await listKeyPairs(ctx.meta.db, ctx, { ids }), (k) => k.key_pair_id, keyPairNotFound),
};

/**
 * Every resource Kiln keeps must exist for the caller, as EC2 requires: instances, volumes,
 * snapshots, key pairs and network resources of the caller's own, images it can see (tags on a
 * public or shared image are the tagger's alone, kept under its account). Ids of kinds Kiln does
 * not keep (launch templates, NAT gateways...) are taken at their word.
 */
async function checkResourcesExist(ctx: ActionContext, resources: readonly { id: string; type: string }[]): Promise<void> {
  for (const [type, typed] of groupBy(resources, (r) => r.type)) {
    await EXISTENCE[type]?.(
      ctx,
      typed.map((r) => r.id),
    );
  }
}

/** A CreateTags' tags, checked; a key given twice takes its last value. */
function tagsToSet(input: CreateTagsRequest): { key: string; value: string }[] {
  const tags = new Map<string, string>();
  (input.Tags ?? []).forEach((tag, i) => {
    const key = checkTagKey(tag.Key, `Tag.${i + 1}`);
    tags.set(key, checkTagValue(tag.Value ?? "", key));
  });
  if (tags.size > TAG_LIMITS.perResource) throw new ApiError("TagLimitExceeded", `A resource can have at most ${TAG_LIMITS.perResource} tags.`);
  return [...tags].map(([key, value]) => ({ key, value }));
}

const FILTERS = {
  fields: {
    key: (row: TagRow) => row.key,
    value: (row: TagRow) => row.value,
    "resource-id": (row: TagRow) => row.resourceId,
    "resource-type": (row: TagRow) => row.resourceType,
  },
  // `tag:<key>` on DescribeTags: the tag itself has that key and one of the values.
  tags: (row: TagRow) => new Map([[row.key, row.value]]),
};

const LISTING = { filters: FILTERS };

/** A DescribeTags position (resource id, key), as describePage's NextToken carries it. */
function tagPosition(position: string): [string, string] {
  const [resourceId = "", key = ""] = position.split("\u0000");
  return [resourceId, key];
}

const SQL_COLUMNS = { "resource-id": "resourceIds", "resource-type": "resourceTypes", key: "keys", value: "values" } as const;

/** The exact-match filters, as SQL constraints, so a filtered page reads only its rows. */
function sqlConstraints(filters: DescribeTagsRequest["Filters"]): TagQuery {
  const constraints: TagQuery = {};
  for (const filter of filters ?? []) {
    const column = SQL_COLUMNS[filter.Name as keyof typeof SQL_COLUMNS];
    const values = filter.Values ?? [];
    if (!column || values.length === 0 || values.some((v) => /[*?\\]/.test(v)) || constraints[column]) continue;
    constraints[column] = values;
  }
  return constraints;
}

export const tagActions: ActionTable = {
  CreateTags: {
    async check(ctx, input: CreateTagsRequest) {
      tagsToSet(input);
      await checkResourcesExist(ctx, typedResources(input.Resources ?? []));
    },
    async run(ctx, input: CreateTagsRequest) {
      const resources = typedResources(input.Resources ?? []);
      const tags = tagsToSet(input);
      const over = await putTags(ctx.meta.db, ctx, resources, tags, TAG_LIMITS.perResource);
      if (over.length > 0) {
        throw new ApiError("TagLimitExceeded", `The maximum number of tags (${TAG_LIMITS.perResource}) per resource would be exceeded for ${over.join(", ")}.`);
      }
    },
  },

  DeleteTags: {
    check(_ctx, input: DeleteTagsRequest) {
      typedResources(input.Resources ?? []);
    },
    async run(ctx, input: DeleteTagsRequest) {
      const resources = typedResources(input.Resources ?? []);
      const tags = input.Tags?.map((tag, i) => ({ key: checkTagKey(tag.Key, `Tag.${i + 1}`), value: tag.Value }));
      await deleteTags(
        ctx.meta.db,
        ctx,
        resources.map((r) => r.id),
        tags,
      );
    },
  },

  DescribeTags: {
    check: (_ctx, input: DescribeTagsRequest) => checkDescribe(input, undefined, LISTING),
    async run(ctx, input: DescribeTagsRequest): Promise<DescribeTagsResult> {
      const constraints = sqlConstraints(input.Filters);
      const { page, nextToken } = await describePage(input, undefined, LISTING, {
        read: (q) => listTags(ctx.meta.db, ctx, { ...constraints, after: q.after === undefined ? undefined : tagPosition(q.after) }, q.limit),
        // A tag is named by its resource and key; the position joins them with a NUL (which
        // sorts first), so positions sort as (resource id, key) does.
        idOf: (row) => `${row.resourceId}\u0000${row.key}`,
        describe: async (rows) => rows,
        notFound: () => new Error("DescribeTags takes no ids"),
        readLimit: TAG_PAGE,
      });
      return {
        Tags: page.map((row) => ({
          ResourceId: row.resourceId,
          ResourceType: row.resourceType as TagDescription["ResourceType"],
          Key: row.key,
          Value: row.value,
        })),
        NextToken: nextToken,
      };
    },
  },
};
