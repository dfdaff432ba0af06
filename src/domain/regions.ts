// The AWS commercial regions and their availability zones, as a fresh AWS account sees them:
// opt-in regions are listed as not-opted-in (DescribeRegions shows them with AllRegions=true),
// though Kiln serves requests signed for them. A region not in this table is refused.
export interface RegionInfo {
  name: string;
  optInStatus: "opt-in-not-required" | "not-opted-in";
  /** Prefix of zone ids, e.g. use1 → use1-az1. */
  zoneIdPrefix: string;
  /** Zone letters, in order; zone ids number them from az1. */
  zones: string;
}

const region = (name: string, zoneIdPrefix: string, zones: string, optIn = false): RegionInfo => ({
  name,
  zoneIdPrefix,
  zones,
  optInStatus: optIn ? "not-opted-in" : "opt-in-not-required",
});

export const REGIONS: readonly RegionInfo[] = [
  region("ap-south-1", "aps1", "abc"),
  region("eu-north-1", "eun1", "abc"),
  region("eu-west-3", "euw3", "abc"),
  region("eu-west-2", "euw2", "abc"),
  region("eu-west-1", "euw1", "abc"),
  region("ap-northeast-3", "apne3", "abc"),
  region("ap-northeast-2", "apne2", "abcd"),
  region("ap-northeast-1", "apne1", "acd"),
  region("ca-central-1", "cac1", "abd"),
  region("sa-east-1", "sae1", "abc"),
  region("ap-southeast-1", "apse1", "abc"),
  region("ap-southeast-2", "apse2", "abc"),
  region("eu-central-1", "euc1", "abc"),
  region("us-east-1", "use1", "abcdef"),
  region("us-east-2", "use2", "abc"),
  region("us-west-1", "usw1", "ac"),
  region("us-west-2", "usw2", "abcd"),
  region("af-south-1", "afs1", "abc", true),
  region("ap-east-1", "ape1", "abc", true),
  region("ap-south-2", "aps2", "abc", true),
  region("ap-southeast-3", "apse3", "abc", true),
  region("ap-southeast-4", "apse4", "abc", true),
  region("ap-southeast-5", "apse5", "abc", true),
  region("ap-southeast-7", "apse7", "abc", true),
  region("ca-west-1", "caw1", "abc", true),
  region("eu-central-2", "euc2", "abc", true),
  region("eu-south-1", "eus1", "abc", true),
  region("eu-south-2", "eus2", "abc", true),
  region("il-central-1", "ilc1", "abc", true),
  region("me-central-1", "mec1", "abc", true),
  region("me-south-1", "mes1", "abc", true),
  region("mx-central-1", "mxc1", "abc", true),
];

const byName = new Map(REGIONS.map((r) => [r.name, r]));

export const isKilnRegion = (name: string) => byName.has(name);

export function regionInfo(name: string): RegionInfo {
  const info = byName.get(name);
  if (!info) throw new Error(`${name} is not a region Kiln serves`);
  return info;
}

export interface ZoneInfo {
  regionName: string;
  zoneName: string;
  zoneId: string;
}

export function zonesOf(regionName: string): ZoneInfo[] {
  const info = regionInfo(regionName);
  return [...info.zones].map((letter, i) => ({
    regionName,
    zoneName: `${regionName}${letter}`,
    zoneId: `${info.zoneIdPrefix}-az${i + 1}`,
  }));
}
