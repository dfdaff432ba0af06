// What launch tools read and change about instances beyond DescribeInstances: instance types and
// their offerings, every instance attribute (DescribeInstanceAttribute, ModifyInstanceAttribute),
// credit specifications, metadata options, status checks, console output and UEFI data.
import type {
  DescribeInstanceAttributeRequest,
  DescribeInstanceStatusRequest,
  DescribeInstanceStatusResult,
  DescribeInstanceTypeOfferingsRequest,
  DescribeInstanceTypeOfferingsResult,
  GetConsoleOutputRequest,
  GetConsoleScreenshotRequest,
  GetConsoleScreenshotResult,
  GetConsoleOutputResult,
  InstanceStatus,
  InstanceTypeOffering,
  ModifyInstanceAttributeRequest,
  ModifyInstanceMetadataOptionsRequest,
  ModifyInstanceMetadataOptionsResult,
  ModifyInstanceCreditSpecificationRequest,
  ModifyInstanceCreditSpecificationResult,
  DescribeInstanceCreditSpecificationsRequest,
  DescribeInstanceCreditSpecificationsResult,
  DescribeInstanceTypesRequest,
  DescribeInstanceTypesResult,
  GetInstanceUefiDataRequest,
  GetInstanceUefiDataResult,
  InstanceAttribute,
  InstanceTypeInfo as InstanceTypeOutput,
} from "@aws-sdk/client-ec2";
import { requestedIds, uniqueIds } from "../../domain/ids.js";
import { INSTANCE_TYPES, instanceType, type InstanceTypeInfo } from "../../domain/instance-types.js";
import { ApiError } from "../../protocol/errors.js";
import { atomically } from "../../store/meta/database.js";
import { attachmentsOf, listInstances, setDeleteOnTermination, updateInstance } from "../../store/meta/instances.js";
import { zonesOf } from "../../domain/regions.js";
import { setInterfaceGroups, setSourceDestCheck } from "../../store/meta/network.js";
import type { ActionContext, ActionTable } from "./action.js";
import { STATE_CODES } from "./instance-states.js";
import { groupsById, instanceNotFound, instancesOf } from "./lookups.js";
import { checkDescribe, checkListing, describePage, listPage, rowsInHand, type Tagged } from "./listing.js";
import { instanceInterfaces, primaryInterface } from "./instance-network.js";
import { checkedOptions, defined, type MetadataColumns, toMetadataOptions } from "./metadata-options.js";
import type { InstanceRecord, InstanceRow, InstanceSettings } from "../../store/meta/instances.js";
import type { GuestHealth } from "../../vm/backend.js";

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

const TYPE_LISTING = { filters: TYPE_FILTERS, bounds: { min: 5, max: 100 } };
const TYPES_BY_NAME = [...INSTANCE_TYPES].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
const CREDIT_LISTING = { filters: { fields: {} } };

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
    EbsInfo: {
      EbsOptimizedSupport: t.hypervisor === "nitro" ? "default" : "unsupported",
      EncryptionSupport: "supported",
      NvmeSupport: t.hypervisor === "nitro" ? "required" : "unsupported",
    },
    NetworkInfo: {
      NetworkPerformance: t.network,
      MaximumNetworkInterfaces: t.vcpus >= 4 ? 4 : 3,
      Ipv4AddressesPerInterface: 10,
      Ipv6AddressesPerInterface: 10,
      Ipv6Supported: true,
      EnaSupport: t.hypervisor === "nitro" ? "required" : "unsupported",
    },
    PlacementGroupInfo: { SupportedStrategies: ["partition", "spread"] },
    HibernationSupported: true,
    BurstablePerformanceSupported: t.burstable,
    DedicatedHostsSupported: !t.burstable,
    AutoRecoverySupported: true,
    SupportedBootModes: t.architectures.includes("arm64") ? ["uefi"] : ["legacy-bios", "uefi"],
  };
}

const unknownTypes = (names: readonly string[]) =>
  new ApiError("InvalidInstanceType", `The following supplied instance types do not exist: [${names.join(", ")}]`);

