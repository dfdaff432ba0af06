// Volumes and their data manifests (volume_blocks, layered: see manifests.ts).
import { currentState } from "../../domain/transitions.js";
import type { MetaDb } from "./database.js";
import { atomically } from "./database.js";
import { insertInBatches } from "./batches.js";
import { dropLayer, restAllOn, type BlockRow } from "./manifests.js";
import type { VolumeTable } from "./schema.js";
import type { Scope } from "./tags.js";
import type { ListQuery } from "./database.js";

export type VolumeRow = VolumeTable;

const settled = (row: VolumeRow): VolumeRow => {
  const state = currentState(row);
  return state === row.state ? row : { ...row, state, next_state: null, next_state_at: null };
};

/**
 * Writes a volume with the caller's transaction (`tx`); from a snapshot, the volume rests on the
 * snapshot's manifest and shares its chunks.
 */
/** What every new volume must be given; the rest of its row has defaults. */
export type NewVolume = Pick<VolumeRow, "account_id" | "region" | "volume_id" | "size" | "availability_zone"> & Partial<VolumeRow>;

/** A volume row: what `given` says, else an empty, available, unencrypted gp2 volume made now. */
export function newVolumeRow(given: NewVolume): VolumeRow {
  return {
    snapshot_id: null,
    state: "available",
    next_state: null,
    next_state_at: null,
    volume_type: "gp2",
    iops: null,
    throughput: null,
    encrypted: 0,
    kms_key_id: null,
    multi_attach_enabled: 0,
    create_time: new Date().toISOString(),
    client_token: null,
    ...given,
  };
}

export async function writeVolume(tx: MetaDb, row: VolumeRow): Promise<void> {
  await writeVolumes(tx, [row]);
}

/** writeVolume for many volumes (a launch's), in few statements. */
export async function writeVolumes(tx: MetaDb, rows: readonly VolumeRow[]): Promise<void> {
  await insertInBatches(rows, (batch) => tx.insertInto("volumes").values(batch).execute());
  const bySnapshot = new Map<string, string[]>();
  for (const row of rows) {
    if (!row.snapshot_id) continue;
    const ids = bySnapshot.get(row.snapshot_id) ?? [];
    ids.push(row.volume_id);
    bySnapshot.set(row.snapshot_id, ids);
  }
  for (const [snapshotId, volumeIds] of bySnapshot) await restAllOn(tx, "volume_blocks", volumeIds, snapshotId);
}

export async function insertVolume(db: MetaDb, row: VolumeRow): Promise<void> {
  await atomically(db, (tx) => writeVolume(tx, row));
}

/** Removes volumes with their data manifests and tags, with the caller's transaction (`tx`). */
export async function removeVolumes(tx: MetaDb, scope: Scope, volumeIds: readonly string[]): Promise<void> {
  if (volumeIds.length === 0) return;
  await tx.deleteFrom("volume_blocks").where("volume_id", "in", volumeIds).execute();
  await tx.deleteFrom("volume_journal").where("volume_id", "in", volumeIds).execute();
  await dropLayer(tx, volumeIds);
  await tx.deleteFrom("tags").where("account_id", "=", scope.accountId).where("region", "=", scope.region).where("resource_id", "in", volumeIds).execute();
  await tx.deleteFrom("volumes").where("volume_id", "in", volumeIds).execute();
}

/** The account's volume in the region with this id (or, by `client_token`, made with this token). */
export async function getVolume(db: MetaDb, scope: Scope, value: string, by: "volume_id" | "client_token" = "volume_id"): Promise<VolumeRow | undefined> {
  const row = await db
    .selectFrom("volumes")
    .selectAll()
    .where("account_id", "=", scope.accountId)
    .where("region", "=", scope.region)
    .where(by, "=", value)
    .executeTakeFirst();
  return row && settled(row);
}

export async function listVolumes(db: MetaDb, scope: Scope, q: ListQuery = {}): Promise<VolumeRow[]> {
  let query = db.selectFrom("volumes").selectAll().where("account_id", "=", scope.accountId).where("region", "=", scope.region);
  if (q.ids) query = query.where("volume_id", "in", q.ids);
  if (q.after) query = query.where("volume_id", ">", q.after);
  if (q.limit !== undefined) query = query.limit(q.limit);
  return (await query.orderBy("volume_id").execute()).map(settled);
}

export async function deleteVolume(db: MetaDb, scope: Scope, volumeId: string): Promise<void> {
  await atomically(db, (tx) => removeVolumes(tx, scope, [volumeId]));
}

/** A row of a running volume's write journal (schema.ts, VolumeJournalTable). */
export interface JournalRow {
  seq: number;
  chunk: string;
  extents: string;
}

/** The volume's journal, oldest first. */
export async function journalOf(db: MetaDb, volumeId: string): Promise<JournalRow[]> {
  return db.selectFrom("volume_journal").select(["seq", "chunk", "extents"]).where("volume_id", "=", volumeId).orderBy("seq").execute();
}

/** Journal segments whose chunks are stored, in one transaction: the writes in them are durable once it commits. */
export async function appendJournal(db: MetaDb, volumeId: string, rows: readonly JournalRow[]): Promise<void> {
  if (rows.length === 0) return;
  await atomically(db, (tx) =>
    insertInBatches(
      rows.map((r) => ({ volume_id: volumeId, ...r })),
      (batch) => tx.insertInto("volume_journal").values(batch).execute(),
    ),
  );
}

/**
 * A fold of the journal up to `throughSeq` into the volume's blocks, in one transaction: each
 * row replaces the volume's own row for its block (a zero chunk hides what its base holds
 * there), and the journal rows folded go.
 */
export async function foldJournal(db: MetaDb, volumeId: string, blocks: readonly BlockRow[], throughSeq: number): Promise<void> {
  await atomically(db, async (tx) => {
    await writeVolumeBlocks(tx, volumeId, blocks);
    await tx.deleteFrom("volume_journal").where("volume_id", "=", volumeId).where("seq", "<=", throughSeq).execute();
  });
}

/** Rows of the volume's own blocks, in one transaction: each replaces the volume's row for its block. */
export async function writeVolumeBlocks(db: MetaDb, volumeId: string, blocks: readonly BlockRow[]): Promise<void> {
  if (blocks.length === 0) return;
  await atomically(db, (tx) =>
    insertInBatches(
      blocks.map((b) => ({ volume_id: volumeId, block_index: b.block_index, chunk: b.chunk })),
      (batch) =>
        tx
          .insertInto("volume_blocks")
          .values(batch)
          .onConflict((oc) => oc.columns(["volume_id", "block_index"]).doUpdateSet({ chunk: (eb) => eb.ref("excluded.chunk") }))
          .execute(),
    ),
  );
}
