// Instances, the volumes attached to them, and their network interfaces.
import { newId, randomHex } from "../../domain/ids.js";
import { scheduledState, type Schedule } from "../../domain/transitions.js";
import type { MetaDb } from "./database.js";
import { atomically } from "./database.js";
import type { ExpressionBuilder } from "kysely";
import type { GuestRequestTable, InstanceTable, MetaSchema, VolumeAttachmentTable } from "./schema.js";
import type { Scope } from "./tags.js";
import type { ListQuery } from "./database.js";
import { batchesOf, insertInBatches } from "./batches.js";
import { removeVolumes, writeVolumes, type VolumeRow } from "./volumes.js";
import { freeAddresses, insertNetworkInterfaces, releaseInterfaces, type SubnetRow } from "./network.js";

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
  /** A requested address (one instance); otherwise the subnet's lowest free ones. */
  privateIp?: string;
  /** A public address for each instance, or null for none. */
  publicIp: () => string | null;
  description: string;
  deleteOnTermination: boolean;
}

export interface Launch {
  instance: InstanceRow;
  volumes: { volume: VolumeRow; device: string; deleteOnTermination: boolean }[];
}

/**
 * Instances with their new volumes, attachments and network interfaces, all or nothing, in few
 * statements whatever their number. An address taken meanwhile (the unique index on subnet and
 * address) fails the whole launch.
 */
export async function insertLaunch(db: MetaDb, network: LaunchInterface, launches: readonly Launch[]): Promise<void> {
  if (launches.length === 0) return;
  await atomically(db, async (tx) => {
    const addresses = network.privateIp ? [network.privateIp] : await freeAddresses(tx, network.subnet, launches.length);
    if (addresses.length < launches.length) throw new SubnetFull(network.subnet.subnet_id);
    await insertInBatches(
      launches.map((l) => l.instance),
      (batch) => tx.insertInto("instances").values(batch).execute(),
    );
    await writeVolumes(
      tx,
      launches.flatMap((l) => l.volumes.map((v) => v.volume)),
    );
    const attachments = launches.flatMap(({ instance, volumes }) =>
      volumes.map(({ volume, device, deleteOnTermination }) => ({
        volume_id: volume.volume_id,
        instance_id: instance.instance_id,
        device,
        attach_time: instance.launch_time,
        delete_on_termination: deleteOnTermination ? 1 : 0,
      })),
    );
    await insertInBatches(attachments, (batch) => tx.insertInto("volume_attachments").values(batch).execute());
    // Made as they are written: a thousand take longer to make than a slice of the event loop.
    function* interfaces() {
      for (const [i, { instance }] of launches.entries()) {
        yield {
          network_interface_id: newId("eni"),
          account_id: instance.account_id,
          region: instance.region,
          subnet_id: network.subnet.subnet_id,
          vpc_id: network.subnet.vpc_id,
          availability_zone: network.subnet.availability_zone,
          private_ip: addresses[i]!,
          mac_address: `0e:${randomHex(5).match(/../g)!.join(":")}`,
          description: network.description,
          public_ip: network.publicIp(),
          source_dest_check: 1,
          instance_id: instance.instance_id,
          device_index: 0,
          attachment_id: newId("eni-attach"),
          attach_time: instance.launch_time,
          delete_on_termination: network.deleteOnTermination ? 1 : 0,
        };
      }
    }
    await insertNetworkInterfaces(tx, interfaces(), network.groupIds);
  });
}

export class SubnetFull extends Error {
  constructor(readonly subnetId: string) {
    super(`subnet ${subnetId} has no free address`);
  }
}

export async function listInstances(db: MetaDb, scope: Scope, q: ListQuery & { clientToken?: string } = {}): Promise<InstanceRecord[]> {
  let query = db.selectFrom("instances").selectAll().where("account_id", "=", scope.accountId).where("region", "=", scope.region);
  if (q.ids) query = query.where("instance_id", "in", q.ids);
  if (q.after) query = query.where("instance_id", ">", q.after);
  if (q.clientToken !== undefined) query = query.where("client_token", "=", q.clientToken);
  if (q.limit !== undefined) query = query.limit(q.limit);
  const now = Date.now();
  return (await query.orderBy("instance_id").execute()).map((row) => recordOf(row, now));
}

/**
 * Instances of the account and region that count against its instance limit: all but those
 * terminated or on their way there (a schedule that ends terminated), as EC2 counts.
 */