export const instanceInfoActions: ActionTable = {
  DescribeInstanceTypes: {
    // A name outside the model's list of types is a type that does not exist, as EC2 words it.
    parameterErrors: { InstanceType: (refused) => unknownTypes([refused.value ?? ""]) },
    check(_ctx, input: DescribeInstanceTypesRequest) {
      const unknown = uniqueIds(input.InstanceTypes ?? []).filter((name) => !instanceType(name));
      if (unknown.length) throw unknownTypes(unknown);
      checkDescribe(input, undefined, TYPE_LISTING);
    },
    async run(_ctx, input: DescribeInstanceTypesRequest): Promise<DescribeInstanceTypesResult> {
      // Every name was checked to exist; an unknown one never reaches here.
      const { page, nextToken } = await describePage(
        input,
        requestedIds(input.InstanceTypes),
        TYPE_LISTING,
        rowsInHand(TYPES_BY_NAME, (t) => t.name),
      );
      return { InstanceTypes: page.map(toType), NextToken: nextToken };
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
      const flag = (value: number) => ({ Value: Boolean(value) });
      // The primary interface as DescribeInstances shows it: its source/dest check and groups.
      const primary = async () => (await instanceInterfaces(ctx, [row.instance_id])).get(row.instance_id)?.[0];
      switch (input.Attribute) {
        case "instanceType":
          out.InstanceType = { Value: row.instance_type };
          break;
        case "kernel":
          out.KernelId = row.kernel_id ? { Value: row.kernel_id } : {};
          break;
        case "ramdisk":
          out.RamdiskId = row.ramdisk_id ? { Value: row.ramdisk_id } : {};
          break;
        case "userData":
          out.UserData = row.user_data ? { Value: row.user_data } : {};
          break;
        case "disableApiTermination":
          out.DisableApiTermination = flag(row.disable_api_termination);
          break;
        case "disableApiStop":
          out.DisableApiStop = flag(row.disable_api_stop);
          break;
        case "instanceInitiatedShutdownBehavior":
          out.InstanceInitiatedShutdownBehavior = { Value: row.shutdown_behavior };
          break;
        case "rootDeviceName":
          out.RootDeviceName = { Value: row.root_device_name };
          break;
        case "blockDeviceMapping":
          out.BlockDeviceMappings = (await attachmentsOf(ctx.meta.db, { instanceIds: [row.instance_id] })).map((a) => ({
            DeviceName: a.device,
            Ebs: { VolumeId: a.volume_id, Status: "attached", AttachTime: new Date(a.attach_time), DeleteOnTermination: Boolean(a.delete_on_termination) },
          }));
          break;
        case "productCodes":
          out.ProductCodes = [];
          break;
        case "sourceDestCheck":
          out.SourceDestCheck = { Value: (await primary())?.SourceDestCheck ?? true };
          break;
        case "groupSet":
          out.Groups = ((await primary())?.Groups ?? []).map((g) => ({ GroupId: g.GroupId, GroupName: g.GroupName }));
          break;
        case "ebsOptimized":
          out.EbsOptimized = flag(row.ebs_optimized);
          break;
        case "sriovNetSupport":
          out.SriovNetSupport = row.sriov_net_support ? { Value: row.sriov_net_support } : {};
          break;
        case "enaSupport":
          out.EnaSupport = flag(row.ena_support);
          break;
        case "enclaveOptions":
          out.EnclaveOptions = { Enabled: false };
          break;
        default:
          throw new ApiError("InvalidParameterValue", `Value (${input.Attribute}) for parameter attribute is invalid.`);
      }
      return out;
    },
  },

  ModifyInstanceAttribute: {
    check: (ctx, input: ModifyInstanceAttributeRequest) => planAttributeChange(ctx, input),
    async run(ctx, input: ModifyInstanceAttributeRequest, change: AttributeChange) {
      const instanceId = input.InstanceId!;
      const eni = change.sourceDestCheck !== undefined || change.groupIds ? (await primaryInterface(ctx, instanceId))! : undefined;
      await atomically(ctx.meta.db, async (tx) => {
        if (change.columns) await updateInstance(tx, instanceId, change.columns);
        if (eni && change.sourceDestCheck !== undefined) await setSourceDestCheck(tx, eni.network_interface_id, change.sourceDestCheck);
        if (eni && change.groupIds) await setInterfaceGroups(tx, eni.network_interface_id, change.groupIds);
        for (const [device, deleteOnTermination] of change.deleteOnTermination ?? []) await setDeleteOnTermination(tx, instanceId, device, deleteOnTermination);
      });
    },
  },

  ModifyInstanceMetadataOptions: {
    async check(ctx, input: ModifyInstanceMetadataOptionsRequest) {
      const change = defined(checkedOptions(input));
      const [record] = await instancesOf(ctx, [input.InstanceId!]);
      if (record!.state === "terminated" || record!.state === "shutting-down") {
        throw new ApiError("IncorrectInstanceState", `The instance '${input.InstanceId}' is not in a state from which its metadata options can be modified.`);
      }
      return { row: record!.row, change };
    },
    async run(
      ctx,
      input: ModifyInstanceMetadataOptionsRequest,
      planned: { row: InstanceRow; change: Partial<MetadataColumns> },
    ): Promise<ModifyInstanceMetadataOptionsResult> {
      if (Object.keys(planned.change).length) await updateInstance(ctx.meta.db, input.InstanceId!, planned.change);
      // EC2 answers pending (its hosts take the change a moment later); DescribeInstances then says applied.
      return { InstanceId: input.InstanceId, InstanceMetadataOptions: toMetadataOptions({ ...planned.row, ...planned.change }, "pending") };
    },
  },

  DescribeInstanceStatus: {
    async check(ctx, input: DescribeInstanceStatusRequest) {
      if (input.InstanceIds?.length) await instancesOf(ctx, input.InstanceIds);
      checkListing(input, STATUS_FIELDS);
    },
    async run(ctx, input: DescribeInstanceStatusRequest): Promise<DescribeInstanceStatusResult> {
      const records = input.InstanceIds?.length ? await instancesOf(ctx, input.InstanceIds) : await listInstances(ctx.meta.db, ctx);
      // Without IncludeAllInstances, only running instances are reported, as EC2 does.
      const shown = records
        .filter((r) => r.state !== "terminated" && (input.IncludeAllInstances || r.state === "running"))
        .map((r) => statusOf(r, ctx.machines.health(r.row.instance_id)));
      const { page, nextToken } = await listPage(ctx, shown, (s) => s.InstanceId!, input, STATUS_FIELDS);
      return { InstanceStatuses: page.map(({ row: status }) => status), NextToken: nextToken };
    },
  },

  GetConsoleOutput: {
    async check(ctx, input: GetConsoleOutputRequest) {
      await instancesOf(ctx, [input.InstanceId!]);
    },
    async run(ctx, input: GetConsoleOutputRequest): Promise<GetConsoleOutputResult> {
      // The serial console's last 64 KiB, base64, as EC2 returns it (Latest or not: Kiln keeps only
      // the newest). With no guest, empty output, as a fresh instance has.
      const console = await ctx.machines.consoleOutput(input.InstanceId!);
      return { InstanceId: input.InstanceId, Timestamp: console?.at ?? new Date(), Output: console?.output.toString("base64") ?? "" };
    },
  },

  GetConsoleScreenshot: {
    async check(ctx, input: GetConsoleScreenshotRequest) {
      await instancesOf(ctx, [input.InstanceId!]);
    },
    async run(ctx, input: GetConsoleScreenshotRequest): Promise<GetConsoleScreenshotResult> {
      const image = await ctx.machines.screenshot(input.InstanceId!);
      if (!image) throw new ApiError("IncorrectInstanceState", `The instance '${input.InstanceId}' has no screen: no guest of it is running.`);
      // qemu's screendump, as PNG (EC2 sends JPEG; both are base64 image data to a client).
      return { InstanceId: input.InstanceId, ImageData: image.toString("base64") };
    },
  },

  DescribeInstanceTypeOfferings: {
    check(_ctx, input: DescribeInstanceTypeOfferingsRequest) {
      if (input.LocationType && !["region", "availability-zone", "availability-zone-id"].includes(input.LocationType)) {
        throw new ApiError("InvalidParameterValue", `Value (${input.LocationType}) for parameter locationType is invalid.`);
      }
      checkDescribe(input, undefined, OFFERING_LISTING);
    },
    async run(ctx, input: DescribeInstanceTypeOfferingsRequest): Promise<DescribeInstanceTypeOfferingsResult> {
      const locationType = input.LocationType ?? "region";
      const locations =
        locationType === "region" ? [ctx.region] : zonesOf(ctx.region).map((z) => (locationType === "availability-zone" ? z.zoneName : z.zoneId));
      const offerings = INSTANCE_TYPES.flatMap((t) =>
        locations.map((location) => ({
          InstanceType: t.name as InstanceTypeOffering["InstanceType"],
          LocationType: locationType as InstanceTypeOffering["LocationType"],
          Location: location,
        })),
      );
      // Offerings have no id of their own: a page continues after the last one's place in the list.
      const places = new Map(offerings.map((offering, i) => [offering, String(i).padStart(8, "0")]));
      const { page, nextToken } = await describePage(
        input,
        undefined,
        OFFERING_LISTING,
        rowsInHand(offerings, (o) => places.get(o)!),
      );
      return { InstanceTypeOfferings: page, NextToken: nextToken };
    },
  },

  ModifyInstanceCreditSpecification: {
    async check(ctx, input: ModifyInstanceCreditSpecificationRequest) {
      const requests = input.InstanceCreditSpecifications ?? [];
      for (const request of requests)
        if (!["standard", "unlimited"].includes(request.CpuCredits ?? ""))
          throw new ApiError("InvalidParameterValue", `Value (${request.CpuCredits}) for parameter cpuCredits is invalid.`);
      return instancesOf(
        ctx,
        requests.map((r) => r.InstanceId!),
      );
    },
    async run(
      ctx,
      input: ModifyInstanceCreditSpecificationRequest,
      records: Awaited<ReturnType<typeof instancesOf>>,
    ): Promise<ModifyInstanceCreditSpecificationResult> {
      const result: ModifyInstanceCreditSpecificationResult = { SuccessfulInstanceCreditSpecifications: [], UnsuccessfulInstanceCreditSpecifications: [] };
      // An instance named twice is changed and reported once, to the value it is given last.
      const credits = new Map((input.InstanceCreditSpecifications ?? []).map((request) => [request.InstanceId!, request.CpuCredits!]));
      for (const record of records) {
        const InstanceId = record.row.instance_id;
        if (!instanceType(record.row.instance_type)?.burstable) {
          const Message = `The instance type ${record.row.instance_type} does not support CPU credits.`;
          result.UnsuccessfulInstanceCreditSpecifications!.push({ InstanceId, Error: { Code: "InstanceCreditSpecification.NotSupported", Message } });
          continue;
        }
        await updateInstance(ctx.meta.db, InstanceId, { cpu_credits: credits.get(InstanceId)! });
        result.SuccessfulInstanceCreditSpecifications!.push({ InstanceId });
      }
      return result;
    },
  },

  DescribeInstanceCreditSpecifications: {
    async check(ctx, input: DescribeInstanceCreditSpecificationsRequest) {
      if (input.InstanceIds?.length) await instancesOf(ctx, input.InstanceIds);
      checkDescribe(input, input.InstanceIds, CREDIT_LISTING);
    },
    async run(ctx, input: DescribeInstanceCreditSpecificationsRequest): Promise<DescribeInstanceCreditSpecificationsResult> {
      // Only burstable instances have credits to describe; terminated ones have none.
      const { page, nextToken } = await describePage(input, requestedIds(input.InstanceIds), CREDIT_LISTING, {
        read: (q) => listInstances(ctx.meta.db, ctx, q),
        idOf: (record) => record.row.instance_id,
        describe: async (records) => records.map((r) => (instanceType(r.row.instance_type)?.burstable && r.state !== "terminated" ? r : undefined)),
        notFound: instanceNotFound,
      });
      return {
        InstanceCreditSpecifications: page.map((r) => ({
          InstanceId: r.row.instance_id,
          CpuCredits: r.row.cpu_credits ?? instanceType(r.row.instance_type)!.defaultCredits,
        })),
        NextToken: nextToken,
      };
    },
  },

  GetInstanceUefiData: {
    async check(ctx, input: GetInstanceUefiDataRequest) {
      const [instance] = await instancesOf(ctx, [input.InstanceId!]);
      return instance!;
    },
    async run(ctx, input: GetInstanceUefiDataRequest, instance: InstanceRecord): Promise<GetInstanceUefiDataResult> {
      // The guest's variable store as it is now where this node runs it; otherwise what the
      // instance's last run left, or its image's. An instance that boots on legacy BIOS has none.
      const uefiData = (await ctx.machines.uefiData(instance.row.instance_id)) ?? instance.row.uefi_data;
      return { InstanceId: input.InstanceId, ...(uefiData ? { UefiData: uefiData } : {}) };
    },
  },
};

