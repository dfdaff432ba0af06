// Instances: launched from an image (a volume per EBS mapping, made from its snapshot), their
// states moving on a schedule (pending → running, stopping → stopped, …) with AWS's codes.
import { launchMetadataOptions, toMetadataOptions } from "./metadata-options.js";
import type {
  BlockDeviceMapping,
  InstanceNetworkInterface,
  DescribeInstancesRequest,
  DescribeInstancesResult,
  Instance,
  InstanceStateChange,
  RebootInstancesRequest,
  Reservation,
  RunInstancesRequest,
  StartInstancesRequest,
  StopInstancesRequest,
  TerminateInstancesRequest,
} from "@aws-sdk/client-ec2";
import { groupBy } from "../../domain/collections.js";
import type { FilterSpec } from "../../domain/filters.js";
import { newId, requestedIds } from "../../domain/ids.js";
import { instanceType, type InstanceTypeInfo } from "../../domain/instance-types.js";
import { zonesOf } from "../../domain/regions.js";
import { yieldToLoop } from "../../event-loop.js";
import { ApiError } from "../../protocol/errors.js";
import type { BlockDeviceRow } from "../../store/meta/images.js";
import {
  GUEST_SHUTDOWN,
  SubnetFull,
  attachmentsOf,
  countLiveInstances,
  insertLaunch,
  listInstances,
  setSchedule,
  type AttachmentRow,
  type InstanceRecord,
  type InstanceState,
  type Launch,
  type LaunchInterface,
} from "../../store/meta/instances.js";
import { availableAddresses, listNetworkInterfaces } from "../../store/meta/network.js";
import { putTags, tagsOf } from "../../store/meta/tags.js";
import { newVolumeRow } from "../../store/meta/volumes.js";
import { resolveImageParameter } from "../ssm/parameters.js";
import type { ActionContext, ActionTable } from "./action.js";
import { STATE_CODES, stateOf, userInitiated } from "./instance-states.js";
import { blockDevicesFrom, checkMappingCount } from "./image-records.js";
import { checkInstanceId, instanceNotFound, instancesOf, keyPairNamed, visibleImage } from "./lookups.js";
import { checkDescribe, describePage } from "./listing.js";
import { instanceInterfaces, planLaunchNetwork } from "./instance-network.js";
import { TAG_LIMITS, tagSpecificationsFor } from "./tag-specifications.js";

