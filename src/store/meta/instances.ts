// Instances, the volumes attached to them, and their network interfaces.
import { randomBytes } from "node:crypto";
import { newId } from "../../domain/ids.js";
import { schedule, scheduledState, type Schedule } from "../../domain/transitions.js";
import type { MetaDb } from "./database.js";
import type { InstanceTable, VolumeAttachmentTable } from "./schema.js";
import type { Scope } from "./tags.js";
import { removeVolumes, writeVolume, type VolumeRow } from "./volumes.js";
import { freeAddress, insertNetworkInterface, releaseInterfaces, type SubnetRow } from "./network.js";

export type InstanceState = "pending" | "running" | "stopping" | "stopped" | "shutting-down" | "terminated";
export type InstanceRow = InstanceTable;
export type AttachmentRow = VolumeAttachmentTable;

export interface InstanceRecord {
  row: InstanceRow;
  state: InstanceState;
  schedule: Schedule<InstanceState>;
}

export const recordOf = (row: InstanceRow, now = Date.now()): InstanceRecord => {
  const schedule = JSON.parse(row.state_schedule) as Schedule<InstanceState>;
  return { row, schedule, state: scheduledState(schedule, now) };
};

/** An instance's primary network interface, as planned: its address is taken when it is written. */
export interface LaunchInterface {
  subnet: SubnetRow;
  groupIds: readonly string[];
  /** A requested address; otherwise the subnet's lowest free one. */
  privateIp?: string;
  publicIp: string | null;
  description: string;
  deleteOnTermination: boolean;
}

export interface Launch {
  instance: InstanceRow;
  volumes: { volume: VolumeRow; device: string; deleteOnTermination: boolean }[];
  network: LaunchInterface;
}

/**
 * Instances with their new volumes, attachments and network interfaces, all or nothing. An
 * address taken meanwhile (the unique index on subnet and address) fails the whole launch.
 */
export async function insertLaunch(db: MetaDb, launches: readonly Launch[]): Promise<void> {
  await db.transaction().execute(async (tx) => {
    for (const { instance, volumes, network } of launches) {
      await tx.insertInto("instances").values(instance).execute();
      for (const { volume, device, deleteOnTermination } of volumes) {
        await writeVolume(tx, volume);
        await tx.insertInto("volume_attachments").values({ volume_id: volume.volume_id, instance_id: instance.instance_id, device, attach_time: instance.launch_time, delete_on_termination: deleteOnTermination ? 1 : 0 }).execute();
      }
      const privateIp = network.privateIp ?? (await freeAddress(tx, network.subnet));
      if (!privateIp) throw new SubnetFull(network.subnet.subnet_id);
      await insertNetworkInterface(
        tx,
        {
          network_interface_id: newId("eni"),
          account_id: instance.account_id,
          region: instance.region,
          subnet_id: network.subnet.subnet_id,
          vpc_id: network.subnet.vpc_id,
          availability_zone: network.subnet.availability_zone,
          private_ip: privateIp,
          mac_address: `0e:${randomBytes(5).toString("hex").match(/../g)!.join(":")}`,
          description: network.description,
          public_ip: network.publicIp,
          source_dest_check: 1,
          instance_id: instance.instance_id,
          device_index: 0,
          attachment_id: newId("eni-attach"),
          attach_time: instance.launch_time,
          delete_on_termination: network.deleteOnTermination ? 1 : 0,
        },
        network.groupIds,
      );
    }
  });
}

export class SubnetFull extends Error {
  constructor(readonly subnetId: string) {
    super(`subnet ${subnetId} has no free address`);
  }
}

export async function listInstances(db: MetaDb, scope: Scope, q: { ids?: readonly string[]; after?: string } = {}): Promise<InstanceRecord[]> {
  let query = db.selectFrom("instances").selectAll().where("account_id", "=", scope.accountId).where("region", "=", scope.region);
  if (q.ids) query = query.where("instance_id", "in", q.ids);
  if (q.after) query = query.where("instance_id", ">", q.after);
  const now = Date.now();
  return (await query.orderBy("instance_id").execute()).map((row) => recordOf(row, now));
}

export async function setSchedule(db: MetaDb, instanceId: string, steps: Schedule<InstanceState>, reason: string): Promise<void> {
  await db.updateTable("instances").set({ state_schedule: JSON.stringify(steps), state_transition_reason: reason }).where("instance_id", "=", instanceId).execute();
}

export async function attachmentsOf(db: MetaDb, q: { instanceIds?: readonly string[]; volumeIds?: readonly string[] }): Promise<AttachmentRow[]> {
  let query = db.selectFrom("volume_attachments").selectAll();
  if (q.instanceIds) query = query.where("instance_id", "in", q.instanceIds.length ? q.instanceIds : [""]);
  if (q.volumeIds) query = query.where("volume_id", "in", q.volumeIds.length ? q.volumeIds : [""]);
  return query.orderBy("instance_id").orderBy("device").execute();
}

export async function attachVolume(db: MetaDb, attachment: AttachmentRow): Promise<void> {
  await db.insertInto("volume_attachments").values(attachment).execute();
}

export async function detachVolume(db: MetaDb, volumeId: string): Promise<void> {
  await db.deleteFrom("volume_attachments").where("volume_id", "=", volumeId).execute();
}

/**
 * Termination: volumes and interfaces marked DeleteOnTermination go with the instance; the rest
 * are detached.
 */
export async function releaseInstanceResources(db: MetaDb, scope: Scope, instanceId: string): Promise<void> {
  await db.transaction().execute(async (tx) => {
    await releaseInterfaces(tx, instanceId);
    const attachments = await tx.selectFrom("volume_attachments").selectAll().where("instance_id", "=", instanceId).execute();
    const doomed = attachments.filter((a) => a.delete_on_termination).map((a) => a.volume_id);
    await tx.deleteFrom("volume_attachments").where("instance_id", "=", instanceId).execute();
    await removeVolumes(tx, scope, doomed);
  });
}

export async function instanceById(db: MetaDb, instanceId: string): Promise<InstanceRecord | undefined> {
  const row = await db.selectFrom("instances").selectAll().where("instance_id", "=", instanceId).executeTakeFirst();
  return row && recordOf(row);
}

export const GUEST_SHUTDOWN = "Client.InstanceInitiatedShutdown: Instance initiated shutdown";

/**
 * A shutdown from inside the instance (`shutdown -h now` in the guest): it stops, or terminates
 * when its instanceInitiatedShutdownBehavior says so. Undefined when there is no such instance
 * (or it is not `owner`'s, when an owner is named).
 */
export async function shutdownFromInside(db: MetaDb, instanceId: string, delayMs: number, owner?: Scope): Promise<"stopped" | "terminated" | "not-running" | undefined> {
  const record = await instanceById(db, instanceId);
  if (!record || (owner && (record.row.account_id !== owner.accountId || record.row.region !== owner.region))) return undefined;
  if (record.state !== "running") return "not-running";
  const scope = { accountId: record.row.account_id, region: record.row.region };
  if (record.row.shutdown_behavior === "terminate") {
    await releaseInstanceResources(db, scope, instanceId);
    await setSchedule(db, instanceId, schedule<InstanceState>(["shutting-down", "terminated"], delayMs), GUEST_SHUTDOWN);
    return "terminated";
  }
  await setSchedule(db, instanceId, schedule<InstanceState>(["stopping", "stopped"], delayMs), GUEST_SHUTDOWN);
  return "stopped";
}