/** What one ModifyInstanceAttribute call changes, checked before anything is written. */
interface AttributeChange {
  columns?: InstanceSettings;
  sourceDestCheck?: boolean;
  groupIds?: string[];
  deleteOnTermination?: [device: string, value: boolean][];
}

/** Attributes EC2 changes only while the instance is stopped. */
const STOPPED_ONLY = new Set(["instanceType", "userData", "kernel", "ramdisk", "enaSupport", "sriovNetSupport", "ebsOptimized"]);

async function planAttributeChange(ctx: ActionContext, input: ModifyInstanceAttributeRequest): Promise<AttributeChange> {
  const [record] = await instancesOf(ctx, [input.InstanceId!]);
  const row = record!.row;
  // The generic form (Attribute + Value) and the typed members name one attribute per call.
  const given: [string, unknown][] = (
    [
      ["instanceType", input.InstanceType?.Value],
      ["kernel", input.Kernel?.Value],
      ["ramdisk", input.Ramdisk?.Value],
      ["userData", input.UserData?.Value],
      ["disableApiTermination", input.DisableApiTermination?.Value],
      ["disableApiStop", input.DisableApiStop?.Value],
      ["instanceInitiatedShutdownBehavior", input.InstanceInitiatedShutdownBehavior?.Value],
      ["sourceDestCheck", input.SourceDestCheck?.Value],
      ["groupSet", input.Groups?.length ? input.Groups : undefined],
      ["ebsOptimized", input.EbsOptimized?.Value],
      ["sriovNetSupport", input.SriovNetSupport?.Value],
      ["enaSupport", input.EnaSupport?.Value],
      ["blockDeviceMapping", input.BlockDeviceMappings?.length ? input.BlockDeviceMappings : undefined],
    ] as [string, unknown][]
  ).filter(([, value]) => value !== undefined);
  if (input.Attribute) given.push([input.Attribute, input.Value]);
  if (given.length !== 1) throw new ApiError("InvalidParameterCombination", "Exactly one attribute may be modified at a time.");
  const [attribute, value] = given[0]!;
  if (value === undefined) throw new ApiError("MissingParameter", "The request must contain the parameter value");
  if (STOPPED_ONLY.has(attribute) && record!.state !== "stopped")
    throw new ApiError("IncorrectInstanceState", `The instance '${row.instance_id}' is not in the 'stopped' state.`);
  const bool = (v: unknown) => v === true || v === "true";
  switch (attribute) {
    case "instanceType": {
      const type = instanceType(String(value));
      if (!type) throw new ApiError("InvalidInstanceAttributeValue", `Value (${String(value)}) for parameter instanceType is invalid.`);
      if (!type.architectures.includes(row.architecture as "x86_64"))
        throw new ApiError(
          "InvalidInstanceAttributeValue",
          `The instance type ${type.name} does not support the architecture '${row.architecture}' of the instance's image.`,
        );
      return { columns: { instance_type: type.name } };
    }
    case "userData": {
      // The model's blob arrives decoded; EC2 keeps and returns it base64-encoded.
      const bytes = value instanceof Uint8Array ? Buffer.from(value) : Buffer.from(String(value));
      if (bytes.length > 16 * 1024) throw new ApiError("InvalidParameterValue", "User data is limited to 16384 bytes.");
      return { columns: { user_data: bytes.toString("base64") } };
    }
    case "kernel":
      return { columns: { kernel_id: String(value) } };
    case "ramdisk":
      return { columns: { ramdisk_id: String(value) } };
    case "disableApiTermination":
      return { columns: { disable_api_termination: bool(value) ? 1 : 0 } };
    case "disableApiStop":
      return { columns: { disable_api_stop: bool(value) ? 1 : 0 } };
    case "ebsOptimized":
      return { columns: { ebs_optimized: bool(value) ? 1 : 0 } };
    case "enaSupport":
      return { columns: { ena_support: bool(value) ? 1 : 0 } };
    case "sriovNetSupport":
      return { columns: { sriov_net_support: String(value) } };
    case "instanceInitiatedShutdownBehavior":
      if (value !== "stop" && value !== "terminate")
        throw new ApiError("InvalidParameterValue", `Value (${String(value)}) for parameter instanceInitiatedShutdownBehavior is invalid.`);
      return { columns: { shutdown_behavior: value } };
    case "sourceDestCheck":
      return { sourceDestCheck: bool(value) };
    case "groupSet": {
      const ids = typeof value === "string" ? [value] : (value as string[]);
      const groups = await groupsById(ctx, ids);
      const eni = await primaryInterface(ctx, row.instance_id);
      for (const group of groups)
        if (group.vpc_id !== eni?.vpc_id)
          throw new ApiError("InvalidGroup.NotFound", `The security group '${group.group_id}' does not exist in VPC '${eni?.vpc_id}'`);
      return { groupIds: groups.map((group) => group.group_id) };
    }
    case "blockDeviceMapping": {
      const attached = await attachmentsOf(ctx.meta.db, { instanceIds: [row.instance_id] });
      const changes: [string, boolean][] = [];
      for (const mapping of value as { DeviceName?: string; Ebs?: { DeleteOnTermination?: boolean } }[]) {
        if (!attached.some((a) => a.device === mapping.DeviceName))
          throw new ApiError("InvalidInstanceAttributeValue", `No device is mapped at ${mapping.DeviceName ?? ""}`);
        changes.push([mapping.DeviceName!, Boolean(mapping.Ebs?.DeleteOnTermination)]);
      }
      return { deleteOnTermination: changes };
    }
    default:
      throw new ApiError("InvalidParameterValue", `Value (${attribute}) for parameter attribute is invalid.`);
  }
}