export function toInstance(
  record: InstanceRecord,
  attachments: readonly AttachmentRow[],
  tags: ReadonlyMap<string, string>,
  interfaces: readonly InstanceNetworkInterface[],
): Instance {
  const { row, state } = record;
  const primary = interfaces[0];
  // A public address is held only while the instance runs (a stop gives it back).
  const publicAddress = state === "pending" || state === "running" ? primary?.Association : undefined;
  return {
    InstanceId: row.instance_id,
    ImageId: row.image_id,
    State: stateOf(state),
    PrivateDnsName: primary?.PrivateDnsName ?? "",
    PrivateIpAddress: primary?.PrivateIpAddress,
    PublicDnsName: publicAddress?.PublicDnsName ?? "",
    PublicIpAddress: publicAddress?.PublicIp,
    SubnetId: primary?.SubnetId,
    VpcId: primary?.VpcId,
    NetworkInterfaces: interfaces.map((eni) => ({
      ...eni,
      Association: publicAddress && eni === primary ? eni.Association : undefined,
      PrivateIpAddresses: eni.PrivateIpAddresses?.map((p) => ({ ...p, Association: publicAddress && eni === primary ? p.Association : undefined })),
    })),
    SourceDestCheck: primary?.SourceDestCheck ?? true,
    PrivateDnsNameOptions: { HostnameType: "ip-name", EnableResourceNameDnsARecord: false, EnableResourceNameDnsAAAARecord: false },
    StateTransitionReason: row.state_transition_reason,
    StateReason: stateReason(row, state),
    KeyName: row.key_name ?? undefined,
    KernelId: row.kernel_id ?? undefined,
    RamdiskId: row.ramdisk_id ?? undefined,
    SriovNetSupport: row.sriov_net_support ?? undefined,
    AmiLaunchIndex: row.ami_launch_index,
    ProductCodes: [],
    InstanceType: row.instance_type as Instance["InstanceType"],
    LaunchTime: new Date(row.launch_time),
    Placement: { AvailabilityZone: row.availability_zone, GroupName: "", Tenancy: "default" },
    Monitoring: { State: "disabled" },
    Architecture: row.architecture as Instance["Architecture"],
    RootDeviceType: "ebs",
    RootDeviceName: row.root_device_name,
    BlockDeviceMappings: attachments.map((a) => ({
      DeviceName: a.device,
      Ebs: { AttachTime: new Date(a.attach_time), DeleteOnTermination: Boolean(a.delete_on_termination), Status: "attached", VolumeId: a.volume_id },
    })),
    VirtualizationType: row.virtualization_type as Instance["VirtualizationType"],
    ClientToken: row.client_token ?? "",
    Tags: tags.size ? [...tags].map(([Key, Value]) => ({ Key, Value })) : undefined,
    SecurityGroups: (primary?.Groups ?? []).map((g) => ({ GroupId: g.GroupId, GroupName: g.GroupName })),
    Hypervisor: "xen",
    EbsOptimized: Boolean(row.ebs_optimized),
    EnaSupport: Boolean(row.ena_support),
    Platform: (row.platform ?? undefined) as Instance["Platform"],
    PlatformDetails: row.platform === "windows" ? "Windows" : "Linux/UNIX",
    UsageOperation: row.platform === "windows" ? "RunInstances:0002" : "RunInstances",
    UsageOperationUpdateTime: new Date(row.launch_time),
    BootMode: (row.boot_mode ?? undefined) as Instance["BootMode"],
    CurrentInstanceBootMode: row.boot_mode === "uefi" ? "uefi" : "legacy-bios",
    HibernationOptions: { Configured: false },
    MetadataOptions: toMetadataOptions(row, "applied"),
    EnclaveOptions: { Enabled: false },
    CapacityReservationSpecification: { CapacityReservationPreference: "open" },
  };
}

function stateReason(row: InstanceRecord["row"], state: InstanceState): Instance["StateReason"] {
  if (row.state_transition_reason === GUEST_SHUTDOWN && state !== "running" && state !== "pending") {
    return { Code: "Client.InstanceInitiatedShutdown", Message: GUEST_SHUTDOWN };
  }
  if (state === "stopped" || state === "stopping")
    return { Code: "Client.UserInitiatedShutdown", Message: "Client.UserInitiatedShutdown: User initiated shutdown" };
  return undefined;
}

/** The volumes an instance gets: the image's EBS mappings, changed by the request's. */
function launchDevices(imageDevices: readonly BlockDeviceRow[], requested: readonly BlockDeviceRow[]): BlockDeviceRow[] {
  const devices = imageDevices.map((d) => ({ ...d }));
  for (const change of requested) {
    const index = devices.findIndex((d) => d.device_name === change.device_name);
    if (index < 0) {
      devices.push(change);
      continue;
    }
    if (change.no_device) {
      devices.splice(index, 1);
      continue;
    }
    const base = devices[index]!;
    if (change.volume_size !== null && base.volume_size !== null && change.volume_size < base.volume_size) {
      throw new ApiError(
        "InvalidBlockDeviceMapping",
        `Volume of size ${change.volume_size} is smaller than the image's ${base.volume_size} GiB for ${base.device_name}.`,
      );
    }
    devices[index] = {
      ...base,
      volume_size: change.volume_size ?? base.volume_size,
      volume_type: change.volume_type ?? base.volume_type,
      delete_on_termination: change.delete_on_termination ?? base.delete_on_termination,
      iops: change.iops ?? base.iops,
      throughput: change.throughput ?? base.throughput,
      encrypted: change.encrypted ?? base.encrypted,
    };
  }
  return devices.filter((d) => !d.no_device && !d.virtual_name);
}

