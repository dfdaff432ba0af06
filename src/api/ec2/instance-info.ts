// What launch tools read about instances beyond DescribeInstances: DescribeInstanceTypes,
// DescribeInstanceAttribute, DescribeInstanceCreditSpecifications, GetInstanceUefiData.
import type {
  DescribeInstanceAttributeRequest,
  DescribeInstanceCreditSpecificationsRequest,
  DescribeInstanceCreditSpecificationsResult,
  DescribeInstanceTypesRequest,
  DescribeInstanceTypesResult,
  GetInstanceUefiDataRequest,
  GetInstanceUefiDataResult,
  InstanceAttribute,
  InstanceTypeInfo as InstanceTypeOutput,
} from "@aws-sdk/client-ec2";
import { compileFilters } from "../../domain/filters.js";
import { INSTANCE_TYPES, instanceType, type InstanceTypeInfo } from "../../domain/instance-types.js";
import { decodeNextToken, encodeNextToken, pageSize } from "../../domain/pagination.js";
import { ApiError } from "../../protocol/errors.js";
import { attachmentsOf, listInstances } from "../../store/meta/instances.js";
import type { ActionTable } from "./action.js";
import { instancesOf } from "./instances.js";

const TYPE_FILTERS = {
  fields: {
    "instance-type": (t: InstanceTypeInfo) => t.name,
    "current-generation": (t: InstanceTypeInfo) => String(t.name !== "m1.small"),
    "free-tier-eligible": (t: InstanceTypeInfo) => String(t.freeTier),
    "burstable-performance-supported": (t: InstanceTypeInfo) => String(t.burstable),
    hypervisor: (t: InstanceTypeInfo) => t.hypervisor,
    "processor-info.supported-architecture": (t: InstanceTypeInfo) => t.architectures,
    "vcpu-info.default-vcpus": (t: InstanceTypeInfo) => String(t.vcpus),
    "memory-info.size-in-mib": (t: InstanceTypeInfo) => String(t.memoryMiB),
  },
};

function toType(t: InstanceTypeInfo): InstanceTypeOutput {
  return {
    InstanceType: t.name as InstanceTypeOutput["InstanceType"],
    CurrentGeneration: t.name !== "m1.small",
    FreeTierEligible: t.freeTier,
    SupportedUsageClasses: ["on-demand", "spot"],
    SupportedRootDeviceTypes: ["ebs"],
    SupportedVirtualizationTypes: ["hvm"],
    BareMetal: false,
    Hypervisor: t.hypervisor,
    ProcessorInfo: { SupportedArchitectures: t.architectures, SustainedClockSpeedInGhz: t.clockGhz, Manufacturer: t.manufacturer },
    VCpuInfo: { DefaultVCpus: t.vcpus, DefaultCores: Math.max(1, t.vcpus / 2), DefaultThreadsPerCore: t.vcpus > 1 ? 2 : 1 },
    MemoryInfo: { SizeInMiB: t.memoryMiB },
    InstanceStorageSupported: false,
    EbsInfo: { EbsOptimizedSupport: t.hypervisor === "nitro" ? "default" : "unsupported", EncryptionSupport: "supported", NvmeSupport: t.hypervisor === "nitro" ? "required" : "unsupported" },
    NetworkInfo: { NetworkPerformance: t.network, MaximumNetworkInterfaces: t.vcpus >= 4 ? 4 : 3, Ipv4AddressesPerInterface: 10, Ipv6AddressesPerInterface: 10, Ipv6Supported: true, EnaSupport: t.hypervisor === "nitro" ? "required" : "unsupported" },
    PlacementGroupInfo: { SupportedStrategies: ["partition", "spread"] },
    HibernationSupported: true,
    BurstablePerformanceSupported: t.burstable,
    DedicatedHostsSupported: !t.burstable,
    AutoRecoverySupported: true,
    SupportedBootModes: t.architectures.includes("arm64") ? ["uefi"] : ["legacy-bios", "uefi"],
  };
}

