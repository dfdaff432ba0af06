// Snapshots and their manifests (snapshot_blocks, layered: see manifests.ts).
import { currentState } from "../../domain/transitions.js";
import type { MetaDb } from "./database.js";
import { atomically } from "./database.js";
import { baseOf, blockRows, dropLayer, foldIntoDependents, resolvedBlock, resolvedBlocks, restOn, type BlockRow } from "./manifests.js";
import type { SnapshotTable } from "./schema.js";
import type { Scope } from "./tags.js";
import type { ListQuery } from "./database.js";

export type SnapshotRow = SnapshotTable;
export type { BlockRow };

/** The volume id of a snapshot not taken from a volume, as EC2 reports it. */
export const NO_VOLUME_ID = "vol-ffffffff";

/** What every new snapshot must be given; the rest of its row has defaults. */
export type NewSnapshot = Pick<SnapshotRow, "account_id" | "region" | "snapshot_id" | "volume_size"> & Partial<SnapshotRow>;

/** A snapshot row: what `given` says, else a completed, unencrypted snapshot of no volume, made now. */
export function newSnapshotRow(given: NewSnapshot): SnapshotRow {
  return {
    volume_id: NO_VOLUME_ID,
    state: "completed",
    progress: "100%",
    start_time: new Date().toISOString(),
    description: "",
    encrypted: 0,
    kms_key_id: null,
    parent_snapshot_id: null,
    client_token: null,
    next_state: null,
    next_state_at: null,
    ...given,
  };
}

export async function insertSnapshot(db: MetaDb, row: SnapshotRow): Promise<void> {
  await atomically(db, async (tx) => {
    await tx.insertInto("snapshots").values(row).execute();
    // A child snapshot starts as its parent: it shares the parent's blocks until it writes its own.
    if (row.parent_snapshot_id) await restOn(tx, "snapshot_blocks", row.snapshot_id, row.parent_snapshot_id);
  });
}

/** A row as it stands now: a transition whose time has come is applied. */
function settled(row: SnapshotRow): SnapshotRow {
  const state = currentState(row);
  return state === row.state ? row : { ...row, state, progress: state === "completed" ? "100%" : row.progress, next_state: null, next_state_at: null };
}

/** The account's snapshot in the region with this id (or, by `client_token`, made with this token). */
export async function getSnapshot(
  db: MetaDb,
  scope: Scope,
  value: string,
  by: "snapshot_id" | "client_token" = "snapshot_id",
): Promise<SnapshotRow | undefined> {
  const row = await db
    .selectFrom("snapshots")
    .selectAll()
    .where("account_id", "=", scope.accountId)
    .where("region", "=", scope.region)
    .where(by, "=", value)
    .executeTakeFirst();
  return row && settled(row);
}

/**
 * A snapshot by id whoever owns it: what an image's block device names (the image may be another
 * account's, shared or public).
 */
export async function snapshotById(db: MetaDb, snapshotId: string): Promise<SnapshotRow | undefined> {
  const row = await db.selectFrom("snapshots").selectAll().where("snapshot_id", "=", snapshotId).executeTakeFirst();
  return row && settled(row);
}

/** Snapshots of an account and region in id order, from after `after`. */
export async function listSnapshots(db: MetaDb, scope: Scope, q: ListQuery = {}): Promise<SnapshotRow[]> {
  let query = db.selectFrom("snapshots").selectAll().where("account_id", "=", scope.accountId).where("region", "=", scope.region);
  if (q.ids) query = query.where("snapshot_id", "in", q.ids);
  if (q.after) query = query.where("snapshot_id", ">", q.after);
  if (q.limit !== undefined) query = query.limit(q.limit);
  return (await query.orderBy("snapshot_id").execute()).map(settled);
}

export async function putBlock(db: MetaDb, snapshotId: string, blockIndex: number, chunk: string): Promise<void> {
  await db
    .insertInto("snapshot_blocks")
    .values({ snapshot_id: snapshotId, block_index: blockIndex, chunk, written: 1 })
    .onConflict((oc) => oc.columns(["snapshot_id", "block_index"]).doUpdateSet({ chunk, written: 1 }))
    .execute();
}

/** Writes many blocks of one snapshot at once (a restore's batches). */
export async function putBlocks(db: MetaDb, snapshotId: string, blocks: readonly BlockRow[]): Promise<void> {
  if (blocks.length === 0) return;
  await db
    .insertInto("snapshot_blocks")
    .values(blocks.map((b) => ({ snapshot_id: snapshotId, block_index: b.block_index, chunk: b.chunk, written: 1 })))
    .onConflict((oc) => oc.columns(["snapshot_id", "block_index"]).doUpdateSet((eb) => ({ chunk: eb.ref("excluded.chunk"), written: 1 })))
    .execute();
}

