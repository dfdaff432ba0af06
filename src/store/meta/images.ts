// Images, their block device mappings and launch permissions.
import { EVERY_REGION } from "../../domain/catalogue.js";
import { currentState } from "../../domain/transitions.js";
import type { MetaDb } from "./database.js";
import { atomically } from "./database.js";
import type { ImageBlockDeviceTable, ImageTable } from "./schema.js";
import type { Scope } from "./tags.js";

export type ImageRow = ImageTable;
export type BlockDeviceRow = Omit<ImageBlockDeviceTable, "image_id" | "position">;

export interface ImageRecord {
  image: ImageRow;
  devices: BlockDeviceRow[];
}

/** What every new image must be given; the rest of its row has defaults. */
export type NewImage = Pick<ImageRow, "account_id" | "region" | "image_id" | "name" | "architecture" | "root_device_name"> & Partial<ImageRow>;

/** An image row: what `given` says, else an available, private, EBS-backed HVM image made now. */
export function newImageRow(given: NewImage): ImageRow {
  return {
    description: "",
    state: "available",
    next_state: null,
    next_state_at: null,
    state_reason_code: null,
    state_reason_message: null,
    virtualization_type: "hvm",
    root_device_type: "ebs",
    ena_support: 0,
    sriov_net_support: null,
    boot_mode: null,
    tpm_support: null,
    imds_support: null,
    uefi_data: null,
    platform: null,
    platform_details: null,
    usage_operation: null,
    creation_date: new Date().toISOString(),
    deprecation_time: null,
    public: 0,
    owner_alias: null,
    client_token: null,
    source_instance_id: null,
    kernel_id: null,
    ramdisk_id: null,
    ...given,
  };
}

/** A block device mapping: `device_name` and what `given` says; every other field unset. */
export function newBlockDeviceRow(given: Pick<BlockDeviceRow, "device_name"> & Partial<BlockDeviceRow>): BlockDeviceRow {
  return {
    virtual_name: null,
    no_device: 0,
    snapshot_id: null,
    volume_size: null,
    volume_type: null,
    delete_on_termination: null,
    encrypted: null,
    iops: null,
    throughput: null,
    kms_key_id: null,
    ...given,
  };
}

const settled = (row: ImageRow): ImageRow => {
  const state = currentState(row);
  return state === row.state ? row : { ...row, state, next_state: null, next_state_at: null };
};

/** Inserts an image; false when its name is taken in the account and region. */
export async function insertImage(db: MetaDb, record: ImageRecord): Promise<boolean> {
  return atomically(db, async (tx) => {
    const taken = await tx
      .selectFrom("images")
      .select("image_id")
      .where("account_id", "=", record.image.account_id)
      .where("region", "=", record.image.region)
      .where("name", "=", record.image.name)
      .executeTakeFirst();
    if (taken) return false;
    await tx.insertInto("images").values(record.image).execute();
    if (record.devices.length) {
      await tx
        .insertInto("image_block_devices")
        .values(record.devices.map((d, position) => ({ ...d, image_id: record.image.image_id, position })))
        .execute();
    }
    return true;
  });
}

/** The account's image in the region that CopyImage made with this ClientToken. */
export async function imageByClientToken(db: MetaDb, scope: Scope, clientToken: string): Promise<ImageRow | undefined> {
  const row = await db
    .selectFrom("images")
    .selectAll()
    .where("account_id", "=", scope.accountId)
    .where("region", "=", scope.region)
    .where("client_token", "=", clientToken)
    .executeTakeFirst();
  return row && settled(row);
}

export async function imageByName(db: MetaDb, scope: Scope, name: string): Promise<ImageRow | undefined> {
  return db
    .selectFrom("images")
    .selectAll()
    .where("account_id", "=", scope.accountId)
    .where("region", "=", scope.region)
    .where("name", "=", name)
    .executeTakeFirst();
}

/** Constraints DescribeImages can apply in SQL; its full filter still runs on what comes back. */
export interface ImageQuery {
  ids?: readonly string[];
  /** Page by image id: only ids after this one. */
  after?: string;
  /** Owners: images of these accounts or with these aliases (either matches). */
  ownerAccounts?: readonly string[];
  ownerAliases?: readonly string[];
  /** Names: exactly one of these, or starting with one of these prefixes. */
  names?: readonly string[];
  namePrefixes?: readonly string[];
  limit?: number;
}

/**
 * Images in a region that `accountId` may see: its own, public ones, and those shared with it,
 * narrowed by the query, in image id order.
 */
export async function visibleImages(db: MetaDb, scope: Scope, q: ImageQuery = {}): Promise<ImageRecord[]> {
  let query = db
    .selectFrom("images")
    .selectAll()
    .where("region", "in", [scope.region, EVERY_REGION])
    .where((eb) =>
      eb.or([
        eb("account_id", "=", scope.accountId),
        eb("public", "=", 1),
        eb.exists(
          eb
            .selectFrom("image_launch_permissions as p")
            .select("p.image_id")
            .whereRef("p.image_id", "=", "images.image_id")
            .where("p.grantee", "in", [scope.accountId, "all"]),
        ),
      ]),
    );
  if (q.ids) query = query.where("image_id", "in", q.ids);
  if (q.after) query = query.where("image_id", ">", q.after);
  if (q.ownerAccounts || q.ownerAliases) {
    const accounts = q.ownerAccounts ?? [];
    const aliases = q.ownerAliases ?? [];
    query = query.where((eb) =>
      eb.or([...(accounts.length ? [eb("account_id", "in", accounts)] : []), ...(aliases.length ? [eb("owner_alias", "in", aliases)] : []), eb.lit(false)]),
    );
  }
  if (q.names) query = query.where("name", "in", q.names.length ? q.names : [""]);
  if (q.namePrefixes) {
    // A prefix as a range on the name index: portable, and as fast as an exact match.
    const prefixes = q.namePrefixes;
    query = query.where((eb) => eb.or(prefixes.map((p) => eb.and([eb("name", ">=", p), eb("name", "<", `${p}\u{10FFFF}`)]))));
  }
  let images: ImageRow[];
  if (q.names) {
    // A list of exact names selects a handful of rows: let SQLite find them by the name index
    // (ordering in SQL would make it walk the id index instead), then order and page here.
    images = (await query.execute())
      .sort((a, b) => (a.image_id < b.image_id ? -1 : 1))
      .slice(0, q.limit)
      .map(settled);
  } else {
    query = query.orderBy("image_id");
    if (q.limit !== undefined) query = query.limit(q.limit);
    images = (await query.execute()).map(settled);
  }
  return attachDevices(db, images);
}

