// CreateTags, DeleteTags, DescribeTags over the shared tag table.
import type {
  CreateTagsRequest,
  DeleteTagsRequest,
  DescribeTagsRequest,
  DescribeTagsResult,
  TagDescription,
} from "@aws-sdk/client-ec2";
import { groupBy } from "../../domain/collections.js";
import { resourceTypeOf, uniqueIds } from "../../domain/ids.js";
import { compileFilters } from "../../domain/filters.js";
import { decodeNextToken, encodeNextToken, pageSize } from "../../domain/pagination.js";
import { yieldToLoop } from "../../event-loop.js";
import { ApiError } from "../../protocol/errors.js";
import { visibleImages } from "../../store/meta/images.js";
import { listSnapshots } from "../../store/meta/snapshots.js";
import { deleteTags, putTags, tagPages, type TagQuery, type TagRow } from "../../store/meta/tags.js";
import { listVolumes } from "../../store/meta/volumes.js";
import type { ActionContext, ActionTable } from "./action.js";
import { gatewayNotFound, groupsById, imageNotFound, instancesOf, interfaceNotFound, keyPairNotFound, network, routeTableNotFound, ruleNotFound, snapshotNotFound, subnetNotFound, volumeNotFound, vpcNotFound } from "./lookups.js";
import { listKeyPairs } from "../../store/meta/key-pairs.js";
import { listInternetGateways, listNetworkInterfaces, listRouteTables, listSubnets, listVpcs } from "../../store/meta/network.js";
import { listRules } from "../../store/meta/security-groups.js";
import { requireIds } from "./listing.js";
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
  vpc: async (ctx, ids) => { await network(ctx); requireIds(ids, await listVpcs(ctx.meta.db, ctx, { ids }), (r) => r.vpc_id, vpcNotFound); },
  subnet: async (ctx, ids) => { await network(ctx); requireIds(ids, await listSubnets(ctx.meta.db, ctx, { ids }), (r) => r.subnet_id, subnetNotFound); },
  "internet-gateway": async (ctx, ids) => { await network(ctx); requireIds(ids, await listInternetGateways(ctx.meta.db, ctx, { ids }), (r) => r.internet_gateway_id, gatewayNotFound); },
  "route-table": async (ctx, ids) => { await network(ctx); requireIds(ids, await listRouteTables(ctx.meta.db, ctx, { ids }), (r) => r.route_table_id, routeTableNotFound); },
  "network-interface": async (ctx, ids) => requireIds(ids, await listNetworkInterfaces(ctx.meta.db, ctx, { ids }), (r) => r.network_interface_id, interfaceNotFound),
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
    await EXISTENCE[type]?.(ctx, typed.map((r) => r.id));
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

/** Rows matched between two asks for a turn of the event loop. */
const ROWS_BETWEEN_TURNS = 16;

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
      await deleteTags(ctx.meta.db, ctx, resources.map((r) => r.id), tags);
    },
  },

  DescribeTags: {
    check(_ctx, input: DescribeTagsRequest) {
      compileFilters(input.Filters, FILTERS);
      pageSize(input.MaxResults, { min: 5, max: 1000 });
    },
    async run(ctx, input: DescribeTagsRequest): Promise<DescribeTagsResult> {
      const matches = compileFilters(input.Filters, FILTERS);
      const limit = pageSize(input.MaxResults, { min: 5, max: 1000 });
      const after = decodeNextToken(input.NextToken, 2) as [string, string] | undefined;
      const page: TagDescription[] = [];
      let nextToken: string | undefined;
      // Read a page at a time: one row past the answer tells whether there is a next page.
      const pageRows = limit === undefined ? undefined : limit + 1;
      reading: for await (const rows of tagPages(ctx.meta.db, ctx, { after, ...sqlConstraints(input.Filters) }, pageRows)) {
        for (let i = 0; i < rows.length; i++) {
          const row = rows[i]!;
          // Matching is the work here (up to 200 wildcard values a row): a turn when the slice
          // is spent, asked every few rows (asking costs more than a row without wildcards).
          if (i % ROWS_BETWEEN_TURNS === 0) {
            const turn = yieldToLoop();
            if (turn) await turn;
          }
          if (!matches(row)) continue;
          if (limit !== undefined && page.length === limit) {
            const last = page[page.length - 1]!;
            nextToken = encodeNextToken([last.ResourceId!, last.Key!]);
            break reading;
          }
          page.push({ ResourceId: row.resourceId, ResourceType: row.resourceType as TagDescription["ResourceType"], Key: row.key, Value: row.value });
        }
      }
      return { Tags: page, NextToken: nextToken };
    },
  },
};