// A snapshot's blocks as they read through its layers.
export { blockRows, resolvedBlock as getBlock, resolvedBlocks as listBlocks };

/** Rows of a snapshot's own manifest read at a time. */
const WRITTEN_PAGE = 1024;

/** The blocks this snapshot itself wrote (PutSnapshotBlock), in index order, a page at a time. */
export async function* writtenBlocks(db: MetaDb, snapshotId: string): AsyncGenerator<BlockRow> {
  let from = 0;
  for (;;) {
    const rows = await db
      .selectFrom("snapshot_blocks")
      .select(["block_index", "chunk"])
      .where("snapshot_id", "=", snapshotId)
      .where("written", "=", 1)
      .where("block_index", ">=", from)
      .orderBy("block_index")
      .limit(WRITTEN_PAGE)
      .execute();
    yield* rows;
    if (rows.length < WRITTEN_PAGE) return;
    from = rows[rows.length - 1]!.block_index + 1;
  }
}

/** Snapshots whose data is all written (a restore's, at its end): completed now. */
export async function completeSnapshots(db: MetaDb, snapshotIds: readonly string[]): Promise<void> {
  if (snapshotIds.length === 0) return;
  await db
    .updateTable("snapshots")
    .set({ state: "completed", progress: "100%", next_state: null, next_state_at: null })
    .where("snapshot_id", "in", snapshotIds)
    .execute();
}

/** Forgets every block written to these snapshots (a task's run that starts again from empty). */
export async function dropBlocks(db: MetaDb, snapshotIds: readonly string[]): Promise<void> {
  if (snapshotIds.length) await db.deleteFrom("snapshot_blocks").where("snapshot_id", "in", snapshotIds).execute();
}

export async function setSnapshotState(db: MetaDb, snapshotId: string, state: SnapshotRow["state"], progress: string): Promise<void> {
  await db.updateTable("snapshots").set({ state, progress, next_state: null, next_state_at: null }).where("snapshot_id", "=", snapshotId).execute();
}

/**
 * A point-in-time snapshot of a volume, in one transaction: the blocks the volume changed are
 * copied, and the snapshot rests on what the volume rests on.
 */
export async function insertSnapshotOfVolume(db: MetaDb, row: SnapshotRow): Promise<void> {
  await atomically(db, async (tx) => {
    await tx.insertInto("snapshots").values(row).execute();
    await captureVolume(tx, row.snapshot_id, row.volume_id);
  });
}

/**
 * Gives a snapshot with no blocks yet (inserted earlier) the volume's data as it is now: CreateImage
 * of a guest, once the guest is off. Run in the caller's transaction.
 */
export async function captureVolume(tx: MetaDb, snapshotId: string, volumeId: string): Promise<void> {
  await tx
    .insertInto("snapshot_blocks")
    .columns(["snapshot_id", "block_index", "chunk", "written"])
    .expression((eb) =>
      eb
        .selectFrom("volume_blocks")
        .select((s) => [s.val(snapshotId).as("snapshot_id"), "block_index", "chunk", s.val(1).as("written")])
        .where("volume_id", "=", volumeId),
    )
    .execute();
  const base = await baseOf(tx, volumeId);
  if (base !== undefined) await restOn(tx, "snapshot_blocks", snapshotId, base);
}

export async function deleteSnapshot(db: MetaDb, scope: Scope, snapshotId: string): Promise<void> {
  await atomically(db, async (tx) => {
    await foldIntoDependents(tx, snapshotId);
    await dropLayer(tx, [snapshotId]);
    await tx.deleteFrom("snapshot_blocks").where("snapshot_id", "=", snapshotId).execute();
    await tx.deleteFrom("tags").where("account_id", "=", scope.accountId).where("region", "=", scope.region).where("resource_id", "=", snapshotId).execute();
    await tx.deleteFrom("snapshots").where("snapshot_id", "=", snapshotId).execute();
  });
}

/** A copy of a snapshot (another region or account, same bytes): it rests on the source. */
export async function insertSnapshotCopy(db: MetaDb, row: SnapshotRow, sourceSnapshotId: string): Promise<void> {
  await atomically(db, async (tx) => {
    await tx.insertInto("snapshots").values(row).execute();
    await restOn(tx, "snapshot_blocks", row.snapshot_id, sourceSnapshotId);
  });
}