async function planLaunch(ctx: ActionContext, input: RunInstancesRequest) {
  if (!input.ImageId) throw new ApiError("MissingParameter", "The request must contain the parameter ImageId");
  const min = input.MinCount!;
  const max = input.MaxCount!;
  if (min < 1 || max < min) throw new ApiError("InvalidParameterValue", `MinCount (${min}) must be at least 1 and no more than MaxCount (${max}).`);
  const type = input.InstanceType ?? "m1.small";
  const typeInfo = instanceType(type);
  if (!typeInfo) throw new ApiError("InvalidParameterValue", `Invalid value '${type}' for InstanceType.`);
  // Terraform sends an empty zone for "any zone".
  const requestedZone = input.Placement?.AvailabilityZone || undefined;
  if (requestedZone && !zonesOf(ctx.region).some((z) => z.zoneName === requestedZone))
    throw new ApiError("InvalidParameterValue", `Invalid availability zone: [${requestedZone}]`);
  // An ImageId of resolve:ssm:<parameter> launches the image the parameter names, as EC2 does.
  const imageId = (await resolveImageParameter({ ...ctx, catalogue: ctx.config.catalogue }, input.ImageId)) ?? input.ImageId;
  const { image, devices: imageDevices } = await visibleImage(ctx, imageId);
  if (image.state !== "available") throw new ApiError("InvalidAMIID.Unavailable", `The image id '[${image.image_id}]' is not available (it is ${image.state})`);
  if (!typeInfo.architectures.includes(image.architecture as "x86_64")) {
    throw new ApiError(
      "InvalidParameterValue",
      `The architecture '${typeInfo.architectures.join(", ")}' of the specified instance type does not match the architecture '${image.architecture}' of the specified AMI.`,
    );
  }
  // Mappings that change an image device need not name a snapshot; new ones are checked in full.
  checkMappingCount(input.BlockDeviceMappings);
  const requested: BlockDeviceRow[] = [];
  for (const mapping of input.BlockDeviceMappings ?? []) {
    const existing = imageDevices.find((d) => d.device_name === mapping.DeviceName);
    if (existing && mapping.Ebs && !mapping.Ebs.SnapshotId) {
      const ebs = mapping.Ebs;
      requested.push({
        ...existing,
        volume_size: ebs.VolumeSize ?? null,
        volume_type: ebs.VolumeType ?? null,
        delete_on_termination: ebs.DeleteOnTermination === undefined ? null : ebs.DeleteOnTermination ? 1 : 0,
        iops: ebs.Iops ?? null,
        throughput: ebs.Throughput ?? null,
        encrypted: ebs.Encrypted === undefined ? null : ebs.Encrypted ? 1 : 0,
      });
    } else {
      requested.push(...(await blockDevicesFrom(ctx, [mapping as BlockDeviceMapping])));
    }
  }
  const devices = launchDevices(imageDevices, requested);
  checkAttachments(typeInfo, devices.length);
  if (input.KeyName) await keyPairNamed(ctx, input.KeyName);
  const tags = tagSpecificationsFor(input.TagSpecifications, ["instance", "volume", "network-interface"]);
  const { zone, network } = await planLaunchNetwork(ctx, input, requestedZone);
  if (input.InstanceInitiatedShutdownBehavior && !["stop", "terminate"].includes(input.InstanceInitiatedShutdownBehavior)) {
    throw new ApiError(
      "InvalidParameterValue",
      `Value (${input.InstanceInitiatedShutdownBehavior}) for parameter instanceInitiatedShutdownBehavior is invalid.`,
    );
  }
  const credits = input.CreditSpecification?.CpuCredits;
  if (credits !== undefined && (!typeInfo.burstable || !["standard", "unlimited"].includes(credits))) {
    throw new ApiError("InvalidParameterCombination", `The instance type ${type} does not support CPU credit option ${credits}.`);
  }
  const metadataOptions = launchMetadataOptions(input.MetadataOptions, image);
  const count = Math.min(await launchCount(ctx, network, min, max), checkRoom(ctx, typeInfo, zone, min));
  return { image, devices, type, zone, network, count, tags, metadataOptions };
}

/**
 * EC2's volume limits for an instance: a Nitro instance's 28 attachments are shared by its
 * volumes and network interfaces (a launch gives it one); Xen instances take up to 40 volumes.
 */
function checkAttachments(type: InstanceTypeInfo, volumes: number): void {
  const limit = type.hypervisor === "nitro" ? 28 - 1 : 40;
  if (volumes > limit) {
    const message = `An instance of type ${type.name} can have at most ${limit} volumes attached; the launch gives it ${volumes}.`;
    throw new ApiError("AttachmentLimitExceeded", message);
  }
}

