// Kiln's public catalogue: well-known public AMIs, named as their publishers name them, so
// lookups such as Terraform's `aws_ami` with `owners = ["amazon"]` and a name filter resolve.
// Each has a small sparse root snapshot; users can add entries from a JSON file.
import { readFileSync } from "node:fs";

export interface CatalogueEntry {
  name: string;
  ownerId: string;
  ownerAlias?: string;
  description: string;
  architecture: "x86_64" | "arm64" | "i386";
  platform?: "windows";
  rootDeviceName: string;
  volumeSize: number;
  bootMode?: "legacy-bios" | "uefi" | "uefi-preferred";
  enaSupport: boolean;
  creationDate: string;
  deprecationTime?: string;
  imdsSupport?: "v2.0";
}

const AMAZON = "137112412989";
const AMAZON_WINDOWS = "801119661308";
const CANONICAL = "099720109477";
const DEBIAN = "136693071363";

const al2023 = (version: string, arch: "x86_64" | "arm64", created: string): CatalogueEntry => ({
  name: `al2023-ami-${version}-kernel-6.1-${arch}`,
  ownerId: AMAZON,
  ownerAlias: "amazon",
  description: `Amazon Linux 2023 AMI ${version} ${arch} HVM kernel-6.1`,
  architecture: arch,
  rootDeviceName: "/dev/xvda",
  volumeSize: 8,
  bootMode: "uefi-preferred",
  enaSupport: true,
  creationDate: created,
  imdsSupport: "v2.0",
});

export const BUILT_IN_CATALOGUE: readonly CatalogueEntry[] = [
  al2023("2023.6.20241121.0", "x86_64", "2024-11-20T19:04:09.000Z"),
  al2023("2023.6.20241121.0", "arm64", "2024-11-20T19:04:12.000Z"),
  al2023("2023.6.20241212.0", "x86_64", "2024-12-11T21:24:36.000Z"),
  al2023("2023.6.20241212.0", "arm64", "2024-12-11T21:24:41.000Z"),
  {
    name: "amzn2-ami-kernel-5.10-hvm-2.0.20241217.0-x86_64-gp2",
    ownerId: AMAZON,
    ownerAlias: "amazon",
    description: "Amazon Linux 2 Kernel 5.10 AMI 2.0.20241217.0 x86_64 HVM gp2",
    architecture: "x86_64",
    rootDeviceName: "/dev/xvda",
    volumeSize: 8,
    enaSupport: true,
    creationDate: "2024-12-17T05:43:11.000Z",
  },
  {
    name: "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20241206",
    ownerId: CANONICAL,
    description: "Canonical, Ubuntu, 24.04, amd64 noble image",
    architecture: "x86_64",
    rootDeviceName: "/dev/sda1",
    volumeSize: 8,
    bootMode: "uefi-preferred",
    enaSupport: true,
    creationDate: "2024-12-06T12:41:38.000Z",
  },
  {
    name: "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-arm64-server-20241206",
    ownerId: CANONICAL,
    description: "Canonical, Ubuntu, 24.04, arm64 noble image",
    architecture: "arm64",
    rootDeviceName: "/dev/sda1",
    volumeSize: 8,
    enaSupport: true,
    creationDate: "2024-12-06T12:41:45.000Z",
  },
  {
    name: "debian-12-amd64-20241201-1948",
    ownerId: DEBIAN,
    description: "Debian 12 (20241201-1948)",
    architecture: "x86_64",
    rootDeviceName: "/dev/xvda",
    volumeSize: 8,
    enaSupport: true,
    creationDate: "2024-12-01T20:31:05.000Z",
  },
  {
    name: "Windows_Server-2022-English-Full-Base-2024.12.13",
    ownerId: AMAZON_WINDOWS,
    ownerAlias: "amazon",
    description: "Microsoft Windows Server 2022 Full Locale English AMI provided by Amazon",
    architecture: "x86_64",
    platform: "windows",
    rootDeviceName: "/dev/sda1",
    volumeSize: 30,
    enaSupport: true,
    creationDate: "2024-12-13T08:12:50.000Z",
  },
];

/** Entries from a user's JSON file (an array of CatalogueEntry), checked before Kiln starts. */
export function readCatalogueFile(path: string): CatalogueEntry[] {
  const entries = JSON.parse(readFileSync(path, "utf8")) as CatalogueEntry[];
  if (!Array.isArray(entries)) throw new Error(`${path} must hold a JSON array of catalogue entries`);
  for (const entry of entries) {
    for (const field of ["name", "ownerId", "architecture", "rootDeviceName", "volumeSize", "creationDate"] as const) {
      if (entry[field] === undefined) throw new Error(`catalogue entry ${JSON.stringify(entry.name ?? entry)} in ${path} lacks ${field}`);
    }
    if (!/^[0-9]{12}$/.test(entry.ownerId)) throw new Error(`catalogue entry ${entry.name}: ownerId must be 12 digits`);
    entry.description ??= entry.name;
    entry.enaSupport ??= true;
  }
  return entries;
}
