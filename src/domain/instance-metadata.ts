// What an instance's metadata service says about it: EC2's categories, as a tree of names whose
// leaves are the values, built from the instance as DescribeInstances shows it (so the two never
// disagree) and the few facts DescribeInstances leaves out (its user data, its key's public
// half, its subnet's and VPC's blocks). vm/metadata-service.ts serves it over HTTP.
import type { Instance } from "@aws-sdk/client-ec2";

export interface MetadataTree {
  [name: string]: string | MetadataTree;
}

export interface InstanceFacts {
  instance: Instance;
  reservationId: string;
  accountId: string;
  region: string;
  zoneId: string;
  /** The user data as given at launch (decoded from its base64), if any. */
  userData?: Buffer;
  /** The launch key pair's name and its public key in OpenSSH form, if any. */
  key?: { name: string; publicKey: string };
  /** The primary interface's subnet and VPC blocks. */
  subnetCidr: string;
  vpcCidrs: string[];
  /** The instance's tags are in its metadata (InstanceMetadataTags enabled). */
  tagsAllowed: boolean;
}

/** The metadata versions EC2 lists at the service's root; each serves what `latest` does. */
export const METADATA_VERSIONS = [
  "1.0",
  "2007-01-19",
  "2007-03-01",
  "2007-08-29",
  "2007-10-10",
  "2007-12-15",
  "2008-02-01",
  "2008-09-01",
  "2009-04-04",
  "2011-01-01",
  "2011-05-01",
  "2012-01-12",
  "2014-02-25",
  "2014-11-05",
  "2015-10-20",
  "2016-04-19",
  "2016-06-30",
  "2016-09-02",
  "2018-03-28",
  "2018-08-17",
  "2018-09-24",
  "2019-10-01",
  "2020-10-27",
  "2021-01-03",
  "2021-03-23",
  "2021-07-15",
  "2022-09-24",
  "latest",
];

