// Instance types Kiln knows: common sizes of common families, with the facts DescribeInstanceTypes
// reports and RunInstances checks. Figures are AWS's published ones for these sizes.
export interface InstanceTypeInfo {
  name: string;
  vcpus: number;
  memoryMiB: number;
  architectures: ("x86_64" | "i386" | "arm64")[];
  burstable: boolean;
  /** The CPU credit option an instance of the type launches with (burstable types only). */
  defaultCredits?: "standard" | "unlimited";
  hypervisor: "xen" | "nitro";
  freeTier: boolean;
  clockGhz: number;
  manufacturer: "Intel" | "AMD" | "AWS";
  network: string;
}

type Size = [size: string, vcpus: number, memoryGiB: number];
const T_SIZES: Size[] = [
  ["nano", 2, 0.5],
  ["micro", 2, 1],
  ["small", 2, 2],
  ["medium", 2, 4],
  ["large", 2, 8],
  ["xlarge", 4, 16],
  ["2xlarge", 8, 32],
];
const M_SIZES: Size[] = [
  ["large", 2, 8],
  ["xlarge", 4, 16],
  ["2xlarge", 8, 32],
  ["4xlarge", 16, 64],
];
const C_SIZES: Size[] = [
  ["large", 2, 4],
  ["xlarge", 4, 8],
  ["2xlarge", 8, 16],
  ["4xlarge", 16, 32],
];
const R_SIZES: Size[] = [
  ["large", 2, 16],
  ["xlarge", 4, 32],
  ["2xlarge", 8, 64],
  ["4xlarge", 16, 128],
];

function family(
  prefix: string,
  sizes: Size[],
  facts: Omit<InstanceTypeInfo, "name" | "vcpus" | "memoryMiB" | "freeTier">,
  freeTier: string[] = [],
): InstanceTypeInfo[] {
  return sizes.map(([size, vcpus, memory]) => ({ ...facts, name: `${prefix}.${size}`, vcpus, memoryMiB: memory * 1024, freeTier: freeTier.includes(size) }));
}

const burstable = { burstable: true, network: "Up to 5 Gigabit" } as const;
export const INSTANCE_TYPES: readonly InstanceTypeInfo[] = [
  ...family(
    "t2",
    T_SIZES.map(([s, v, m]) => [s, s === "nano" || s === "micro" || s === "small" ? 1 : v, m] as Size),
    {
      ...burstable,
      architectures: ["i386", "x86_64"],
      defaultCredits: "standard",
      hypervisor: "xen",
      clockGhz: 2.5,
      manufacturer: "Intel",
      network: "Low to Moderate",
    },
    ["micro"],
  ),
  ...family(
    "t3",
    T_SIZES,
    { ...burstable, architectures: ["x86_64"], defaultCredits: "unlimited", hypervisor: "nitro", clockGhz: 2.5, manufacturer: "Intel" },
    ["micro"],
  ),
  ...family("t3a", T_SIZES, { ...burstable, architectures: ["x86_64"], defaultCredits: "unlimited", hypervisor: "nitro", clockGhz: 2.2, manufacturer: "AMD" }),
  ...family("t4g", T_SIZES, { ...burstable, architectures: ["arm64"], defaultCredits: "unlimited", hypervisor: "nitro", clockGhz: 2.5, manufacturer: "AWS" }),
  ...family("m5", M_SIZES, {
    burstable: false,
    architectures: ["x86_64"],
    hypervisor: "nitro",
    clockGhz: 3.1,
    manufacturer: "Intel",
    network: "Up to 10 Gigabit",
  }),
  ...family("m6i", M_SIZES, {
    burstable: false,
    architectures: ["x86_64"],
    hypervisor: "nitro",
    clockGhz: 3.5,
    manufacturer: "Intel",
    network: "Up to 12.5 Gigabit",
  }),
  ...family("m7g", M_SIZES, {
    burstable: false,
    architectures: ["arm64"],
    hypervisor: "nitro",
    clockGhz: 2.6,
    manufacturer: "AWS",
    network: "Up to 12.5 Gigabit",
  }),
  ...family("c5", C_SIZES, {
    burstable: false,
    architectures: ["x86_64"],
    hypervisor: "nitro",
    clockGhz: 3.4,
    manufacturer: "Intel",
    network: "Up to 10 Gigabit",
  }),
  ...family("c6i", C_SIZES, {
    burstable: false,
    architectures: ["x86_64"],
    hypervisor: "nitro",
    clockGhz: 3.5,
    manufacturer: "Intel",
    network: "Up to 12.5 Gigabit",
  }),
  ...family("r5", R_SIZES, {
    burstable: false,
    architectures: ["x86_64"],
    hypervisor: "nitro",
    clockGhz: 3.1,
    manufacturer: "Intel",
    network: "Up to 10 Gigabit",
  }),
  // m1.small is what RunInstances launches when no type is given.
  {
    name: "m1.small",
    vcpus: 1,
    memoryMiB: 1740,
    architectures: ["i386", "x86_64"],
    burstable: false,
    hypervisor: "xen",
    freeTier: false,
    clockGhz: 1.7,
    manufacturer: "Intel",
    network: "Low",
  },
];

const byName = new Map(INSTANCE_TYPES.map((t) => [t.name, t]));
export const instanceType = (name: string) => byName.get(name);