export async function countLiveInstances(db: MetaDb, scope: Scope): Promise<number> {
  const row = await db
    .selectFrom("instances")
    .select((eb) => eb.fn.countAll<number>().as("n"))
    .where("account_id", "=", scope.accountId)
    .where("region", "=", scope.region)
    .where("state_schedule", "not like", '%"terminated"%')
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

export async function setSchedule(db: MetaDb, instanceId: string, steps: Schedule<InstanceState>, reason: string): Promise<void> {
  await db
    .updateTable("instances")
    .set({ state_schedule: JSON.stringify(steps), state_transition_reason: reason })
    .where("instance_id", "=", instanceId)
    .execute();
}

/** The columns ModifyInstanceAttribute and ModifyInstanceCreditSpecification change in place. */
export type InstanceSettings = Partial<Omit<InstanceRow, "account_id" | "region" | "instance_id">>;

export async function updateInstance(db: MetaDb, instanceId: string, columns: InstanceSettings): Promise<void> {
  if (Object.keys(columns).length) await db.updateTable("instances").set(columns).where("instance_id", "=", instanceId).execute();
}

export async function setDeleteOnTermination(db: MetaDb, instanceId: string, device: string, deleteOnTermination: boolean): Promise<void> {
  await db
    .updateTable("volume_attachments")
    .set({ delete_on_termination: deleteOnTermination ? 1 : 0 })
    .where("instance_id", "=", instanceId)
    .where("device", "=", device)
    .execute();
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
  await atomically(db, async (tx) => {
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

/** Instances a node ran guests for, in the states where a guest runs or is on its way off. */
export async function instancesOnNode(db: MetaDb, nodeId: string): Promise<InstanceRecord[]> {
  const rows = await db.selectFrom("instances").selectAll().where("node_id", "=", nodeId).where("state_schedule", "not like", '%"terminated"%').execute();
  const now = Date.now();
  return rows.map((row) => recordOf(row, now)).filter((r) => r.state !== "stopped");
}

/** Puts the instance on `nodeId` (null: on no node) until `until`. */
export async function setInstanceNode(db: MetaDb, instanceId: string, nodeId: string | null, until: number | null = null): Promise<void> {
  await db.updateTable("instances").set({ node_id: nodeId, node_lease_until: until }).where("instance_id", "=", instanceId).execute();
}

/** Extends a node's hold on the instances it runs; the ids it still holds (another node may have taken one over). */
export async function renewInstanceLeases(db: MetaDb, nodeId: string, instanceIds: readonly string[], until: number): Promise<Set<string>> {
  const held = new Set<string>();
  for (const batch of batchesOf(instanceIds)) {
    await db.updateTable("instances").set({ node_lease_until: until }).where("node_id", "=", nodeId).where("instance_id", "in", batch).execute();
    const rows = await db.selectFrom("instances").select("instance_id").where("node_id", "=", nodeId).where("instance_id", "in", batch).execute();
    for (const row of rows) held.add(row.instance_id);
  }
  return held;
}

/** Asks the node running the instance's guest for a reboot, or to let go of a volume (see GuestRequestTable). */
export async function requestOfGuest(db: MetaDb, instanceId: string, kind: GuestRequestTable["kind"], volumeId = ""): Promise<void> {
  await db
    .insertInto("guest_requests")
    .values({ instance_id: instanceId, kind, volume_id: volumeId, answered: 0 })
    .onConflict((oc) => oc.columns(["instance_id", "kind", "volume_id"]).doUpdateSet({ answered: 0 }))
    .execute();
}

/** Requests not answered yet for guests among `instanceIds`. */
export async function openGuestRequests(db: MetaDb, instanceIds: readonly string[]): Promise<GuestRequestTable[]> {
  if (instanceIds.length === 0) return [];
  return db.selectFrom("guest_requests").selectAll().where("instance_id", "in", instanceIds).where("answered", "=", 0).execute();
}

type GuestRequest = Omit<GuestRequestTable, "answered">;
const isRequest = (r: GuestRequest) => (eb: ExpressionBuilder<MetaSchema, "guest_requests">) =>
  eb.and({ instance_id: r.instance_id, kind: r.kind, volume_id: r.volume_id });

/** Answers a request: a detach once the guest has let go of the volume (the asking node then drops it). */
export async function answerGuestRequest(db: MetaDb, request: GuestRequest): Promise<void> {
  await db.updateTable("guest_requests").set({ answered: 1 }).where(isRequest(request)).execute();
}

/** True once the guest's node has answered the request. */
export async function guestRequestAnswered(db: MetaDb, request: GuestRequest): Promise<boolean> {
  const row = await db.selectFrom("guest_requests").select("answered").where(isRequest(request)).executeTakeFirst();
  return row?.answered === 1;
}

/** Drops a request, or with only an instance id every request for it (its guest ended). */
export async function dropGuestRequests(db: MetaDb, request: GuestRequest | { instance_id: string }): Promise<void> {
  const query = db.deleteFrom("guest_requests");
  await ("kind" in request ? query.where(isRequest(request)) : query.where("instance_id", "=", request.instance_id)).execute();
}

/** Instances another node held and whose hold ran out, in the states where a guest runs. */
export async function lapsedInstances(db: MetaDb, nodeId: string, now: number): Promise<InstanceRecord[]> {
  const rows = await db
    .selectFrom("instances")
    .selectAll()
    .where("node_id", "is not", null)
    .where("node_id", "!=", nodeId)
    .where("node_lease_until", "<", now)
    .where("state_schedule", "not like", '%"terminated"%')
    .execute();
  return rows.map((row) => recordOf(row, now)).filter((r) => r.state === "running" || r.state === "pending");
}

/** Takes a lapsed instance over, unless another node did first; true when this node has it. */
export async function claimInstance(db: MetaDb, instanceId: string, nodeId: string, now: number, until: number): Promise<boolean> {
  const { numUpdatedRows } = await db
    .updateTable("instances")
    .set({ node_id: nodeId, node_lease_until: until })
    .where("instance_id", "=", instanceId)
    .where("node_lease_until", "<", now)
    .executeTakeFirst();
  return numUpdatedRows > 0n;
}