/** How many guests of the type the host has room for, at least `min`, else EC2's InsufficientInstanceCapacity. */
function checkRoom(ctx: ActionContext, type: InstanceTypeInfo, zone: string, min: number): number {
  const room = ctx.machines.room(type.memoryMiB);
  if (room < min) {
    throw new ApiError(
      "InsufficientInstanceCapacity",
      `We currently do not have sufficient ${type.name} capacity in the Availability Zone you requested (${zone}). ` +
        "Our system will be working on provisioning additional capacity. You can currently get capacity by not specifying an Availability Zone in your request or choosing a different Availability Zone.",
    );
  }
  return room;
}

const insufficientAddresses = (subnetId: string) =>
  new ApiError(
    "InsufficientFreeAddressesInSubnet",
    `There are not enough free addresses in subnet '${subnetId}' to satisfy the requested number of instances.`,
  );

/**
 * How many instances a launch makes, decided before anything is written, as EC2 decides it:
 * MinCount must fit under the account's instance limit in the region and in the subnet's free
 * addresses, else nothing is launched; up to MaxCount are launched as far as both allow.
 */
async function launchCount(ctx: ActionContext, network: LaunchInterface, min: number, max: number): Promise<number> {
  const limit = ctx.config.limits.maxInstances;
  const live = await countLiveInstances(ctx.meta.db, ctx);
  if (live + min > limit) {
    throw new ApiError(
      "InstanceLimitExceeded",
      `You have requested more instances (${live + min}) than your current instance limit of ${limit} allows for the specified instance type. ` +
        "Please visit http://aws.amazon.com/contact-us/ec2-request to request an adjustment to this limit.",
    );
  }
  const free = network.privateIp ? 1 : await availableAddresses(ctx.meta.db, network.subnet);
  if (free < min) throw insufficientAddresses(network.subnet.subnet_id);
  return Math.min(max, limit - live, free);
}