const device = (name: string) => name.replace(/^\/dev\//, "");

/** A version's tree: `meta-data`, `dynamic`, and `user-data` when the instance has some. */
export function metadataTree(facts: InstanceFacts): MetadataTree {
  const tree: MetadataTree = { "meta-data": metaData(facts), dynamic: { "instance-identity": { document: identityDocument(facts) } } };
  if (facts.userData) tree["user-data"] = facts.userData.toString("latin1");
  return tree;
}

function metaData(facts: InstanceFacts): MetadataTree {
  const { instance } = facts;
  const primary = instance.NetworkInterfaces?.find((n) => n.Attachment?.DeviceIndex === 0) ?? instance.NetworkInterfaces?.[0];
  const mac = primary?.MacAddress ?? "";
  const publicIp = instance.PublicIpAddress;
  const groups = instance.SecurityGroups ?? [];

  const blockDevices: MetadataTree = { ami: device(instance.RootDeviceName ?? "/dev/xvda"), root: instance.RootDeviceName ?? "/dev/xvda" };
  let ebs = 1;
  for (const mapping of instance.BlockDeviceMappings ?? []) {
    if (mapping.DeviceName === instance.RootDeviceName) continue;
    blockDevices[`ebs${ebs++}`] = device(mapping.DeviceName!);
  }

  const data: MetadataTree = {
    "ami-id": instance.ImageId ?? "",
    "ami-launch-index": String(instance.AmiLaunchIndex ?? 0),
    "ami-manifest-path": "(unknown)",
    "block-device-mapping": blockDevices,
    events: { maintenance: { history: "[]", scheduled: "[]" } },
    hostname: instance.PrivateDnsName ?? "",
    "instance-action": "none",
    "instance-id": instance.InstanceId ?? "",
    "instance-life-cycle": "on-demand",
    "instance-type": instance.InstanceType ?? "",
    "local-hostname": instance.PrivateDnsName ?? "",
    "local-ipv4": instance.PrivateIpAddress ?? "",
    mac,
    placement: {
      "availability-zone": instance.Placement?.AvailabilityZone ?? "",
      "availability-zone-id": facts.zoneId,
      region: facts.region,
    },
    profile: "default-hvm",
    "reservation-id": facts.reservationId,
    "security-groups": groups.map((g) => g.GroupName).join("\n"),
    services: { domain: "amazonaws.com", partition: "aws" },
  };
  if (primary) data.network = { interfaces: { macs: { [mac]: interfaceData(facts, primary, mac) } } };
  if (publicIp) {
    data["public-hostname"] = instance.PublicDnsName ?? "";
    data["public-ipv4"] = publicIp;
  }
  if (facts.key) data["public-keys"] = { [`0=${facts.key.name}`]: { "openssh-key": `${facts.key.publicKey}\n` } };
  if (facts.tagsAllowed) {
    // A key with a slash could not be named in a path; EC2 refuses such keys while tags are allowed.
    const tags = (instance.Tags ?? []).filter((t) => !t.Key!.includes("/"));
    data.tags = { instance: Object.fromEntries(tags.map((t) => [t.Key!, t.Value ?? ""])) };
  }
  return data;
}

function interfaceData(facts: InstanceFacts, eni: NonNullable<Instance["NetworkInterfaces"]>[number], mac: string): MetadataTree {
  const privateIps = (eni.PrivateIpAddresses ?? []).map((p) => p.PrivateIpAddress!).filter(Boolean);
  const data: MetadataTree = {
    "device-number": String(eni.Attachment?.DeviceIndex ?? 0),
    "interface-id": eni.NetworkInterfaceId ?? "",
    "local-hostname": eni.PrivateDnsName ?? "",
    "local-ipv4s": (privateIps.length ? privateIps : [eni.PrivateIpAddress ?? ""]).join("\n"),
    mac,
    "owner-id": facts.accountId,
    "security-group-ids": (eni.Groups ?? []).map((g) => g.GroupId).join("\n"),
    "security-groups": (eni.Groups ?? []).map((g) => g.GroupName).join("\n"),
    "subnet-id": eni.SubnetId ?? "",
    "subnet-ipv4-cidr-block": facts.subnetCidr,
    "vpc-id": eni.VpcId ?? "",
    "vpc-ipv4-cidr-block": facts.vpcCidrs[0] ?? "",
    "vpc-ipv4-cidr-blocks": facts.vpcCidrs.join("\n"),
  };
  const publicIp = eni.Association?.PublicIp;
  if (publicIp) {
    data["ipv4-associations"] = { [publicIp]: eni.PrivateIpAddress ?? "" };
    data["public-hostname"] = eni.Association?.PublicDnsName ?? "";
    data["public-ipv4s"] = publicIp;
  }
  return data;
}

/** The instance identity document, as EC2 writes it (two-space JSON). */
export function identityDocument(facts: InstanceFacts): string {
  const { instance } = facts;
  const document = {
    accountId: facts.accountId,
    architecture: instance.Architecture,
    availabilityZone: instance.Placement?.AvailabilityZone,
    billingProducts: null,
    devpayProductCodes: null,
    marketplaceProductCodes: null,
    imageId: instance.ImageId,
    instanceId: instance.InstanceId,
    instanceType: instance.InstanceType,
    kernelId: instance.KernelId ?? null,
    pendingTime: (instance.LaunchTime ?? new Date()).toISOString().replace(/\.\d{3}Z$/, "Z"),
    privateIp: instance.PrivateIpAddress ?? null,
    ramdiskId: instance.RamdiskId ?? null,
    region: facts.region,
    version: "2017-09-30",
  };
  return JSON.stringify(document, null, 2);
}

/**
 * The node a path names in a version's tree (`a/b/c`, slashes at either end ignored), or
 * undefined. A key pair's directory answers to its index alone (`public-keys/0/`), as EC2's does.
 */
export function lookUp(tree: MetadataTree, path: string): string | MetadataTree | undefined {
  let node: string | MetadataTree = tree;
  for (const name of path.split("/").filter(Boolean)) {
    if (typeof node === "string") return undefined;
    const parent: MetadataTree = node;
    node = Object.hasOwn(parent, name) ? parent[name]! : (Object.entries(parent).find(([key]) => key.startsWith(`${name}=`))?.[1] as MetadataTree | undefined)!;
    if (node === undefined) return undefined;
  }
  return node;
}

/** A directory's listing as EC2 writes it: one name a line, a trailing slash on directories. */
export function listing(directory: MetadataTree): string {
  return Object.entries(directory)
    .map(([name, node]) => (typeof node === "string" || name.includes("=") ? name : `${name}/`))
    .join("\n");
}