/**
 * A running instance's checks: with a guest, the instance check follows it (initializing until
 * its login prompt, impaired when it never comes up); without one, it passes at once.
 */
function statusOf(record: InstanceRecord, guest: GuestHealth | undefined): InstanceStatus {
  const running = record.state === "running";
  const passed = {
    Status: running ? ("ok" as const) : ("not-applicable" as const),
    Details: running ? [{ Name: "reachability" as const, Status: "passed" as const }] : [],
  };
  const instance = !running || guest === undefined || guest.status === "ok" ? passed : guestStatus(guest);
  return {
    InstanceId: record.row.instance_id,
    AvailabilityZone: record.row.availability_zone,
    InstanceState: { Code: STATE_CODES[record.state], Name: record.state },
    InstanceStatus: instance,
    SystemStatus: passed,
    AttachedEbsStatus: passed,
  };
}

function guestStatus(guest: Exclude<GuestHealth, { status: "ok" }>): InstanceStatus["InstanceStatus"] {
  if (guest.status === "initializing") return { Status: "initializing", Details: [{ Name: "reachability", Status: "initializing" }] };
  return { Status: "impaired", Details: [{ Name: "reachability", Status: "failed", ImpairedSince: guest.since }] };
}

/** The filters read the statuses as DescribeInstanceStatus answers them. */
const reachability = (summary: InstanceStatus["InstanceStatus"]) => summary?.Details?.find((d) => d.Name === "reachability")?.Status;
const STATUS_FIELDS = {
  "availability-zone": (t: Tagged<InstanceStatus>) => t.row.AvailabilityZone,
  "instance-state-name": (t: Tagged<InstanceStatus>) => t.row.InstanceState!.Name,
  "instance-state-code": (t: Tagged<InstanceStatus>) => String(t.row.InstanceState!.Code),
  "instance-status.status": (t: Tagged<InstanceStatus>) => t.row.InstanceStatus!.Status,
  "system-status.status": (t: Tagged<InstanceStatus>) => t.row.SystemStatus!.Status,
  "instance-status.reachability": (t: Tagged<InstanceStatus>) => reachability(t.row.InstanceStatus),
  "system-status.reachability": (t: Tagged<InstanceStatus>) => reachability(t.row.SystemStatus),
};

const OFFERING_FILTERS = {
  fields: {
    "instance-type": (o: InstanceTypeOffering) => o.InstanceType,
    location: (o: InstanceTypeOffering) => o.Location,
  },
};

const OFFERING_LISTING = { filters: OFFERING_FILTERS };