export const instanceActions: ActionTable = {
  RunInstances: {
    check: (ctx, input: RunInstancesRequest) => planLaunch(ctx, input),
    async run(ctx, input: RunInstancesRequest, planned: Awaited<ReturnType<typeof planLaunch>>): Promise<Reservation> {
      if (input.ClientToken) {
        const earlier = await listInstances(ctx.meta.db, ctx, { clientToken: input.ClientToken });
        if (earlier.length) return describeReservation(ctx, earlier);
      }
      const { image, devices, type, zone, network, count, tags, metadataOptions } = planned;
      const now = Date.now();
      const launchTime = new Date(now).toISOString();
      const reservationId = newId("r");
      const launches: Launch[] = [];
      for (let i = 0; i < count; i++) {
        await yieldToLoop();
        const instanceId = newId("i");
        const volumes = devices.map((d) => ({
          device: d.device_name,
          deleteOnTermination: d.delete_on_termination !== 0,
          // Attached at launch: available (in-use while attached) at once.
          volume: newVolumeRow({
            account_id: ctx.accountId,
            region: ctx.region,
            volume_id: newId("vol"),
            size: d.volume_size!,
            snapshot_id: d.snapshot_id,
            availability_zone: zone,
            volume_type: d.volume_type ?? "gp2",
            iops: d.iops,
            throughput: d.throughput,
            encrypted: d.encrypted ? 1 : 0,
            kms_key_id: d.kms_key_id,
            create_time: launchTime,
          }),
        }));
        launches.push({
          instance: {
            account_id: ctx.accountId,
            region: ctx.region,
            instance_id: instanceId,
            reservation_id: reservationId,
            image_id: image.image_id,
            instance_type: type,
            key_name: input.KeyName ?? null,
            availability_zone: zone,
            state_schedule: JSON.stringify(ctx.machines.launchSchedule(now)),
            state_transition_reason: "",
            launch_time: launchTime,
            ami_launch_index: i,
            architecture: image.architecture,
            root_device_name: image.root_device_name,
            virtualization_type: image.virtualization_type,
            ena_support: image.ena_support,
            boot_mode: image.boot_mode,
            uefi_data: image.uefi_data,
            platform: image.platform,
            client_token: input.ClientToken ?? null,
            user_data: input.UserData ?? null,
            disable_api_termination: input.DisableApiTermination ? 1 : 0,
            disable_api_stop: input.DisableApiStop ? 1 : 0,
            ebs_optimized: input.EbsOptimized ? 1 : 0,
            shutdown_behavior: input.InstanceInitiatedShutdownBehavior ?? "stop",
            sriov_net_support: image.sriov_net_support,
            cpu_credits: input.CreditSpecification?.CpuCredits ?? null,
            kernel_id: image.kernel_id,
            ramdisk_id: image.ramdisk_id,
            node_id: null,
            node_lease_until: null,
            ...metadataOptions,
          },
          volumes,
        });
      }
      await insertLaunch(ctx.meta.db, network, launches).catch((error: unknown) => {
        // Addresses taken since the check (another launch in the subnet meanwhile).
        if (error instanceof SubnetFull) throw insufficientAddresses(error.subnetId);
        throw error;
      });
      const instanceTags = tags.get("instance") ?? [];
      const volumeTags = tags.get("volume") ?? [];
      const interfaceTags = tags.get("network-interface") ?? [];
      if (instanceTags.length)
        await putTags(
          ctx.meta.db,
          ctx,
          launches.map((l) => ({ id: l.instance.instance_id, type: "instance" })),
          instanceTags,
          TAG_LIMITS.perResource,
        );
      const volumeIds = launches.flatMap((l) => l.volumes.map((v) => ({ id: v.volume.volume_id, type: "volume" })));
      if (volumeTags.length && volumeIds.length) await putTags(ctx.meta.db, ctx, volumeIds, volumeTags, TAG_LIMITS.perResource);
      if (interfaceTags.length) {
        const interfaces = await listNetworkInterfaces(ctx.meta.db, ctx, { instanceIds: launches.map((l) => l.instance.instance_id) });
        await putTags(
          ctx.meta.db,
          ctx,
          interfaces.map((n) => ({ id: n.network_interface_id, type: "network-interface" })),
          interfaceTags,
          TAG_LIMITS.perResource,
        );
      }
      ctx.machines.boot(launches.map((l) => l.instance.instance_id));
      // RunInstances answers with the instances as launched: pending.
      const records = await listInstances(ctx.meta.db, ctx, { ids: launches.map((l) => l.instance.instance_id) });
      return describeReservation(
        ctx,
        records.map((r) => ({ ...r, state: "pending" as const })),
      );
    },
  },

  DescribeInstances: {
    check: (_ctx, input: DescribeInstancesRequest) => checkDescribe(input, input.InstanceIds, LISTING),
    async run(ctx, input: DescribeInstancesRequest): Promise<DescribeInstancesResult> {
      const { page, nextToken } = await describePage(input, requestedIds(input.InstanceIds), LISTING, {
        read: (q) => listInstances(ctx.meta.db, ctx, q),
        idOf: (record) => record.row.instance_id,
        describe: (records) => describeAll(ctx, records),
        notFound: instanceNotFound,
      });
      const reservations = groupBy(page, (described) => described.record.row.reservation_id);
      return {
        Reservations: [...reservations.values()].map((group) => reservationOf(ctx, group)),
        NextToken: nextToken,
      };
    },
  },

  StopInstances: {
    async check(ctx, input: StopInstancesRequest) {
      for (const record of await instancesOf(ctx, input.InstanceIds ?? [])) {
        if (record.state === "terminated" || record.state === "shutting-down") throw incorrectState(record, "stop");
        if (record.row.disable_api_stop) throw notPermitted(record, "stopped", "disableApiStop");
      }
    },
    async run(ctx, input: StopInstancesRequest) {
      const { changing, changes } = await changesOf(ctx, input.InstanceIds ?? [], (state) =>
        state === "stopped" || state === "stopping" ? undefined : "stopping",
      );
      await ctx.machines.stop(changing, userInitiated(), input.Force ?? false);
      return { StoppingInstances: changes };
    },
  },

  StartInstances: {
    async check(ctx, input: StartInstancesRequest) {
      const records = await instancesOf(ctx, input.InstanceIds ?? []);
      for (const record of records) {
        if (!["stopped", "pending", "running"].includes(record.state)) throw incorrectState(record, "start");
      }
      // Room for all of them at once, checked for the one that needs the most memory (the host's room shrinks with it).
      const stopped = records.filter((r) => r.state === "stopped");
      const largest = stopped
        .map((record) => ({ record, type: instanceType(record.row.instance_type) }))
        .filter((s) => s.type !== undefined)
        .sort((a, b) => b.type!.memoryMiB - a.type!.memoryMiB)[0];
      if (largest) checkRoom(ctx, largest.type!, largest.record.row.availability_zone, stopped.length);
    },
    async run(ctx, input: StartInstancesRequest) {
      const { changing, changes } = await changesOf(ctx, input.InstanceIds ?? [], (state) => (state === "stopped" ? "pending" : undefined));
      for (const record of changing) await setSchedule(ctx.meta.db, record.row.instance_id, ctx.machines.launchSchedule(), userInitiated());
      ctx.machines.boot(changing.map((r) => r.row.instance_id));
      return { StartingInstances: changes };
    },
  },

  RebootInstances: {
    async check(ctx, input: RebootInstancesRequest) {
      for (const record of await instancesOf(ctx, input.InstanceIds ?? [])) {
        if (record.state !== "running") throw incorrectState(record, "reboot");
      }
    },
    async run(ctx, input: RebootInstancesRequest) {
      await ctx.machines.reboot(await instancesOf(ctx, input.InstanceIds ?? []));
    },
  },

  TerminateInstances: {
    async check(ctx, input: TerminateInstancesRequest) {
      for (const record of await instancesOf(ctx, input.InstanceIds ?? [])) {
        if (record.row.disable_api_termination) throw notPermitted(record, "terminated", "disableApiTermination");
      }
    },
    async run(ctx, input: TerminateInstancesRequest) {
      const { changing, changes } = await changesOf(ctx, input.InstanceIds ?? [], (state) =>
        state === "terminated" || state === "shutting-down" ? undefined : "shutting-down",
      );
      await ctx.machines.terminate(ctx, changing, userInitiated());
      return { TerminatingInstances: changes };
    },
  },
};