async function attachDevices(db: MetaDb, images: ImageRow[]): Promise<ImageRecord[]> {
  if (images.length === 0) return [];
  const devices = await db
    .selectFrom("image_block_devices")
    .selectAll()
    .where(
      "image_id",
      "in",
      images.map((i) => i.image_id),
    )
    .orderBy("image_id")
    .orderBy("position")
    .execute();
  const byImage = new Map<string, BlockDeviceRow[]>();
  for (const { image_id, position: _position, ...device } of devices) {
    const list = byImage.get(image_id) ?? [];
    list.push(device);
    byImage.set(image_id, list);
  }
  return images.map((image) => ({ image, devices: byImage.get(image.image_id) ?? [] }));
}

/** Image ids whose mappings use the snapshot. */
export async function imagesUsingSnapshot(db: MetaDb, snapshotId: string): Promise<string[]> {
  const rows = await db.selectFrom("image_block_devices").select("image_id").distinct().where("snapshot_id", "=", snapshotId).execute();
  return rows.map((r) => r.image_id);
}

export async function launchPermissions(db: MetaDb, imageId: string): Promise<string[]> {
  const rows = await db.selectFrom("image_launch_permissions").select("grantee").where("image_id", "=", imageId).orderBy("grantee").execute();
  return rows.map((r) => r.grantee);
}

/** The grantees of each image's launch permissions, by image id. */
export async function launchPermissionsOf(db: MetaDb, imageIds: readonly string[]): Promise<Map<string, string[]>> {
  const grants = new Map<string, string[]>();
  if (imageIds.length === 0) return grants;
  const rows = await db.selectFrom("image_launch_permissions").selectAll().where("image_id", "in", imageIds).execute();
  for (const row of rows) grants.set(row.image_id, [...(grants.get(row.image_id) ?? []), row.grantee]);
  return grants;
}

/** A pending image whose data is all in place: available, made `creationDate`, with the UEFI data its source had then where given. */
export async function completeImage(db: MetaDb, imageId: string, creationDate: string, uefiData?: string): Promise<void> {
  await db
    .updateTable("images")
    .set({ state: "available", next_state: null, next_state_at: null, creation_date: creationDate, ...(uefiData ? { uefi_data: uefiData } : {}) })
    .where("image_id", "=", imageId)
    .execute();
}

/** An image whose making failed: state `failed` with EC2's reason, its mappings pointing at no snapshot. */
export async function failImage(db: MetaDb, imageId: string, reason: { code: string; message: string }): Promise<void> {
  await atomically(db, async (tx) => {
    await tx.updateTable("image_block_devices").set({ snapshot_id: null }).where("image_id", "=", imageId).execute();
    await tx
      .updateTable("images")
      .set({ state: "failed", next_state: null, next_state_at: null, state_reason_code: reason.code, state_reason_message: reason.message })
      .where("image_id", "=", imageId)
      .execute();
  });
}

export async function deregisterImage(db: MetaDb, scope: Scope, imageId: string): Promise<void> {
  await atomically(db, async (tx) => {
    await tx.deleteFrom("image_launch_permissions").where("image_id", "=", imageId).execute();
    await tx.deleteFrom("image_block_devices").where("image_id", "=", imageId).execute();
    await tx.deleteFrom("tags").where("account_id", "=", scope.accountId).where("region", "=", scope.region).where("resource_id", "=", imageId).execute();
    await tx.deleteFrom("images").where("image_id", "=", imageId).execute();
  });
}

/** Adds and removes grantees (account ids, or 'all' for public) and keeps the public flag in step. */
export async function changeLaunchPermissions(db: MetaDb, imageId: string, add: readonly string[], remove: readonly string[]): Promise<void> {
  await atomically(db, async (tx) => {
    if (remove.length) await tx.deleteFrom("image_launch_permissions").where("image_id", "=", imageId).where("grantee", "in", remove).execute();
    for (const grantee of add) {
      await tx
        .insertInto("image_launch_permissions")
        .values({ image_id: imageId, grantee })
        .onConflict((oc) => oc.doNothing())
        .execute();
    }
    const isPublic = await tx
      .selectFrom("image_launch_permissions")
      .select("grantee")
      .where("image_id", "=", imageId)
      .where("grantee", "=", "all")
      .executeTakeFirst();
    await tx
      .updateTable("images")
      .set({ public: isPublic ? 1 : 0 })
      .where("image_id", "=", imageId)
      .execute();
  });
}

export async function setImageDescription(db: MetaDb, imageId: string, description: string): Promise<void> {
  await db.updateTable("images").set({ description }).where("image_id", "=", imageId).execute();
}
