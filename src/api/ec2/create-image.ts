// CreateImage: an AMI from an instance's volumes. Without NoReboot a running instance is stopped
// (stopping → stopped), its volumes are snapshotted at rest, and it is started again
// (pending → running); with NoReboot it stays running. Each snapshot is the volume's manifest at
// that moment, sharing every chunk; the image is available once its snapshots complete.
import type { CreateImageRequest, CreateImageResult } from "@aws-sdk/client-ec2";
import { newId } from "../../domain/ids.js";
import { schedule, transition } from "../../domain/transitions.js";
import { ApiError } from "../../protocol/errors.js";
import { completeImage, failImage, imageByName, newBlockDeviceRow, newImageRow, type BlockDeviceRow, type ImageRow } from "../../store/meta/images.js";
import { attachmentsOf, type InstanceState } from "../../store/meta/instances.js";
import { atomically } from "../../store/meta/database.js";
import {
  captureVolume,
  completeSnapshots,
  insertSnapshot,
  insertSnapshotOfVolume,
  newSnapshotRow,
  setSnapshotState,
  type SnapshotRow,
} from "../../store/meta/snapshots.js";
import { getVolume } from "../../store/meta/volumes.js";
import type { ActionContext, ActionTable } from "./action.js";
import { scheduleInstance, userInitiated } from "./instance-states.js";
import { blockDevicesFrom, insertNewImage } from "./image-records.js";
import { checkImageName, instancesOf, malformedName } from "./lookups.js";
import { tagSpecificationsFor } from "./tag-specifications.js";

async function plan(ctx: ActionContext, input: CreateImageRequest) {
  const name = checkImageName(input.Name!);
  const [instance] = await instancesOf(ctx, [input.InstanceId!]);
  if (instance!.state !== "running" && instance!.state !== "stopped") {
    throw new ApiError("IncorrectInstanceState", `The instance '${instance!.row.instance_id}' is not in the 'running' or 'stopped' state.`);
  }
  const taken = await imageByName(ctx.meta.db, ctx, name);
  if (taken) throw new ApiError("InvalidAMIName.Duplicate", `AMI name ${name} is already in use by AMI ${taken.image_id}`);
  const tags = tagSpecificationsFor(input.TagSpecifications, ["image", "snapshot"]);
  const requested = input.BlockDeviceMappings ?? [];
  // The instance's volumes, as the request changes them: NoDevice drops one, VolumeSize grows one.
  const volumes: { volumeId: string; device: BlockDeviceRow }[] = [];
  for (const attachment of await attachmentsOf(ctx.meta.db, { instanceIds: [instance!.row.instance_id] })) {
    const change = requested.find((m) => m.DeviceName === attachment.device);
    if (change?.NoDevice !== undefined) continue;
    const volume = (await getVolume(ctx.meta.db, ctx, attachment.volume_id))!;
    const size = change?.Ebs?.VolumeSize ?? volume.size;
    if (size < volume.size)
      throw new ApiError("InvalidBlockDeviceMapping", `Volume of size ${size} is smaller than the ${volume.size} GiB volume at ${attachment.device}.`);
    volumes.push({
      volumeId: volume.volume_id,
      device: newBlockDeviceRow({
        device_name: attachment.device,
        volume_size: size,
        volume_type: change?.Ebs?.VolumeType ?? volume.volume_type,
        delete_on_termination: (change?.Ebs?.DeleteOnTermination ?? Boolean(attachment.delete_on_termination)) ? 1 : 0,
        encrypted: volume.encrypted,
        iops: change?.Ebs?.Iops ?? volume.iops,
        throughput: change?.Ebs?.Throughput ?? volume.throughput,
        kms_key_id: volume.kms_key_id,
      }),
    });
  }
  const mapped = new Set(volumes.map((v) => v.device.device_name));
  const others = requested.filter((m) => m.DeviceName && !mapped.has(m.DeviceName) && !(m.DeviceName === instance!.row.root_device_name));
  const extra = await blockDevicesFrom(
    ctx,
    others.filter((m) => m.NoDevice === undefined),
  );
  if (!volumes.some((v) => v.device.device_name === instance!.row.root_device_name)) {
    throw new ApiError("InvalidBlockDeviceMapping", `The root device ${instance!.row.root_device_name} cannot be left out of the image.`);
  }
  return { name, instance: instance!, volumes, extra, tags };
}