const notPermitted = (record: InstanceRecord, done: string, attribute: string) =>
  new ApiError(
    "OperationNotPermitted",
    `The instance '${record.row.instance_id}' may not be ${done}. Modify its '${attribute}' instance attribute and try again.`,
  );

const incorrectState = (record: InstanceRecord, verb: string) =>
  new ApiError(
    "IncorrectInstanceState",
    `The instance '${record.row.instance_id}' is not in a state from which it can be ${verb === "stop" ? "stopped" : verb === "start" ? "started" : "rebooted"}.`,
  );

/** The instances a request changes (those `next` gives a state) and each one's previous and current state. */
async function changesOf(ctx: ActionContext, ids: readonly string[], next: (state: InstanceState) => InstanceState | undefined) {
  const changing: InstanceRecord[] = [];
  const changes: InstanceStateChange[] = [];
  for (const record of await instancesOf(ctx, ids)) {
    const to = next(record.state);
    if (to) changing.push(record);
    changes.push({ InstanceId: record.row.instance_id, PreviousState: stateOf(record.state), CurrentState: stateOf(to ?? record.state) });
  }
  return { changing, changes };
}

/** Each instance with what DescribeInstances shows of it and what its filters read. */
/** The instances as DescribeInstances shows them. */
export async function describeInstances(ctx: ActionContext, records: readonly InstanceRecord[]): Promise<Instance[]> {
  return (await describeAll(ctx, records)).map((d) => d.instance);
}

async function describeAll(ctx: ActionContext, records: readonly InstanceRecord[]): Promise<Described[]> {
  const ids = records.map((r) => r.row.instance_id);
  const attachments = groupBy(await attachmentsOf(ctx.meta.db, { instanceIds: ids }), (a) => a.instance_id);
  const tags = await tagsOf(ctx.meta.db, ctx, ids);
  const interfaces = await instanceInterfaces(ctx, ids);
  const described: Described[] = [];
  for (const record of records) {
    await yieldToLoop();
    const id = record.row.instance_id;
    const own = { attachments: attachments.get(id) ?? [], tags: tags.get(id) ?? new Map<string, string>() };
    described.push({ record, ...own, instance: toInstance(record, own.attachments, own.tags, interfaces.get(id) ?? []) });
  }
  return described;
}