export const instanceInfoActions: ActionTable = {
  DescribeInstanceTypes: {
    check(_ctx, input: DescribeInstanceTypesRequest) {
      const unknown = (input.InstanceTypes ?? []).filter((name) => !instanceType(name));
      if (unknown.length) throw new ApiError("InvalidInstanceType", `The following supplied instance types do not exist: [${unknown.join(", ")}]`);
      pageSize(input.MaxResults, { min: 5, max: 100 });
      compileFilters(input.Filters, TYPE_FILTERS);
    },
    run(_ctx, input: DescribeInstanceTypesRequest): DescribeInstanceTypesResult {
      const wanted = input.InstanceTypes?.length ? new Set<string>(input.InstanceTypes) : undefined;
      const matches = compileFilters(input.Filters, TYPE_FILTERS);
      const limit = pageSize(input.MaxResults, { min: 5, max: 100 });
      const after = decodeNextToken(input.NextToken, 1)?.[0];
      const rows = INSTANCE_TYPES.filter((t) => (!wanted || wanted.has(t.name)) && matches(t) && (!after || t.name > after)).sort((a, b) => a.name.localeCompare(b.name));
      const page = limit === undefined ? rows : rows.slice(0, limit);
      return { InstanceTypes: page.map(toType), NextToken: limit !== undefined && rows.length > limit ? encodeNextToken([page[page.length - 1]!.name]) : undefined };
    },
  },

  DescribeInstanceAttribute: {
    async check(ctx, input: DescribeInstanceAttributeRequest) {
      await instancesOf(ctx, [input.InstanceId!]);
    },
    async run(ctx, input: DescribeInstanceAttributeRequest): Promise<InstanceAttribute> {
      const [record] = await instancesOf(ctx, [input.InstanceId!]);
      const row = record!.row;
      const out: InstanceAttribute = { InstanceId: row.instance_id };
      // The values an instance launches with; ModifyInstanceAttribute (not yet served) would change them.
      switch (input.Attribute) {
        case "instanceType": out.InstanceType = { Value: row.instance_type }; break;
        case "kernel": out.KernelId = {}; break;
        case "ramdisk": out.RamdiskId = {}; break;
        case "userData": out.UserData = {}; break;
        case "disableApiTermination": out.DisableApiTermination = { Value: false }; break;
        case "disableApiStop": out.DisableApiStop = { Value: false }; break;
        case "instanceInitiatedShutdownBehavior": out.InstanceInitiatedShutdownBehavior = { Value: "stop" }; break;
        case "rootDeviceName": out.RootDeviceName = { Value: row.root_device_name }; break;
        case "blockDeviceMapping":
          out.BlockDeviceMappings = (await attachmentsOf(ctx.meta.db, { instanceIds: [row.instance_id] })).map((a) => ({
            DeviceName: a.device,
            Ebs: { VolumeId: a.volume_id, Status: "attached", AttachTime: new Date(a.attach_time), DeleteOnTermination: Boolean(a.delete_on_termination) },
          }));
          break;
        case "productCodes": out.ProductCodes = []; break;
        case "sourceDestCheck": out.SourceDestCheck = { Value: true }; break;
        case "groupSet": out.Groups = []; break;
        case "ebsOptimized": out.EbsOptimized = { Value: false }; break;
        case "sriovNetSupport": out.SriovNetSupport = {}; break;
        case "enaSupport": out.EnaSupport = { Value: Boolean(row.ena_support) }; break;
        case "enclaveOptions": out.EnclaveOptions = { Enabled: false }; break;
      }
      return out;
    },
  },

  DescribeInstanceCreditSpecifications: {
    async check(ctx, input: DescribeInstanceCreditSpecificationsRequest) {
      if (input.InstanceIds?.length) await instancesOf(ctx, input.InstanceIds);
      pageSize(input.MaxResults, { min: 5, max: 1000 });
    },
    async run(ctx, input: DescribeInstanceCreditSpecificationsRequest): Promise<DescribeInstanceCreditSpecificationsResult> {
      const records = input.InstanceIds?.length ? await instancesOf(ctx, input.InstanceIds) : await listInstances(ctx.meta.db, ctx);
      const burstable = records.filter((r) => instanceType(r.row.instance_type)?.burstable && r.state !== "terminated");
      return { InstanceCreditSpecifications: burstable.map((r) => ({ InstanceId: r.row.instance_id, CpuCredits: instanceType(r.row.instance_type)!.defaultCredits })) };
    },
  },

  GetInstanceUefiData: {
    async check(ctx, input: GetInstanceUefiDataRequest) {
      await instancesOf(ctx, [input.InstanceId!]);
    },
    run(_ctx, input: GetInstanceUefiDataRequest): GetInstanceUefiDataResult {
      // Kiln runs no firmware: there is no UEFI variable store to return.
      return { InstanceId: input.InstanceId, UefiData: "" };
    },
  },
};