/** The capture of a guest that is off now: each snapshot takes its volume's data, then the image is available. */
async function captureOff(ctx: ActionContext, instanceId: string, imageId: string, creationDate: string, snapshots: readonly SnapshotRow[]): Promise<void> {
  const db = ctx.meta.db;
  try {
    // The variables as the guest left them at its power-off, with its disks.
    const uefiData = await ctx.machines.uefiData(instanceId);
    await atomically(db, async (tx) => {
      for (const snapshot of snapshots) await captureVolume(tx, snapshot.snapshot_id, snapshot.volume_id);
      await completeSnapshots(
        tx,
        snapshots.map((s) => s.snapshot_id),
      );
      await completeImage(tx, imageId, creationDate, uefiData);
    });
  } catch (error) {
    await failImage(db, imageId, { code: "Server.InternalError", message: `The capture failed: ${(error as Error).message}` });
    for (const snapshot of snapshots) await setSnapshotState(db, snapshot.snapshot_id, "error", "");
    throw error;
  }
}

export const createImageActions: ActionTable = {
  CreateImage: {
    parameterErrors: { Name: malformedName },
    check: (ctx, input: CreateImageRequest) => plan(ctx, input),
    async run(ctx, input: CreateImageRequest, planned: Awaited<ReturnType<typeof plan>>): Promise<CreateImageResult> {
      const { name, instance, volumes, extra, tags } = planned;
      const delay = ctx.config.stateDelayMs;
      const now = Date.now();
      const reboot = !input.NoReboot && instance.state === "running";
      // A running guest is powered off, captured and booted again by its backend, in the
      // background; the snapshots and image stay pending until then.
      const withGuest = reboot && ctx.machines.runsGuest(instance.row.instance_id);
      if (reboot && !withGuest) {
        await scheduleInstance(ctx, instance.row.instance_id, schedule<InstanceState>(["stopping", "stopped", "pending", "running"], delay, now));
      }
      // What a running guest wrote and has not flushed yet is in the capture (crash-consistent with NoReboot).
      if (!withGuest) await ctx.machines.flushVolumes(volumes.map((v) => v.volumeId));
      // The snapshots complete once the instance is at rest (after its stop when it reboots).
      const readyIn = reboot ? 2 * delay : delay;
      const pending = <State extends string>(done: State) =>
        withGuest ? { state: "pending" as State, next_state: null, next_state_at: null } : transition<State>("pending" as State, done, readyIn, now);
      const imageId = newId("ami");
      const snapshots: SnapshotRow[] = [];
      for (const { volumeId, device } of volumes) {
        const volume = (await getVolume(ctx.meta.db, ctx, volumeId))!;
        const snapshot = newSnapshotRow({
          account_id: ctx.accountId,
          region: ctx.region,
          snapshot_id: newId("snap"),
          volume_id: volumeId,
          volume_size: volume.size,
          ...pending<SnapshotRow["state"]>("completed"),
          progress: "",
          start_time: new Date(now).toISOString(),
          description: `Created by CreateImage(${instance.row.instance_id}) for ${imageId}`,
          encrypted: volume.encrypted,
          kms_key_id: volume.kms_key_id,
        });
        if (withGuest) await insertSnapshot(ctx.meta.db, snapshot);
        else await insertSnapshotOfVolume(ctx.meta.db, snapshot);
        device.snapshot_id = snapshot.snapshot_id;
        snapshots.push(snapshot);
      }
      // What the instance is billed as is not kept; its image says Linux/UNIX or Windows.
      const image = newImageRow({
        account_id: ctx.accountId,
        region: ctx.region,
        image_id: imageId,
        name,
        description: input.Description ?? "",
        ...pending<ImageRow["state"]>("available"),
        architecture: instance.row.architecture,
        virtualization_type: instance.row.virtualization_type,
        root_device_name: instance.row.root_device_name,
        ena_support: instance.row.ena_support,
        boot_mode: instance.row.boot_mode,
        // EC2 copies the instance's UEFI variables into the AMI; a guest being captured with a
        // reboot gives them again at its power-off (captureOff).
        uefi_data: (await ctx.machines.uefiData(instance.row.instance_id)) ?? instance.row.uefi_data,
        platform: instance.row.platform,
        creation_date: new Date(now).toISOString(),
        source_instance_id: instance.row.instance_id,
      });
      await insertNewImage(
        ctx,
        { image, devices: [...volumes.map((v) => v.device), ...extra] },
        snapshots.map((s) => s.snapshot_id),
        tags,
      );
      if (withGuest) {
        await ctx.machines.rebootAround(instance, userInitiated(), () => captureOff(ctx, instance.row.instance_id, imageId, image.creation_date, snapshots));
      }
      return { ImageId: imageId };
    },
  },
};