function reservationOf(ctx: ActionContext, group: readonly Described[]): Reservation {
  return {
    ReservationId: group[0]!.record.row.reservation_id,
    OwnerId: ctx.accountId,
    Groups: [],
    Instances: [...group].sort((a, b) => a.record.row.ami_launch_index - b.record.row.ami_launch_index).map((d) => d.instance),
  };
}

async function describeReservation(ctx: ActionContext, records: InstanceRecord[]): Promise<Reservation> {
  return reservationOf(ctx, await describeAll(ctx, records));
}

interface Described {
  record: InstanceRecord;
  attachments: readonly AttachmentRow[];
  tags: ReadonlyMap<string, string>;
  /** The instance as DescribeInstances shows it. */
  instance: Instance;
}

const FILTERS: FilterSpec<Described> = {
  fields: {
    "instance-id": (d: Described) => d.record.row.instance_id,
    "instance-state-name": (d: Described) => d.record.state,
    "instance-state-code": (d: Described) => String(STATE_CODES[d.record.state]),
    "image-id": (d: Described) => d.record.row.image_id,
    "instance-type": (d: Described) => d.record.row.instance_type,
    "availability-zone": (d: Described) => d.record.row.availability_zone,
    "reservation-id": (d: Described) => d.record.row.reservation_id,
    "launch-time": (d: Described) => d.record.row.launch_time,
    "key-name": (d: Described) => d.record.row.key_name ?? undefined,
    architecture: (d: Described) => d.record.row.architecture,
    "root-device-type": () => "ebs",
    "root-device-name": (d: Described) => d.record.row.root_device_name,
    "virtualization-type": (d: Described) => d.record.row.virtualization_type,
    "owner-id": (d: Described) => d.record.row.account_id,
    "client-token": (d: Described) => d.record.row.client_token ?? undefined,
    "block-device-mapping.volume-id": (d: Described) => d.attachments.map((a) => a.volume_id),
    "block-device-mapping.device-name": (d: Described) => d.attachments.map((a) => a.device),
    "block-device-mapping.delete-on-termination": (d: Described) => d.attachments.map((a) => String(Boolean(a.delete_on_termination))),
    "block-device-mapping.status": (d: Described) => d.attachments.map(() => "attached"),
    "platform-details": (d: Described) => (d.record.row.platform === "windows" ? "Windows" : "Linux/UNIX"),
    "subnet-id": (d: Described) => d.instance.SubnetId,
    "vpc-id": (d: Described) => d.instance.VpcId,
    "private-ip-address": (d: Described) => d.instance.PrivateIpAddress,
    "private-dns-name": (d: Described) => d.instance.PrivateDnsName,
    "ip-address": (d: Described) => d.instance.PublicIpAddress,
    "dns-name": (d: Described) => d.instance.PublicDnsName || undefined,
    "instance.group-id": (d: Described) => (d.instance.SecurityGroups ?? []).map((g) => g.GroupId!),
    "instance.group-name": (d: Described) => (d.instance.SecurityGroups ?? []).map((g) => g.GroupName!),
    "network-interface.network-interface-id": (d: Described) => (d.instance.NetworkInterfaces ?? []).map((n) => n.NetworkInterfaceId!),
    "network-interface.subnet-id": (d: Described) => (d.instance.NetworkInterfaces ?? []).map((n) => n.SubnetId!),
    "network-interface.vpc-id": (d: Described) => (d.instance.NetworkInterfaces ?? []).map((n) => n.VpcId!),
    "metadata-options.http-tokens": (d: Described) => d.record.row.http_tokens,
    "metadata-options.http-put-response-hop-limit": (d: Described) => String(d.record.row.http_put_response_hop_limit),
    "metadata-options.http-endpoint": (d: Described) => d.record.row.http_endpoint,
    "metadata-options.instance-metadata-tags": (d: Described) => d.record.row.instance_metadata_tags,
  },
  tags: (d: Described) => d.tags,
};

const LISTING = { filters: FILTERS, checkId: checkInstanceId, idsParameter: "instancesSet" };
