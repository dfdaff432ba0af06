// Snapshots and their manifests (snapshot_blocks).
import { currentState } from "../../domain/transitions.js";
import type { MetaDb } from "./database.js";
import type { SnapshotBlockTable, SnapshotTable } from "./schema.js";
import type { Scope } from "./tags.js";

export type SnapshotRow = SnapshotTable;
export type BlockRow = Pick<SnapshotBlockTable, "block_index" | "chunk">;

/** Copies one snapshot's manifest into another; `written` marks the rows as the new snapshot's own writes. */
async function copyManifest(db: MetaDb, fromSnapshotId: string, toSnapshotId: string, written: 0 | 1): Promise<void> {
  await db
    .insertInto("snapshot_blocks")
    .columns(["snapshot_id", "block_index", "chunk", "written"])
    .expression((eb) =>
      eb.selectFrom("snapshot_blocks").select((s) => [s.val(toSnapshotId).as("snapshot_id"), "block_index", "chunk", s.val(written).as("written")]).where("snapshot_id", "=", fromSnapshotId),
    )
    .execute();
}

export async function insertSnapshot(db: MetaDb, row: SnapshotRow): Promise<void> {
  await db.transaction().execute(async (tx) => {
    await tx.insertInto("snapshots").values(row).execute();
    // A child snapshot starts as its parent: it shares the parent's chunks until it writes its own.
    if (row.parent_snapshot_id) await copyManifest(tx, row.parent_snapshot_id, row.snapshot_id, 0);
  });
}

/** A row as it stands now: a transition whose time has come is applied. */
function settled(row: SnapshotRow): SnapshotRow {
  const state = currentState(row);
  return state === row.state ? row : { ...row, state, progress: state === "completed" ? "100%" : row.progress, next_state: null, next_state_at: null };
}

/** The account's snapshot in the region with this id (or, by `client_token`, made with this token). */
export async function getSnapshot(db: MetaDb, scope: Scope, value: string, by: "snapshot_id" | "client_token" = "snapshot_id"): Promise<SnapshotRow | undefined> {
  const row = await db
    .selectFrom("snapshots")
    .selectAll()
    .where("account_id", "=", scope.accountId)
    .where("region", "=", scope.region)
    .where(by, "=", value)
    .executeTakeFirst();
  return row && settled(row);
}

/** Snapshots of an account and region in id order, from after `after`. */
export async function listSnapshots(db: MetaDb, scope: Scope, q: { ids?: readonly string[]; after?: string } = {}): Promise<SnapshotRow[]> {
  let query = db.selectFrom("snapshots").selectAll().where("account_id", "=", scope.accountId).where("region", "=", scope.region);
  if (q.ids) query = query.where("snapshot_id", "in", q.ids);
  if (q.after) query = query.where("snapshot_id", ">", q.after);
  return (await query.orderBy("snapshot_id").execute()).map(settled);
}

export async function putBlock(db: MetaDb, snapshotId: string, blockIndex: number, chunk: string): Promise<void> {
  await db
    .insertInto("snapshot_blocks")
    .values({ snapshot_id: snapshotId, block_index: blockIndex, chunk, written: 1 })
    .onConflict((oc) => oc.columns(["snapshot_id", "block_index"]).doUpdateSet({ chunk, written: 1 }))
    .execute();
}

export function getBlock(db: MetaDb, snapshotId: string, blockIndex: number): Promise<BlockRow | undefined> {
  return db.selectFrom("snapshot_blocks").select(["block_index", "chunk"]).where("snapshot_id", "=", snapshotId).where("block_index", "=", blockIndex).executeTakeFirst();
}

/** Blocks in index order from `from`; `nonZero` leaves out blocks written as zeros. */
export function listBlocks(db: MetaDb, snapshotId: string, q: { from?: number; limit?: number; nonZero?: boolean; writtenOnly?: boolean } = {}): Promise<BlockRow[]> {
  let query = db.selectFrom("snapshot_blocks").select(["block_index", "chunk"]).where("snapshot_id", "=", snapshotId);
  if (q.from !== undefined) query = query.where("block_index", ">=", q.from);
  if (q.nonZero) query = query.where("chunk", "!=", "");
  if (q.writtenOnly) query = query.where("written", "=", 1);
  query = query.orderBy("block_index");
  if (q.limit !== undefined) query = query.limit(q.limit);
  return query.execute();
}

export async function setSnapshotState(db: MetaDb, snapshotId: string, state: SnapshotRow["state"], progress: string): Promise<void> {
  await db.updateTable("snapshots").set({ state, progress, next_state: null, next_state_at: null }).where("snapshot_id", "=", snapshotId).execute();
}

/** A point-in-time snapshot of a volume: the volume's manifest, copied in the same transaction. */
export async function insertSnapshotOfVolume(db: MetaDb, row: SnapshotRow): Promise<void> {
  await db.transaction().execute(async (tx) => {
    await tx.insertInto("snapshots").values(row).execute();
    await tx
      .insertInto("snapshot_blocks")
      .columns(["snapshot_id", "block_index", "chunk", "written"])
      .expression((eb) =>
        eb.selectFrom("volume_blocks").select((s) => [s.val(row.snapshot_id).as("snapshot_id"), "block_index", "chunk", s.val(1).as("written")]).where("volume_id", "=", row.volume_id),
      )
      .execute();
  });
}

export async function deleteSnapshot(db: MetaDb, scope: Scope, snapshotId: string): Promise<void> {
  await db.transaction().execute(async (tx) => {
    await tx.deleteFrom("snapshot_blocks").where("snapshot_id", "=", snapshotId).execute();
    await tx.deleteFrom("tags").where("account_id", "=", scope.accountId).where("region", "=", scope.region).where("resource_id", "=", snapshotId).execute();
    await tx.deleteFrom("snapshots").where("snapshot_id", "=", snapshotId).execute();
  });
}

/** A copy of a snapshot (another region or account, same bytes): the source's manifest, its chunks shared. */
export async function insertSnapshotCopy(db: MetaDb, row: SnapshotRow, sourceSnapshotId: string): Promise<void> {
  await db.transaction().execute(async (tx) => {
    await tx.insertInto("snapshots").values(row).execute();
    await copyManifest(tx, sourceSnapshotId, row.snapshot_id, 1);
  });
}
