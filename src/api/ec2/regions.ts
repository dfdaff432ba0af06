// DescribeRegions and DescribeAvailabilityZones from the region table.
import type {
  AvailabilityZone,
  DescribeAvailabilityZonesRequest,
  DescribeAvailabilityZonesResult,
  DescribeRegionsRequest,
  DescribeRegionsResult,
  Region,
} from "@aws-sdk/client-ec2";
import { uniqueIds } from "../../domain/ids.js";
import { REGIONS, zonesOf } from "../../domain/regions.js";
import { ApiError } from "../../protocol/errors.js";
import type { ActionTable } from "./action.js";
import { checkDescribe, describePage, rowsInHand } from "./listing.js";

const REGION_FILTERS = {
  fields: {
    endpoint: (r: Region) => r.Endpoint,
    "opt-in-status": (r: Region) => r.OptInStatus,
    "region-name": (r: Region) => r.RegionName,
  },
};

const ZONE_FILTERS = {
  fields: {
    "group-long-name": (z: AvailabilityZone) => z.GroupLongName,
    "group-name": (z: AvailabilityZone) => z.GroupName,
    message: (z: AvailabilityZone) => (z.Messages ?? []).map((m) => m.Message ?? ""),
    "opt-in-status": (z: AvailabilityZone) => z.OptInStatus,
    "region-name": (z: AvailabilityZone) => z.RegionName,
    state: (z: AvailabilityZone) => z.State,
    "zone-id": (z: AvailabilityZone) => z.ZoneId,
    "zone-name": (z: AvailabilityZone) => z.ZoneName,
    "zone-type": (z: AvailabilityZone) => z.ZoneType,
  },
};

const allRegions: Region[] = REGIONS.map((r) => ({
  RegionName: r.name,
  Endpoint: `ec2.${r.name}.amazonaws.com`,
  OptInStatus: r.optInStatus,
}));

function zonesFor(regionName: string): AvailabilityZone[] {
  return zonesOf(regionName).map((z) => ({
    OptInStatus: "opt-in-not-required",
    Messages: [],
    RegionName: z.regionName,
    ZoneName: z.zoneName,
    ZoneId: z.zoneId,
    GroupName: z.regionName,
    GroupLongName: z.regionName,
    NetworkBorderGroup: z.regionName,
    ZoneType: "availability-zone",
    State: "available",
  }));
}

function regionsFor(input: DescribeRegionsRequest): Region[] {
  const names = input.RegionNames;
  if (names && names.length > 0) {
    const unknown = uniqueIds(names).filter((name) => !allRegions.some((r) => r.RegionName === name));
    if (unknown.length > 0) throw new ApiError("InvalidParameterValue", `Invalid region: ${unknown.join(", ")}`);
    return allRegions.filter((r) => names.includes(r.RegionName!));
  }
  return input.AllRegions ? allRegions : allRegions.filter((r) => r.OptInStatus !== "not-opted-in");
}

function zonesMatching(region: string, input: DescribeAvailabilityZonesRequest): AvailabilityZone[] {
  const zones = zonesFor(region);
  const byName = input.ZoneNames ?? [];
  const byId = input.ZoneIds ?? [];
  for (const name of byName) {
    if (!zones.some((z) => z.ZoneName === name)) throw new ApiError("InvalidParameterValue", `Invalid availability zone: [${name}]`);
  }
  for (const id of byId) {
    if (!zones.some((z) => z.ZoneId === id)) throw new ApiError("InvalidParameterValue", `Invalid availability zone id: [${id}]`);
  }
  if (byName.length === 0 && byId.length === 0) return zones;
  return zones.filter((z) => byName.includes(z.ZoneName!) || byId.includes(z.ZoneId!));
}

const REGION_LISTING = { filters: REGION_FILTERS };
const ZONE_LISTING = { filters: ZONE_FILTERS };

export const regionActions: ActionTable = {
  DescribeRegions: {
    check(_ctx, input: DescribeRegionsRequest) {
      regionsFor(input);
      checkDescribe(input, undefined, REGION_LISTING);
    },
    async run(_ctx, input: DescribeRegionsRequest): Promise<DescribeRegionsResult> {
      const { page } = await describePage(
        input,
        undefined,
        REGION_LISTING,
        rowsInHand(regionsFor(input), (r) => r.RegionName!),
      );
      return { Regions: page };
    },
  },

  DescribeAvailabilityZones: {
    check(ctx, input: DescribeAvailabilityZonesRequest) {
      zonesMatching(ctx.region, input);
      checkDescribe(input, undefined, ZONE_LISTING);
    },
    async run(ctx, input: DescribeAvailabilityZonesRequest): Promise<DescribeAvailabilityZonesResult> {
      const { page } = await describePage(
        input,
        undefined,
        ZONE_LISTING,
        rowsInHand(zonesMatching(ctx.region, input), (z) => z.ZoneName!),
      );
      return { AvailabilityZones: page };
    },
  },
};
