// Layered manifests. A snapshot's or volume's manifest holds only the blocks it changed; for
// every other block it rests on a base snapshot (layer_bases), whose manifest may rest on
// another. So a volume made from a snapshot, a snapshot of an unchanged volume and a copy of a
// snapshot cost one row, not one row per block; CreateImage of a 1 GiB instance adds no
// thousands of manifest rows.
//
// Reading resolves a block to the nearest layer that has it; a row with the zero chunk hides
// what lies beneath. Deleting a snapshot others rest on first folds its rows into each of them,
// so a base is always a live snapshot, and every chunk a layer names is in snapshot_blocks or
// volume_blocks, where collection looks. Chains longer than MAX_LAYERS are flattened as they
// are made, which bounds the cost of a read.
import { sql } from "kysely";
import type { MetaDb } from "./database.js";

export const MAX_LAYERS = 16;

export interface BlockRow {
  block_index: number;
  chunk: string;
}

/** Layers from `layerId` down: its own id first, then each base. */
function chain(layerId: string) {
  return sql`with recursive chain(layer_id, depth) as (
      select cast(${layerId} as text), 0
      union all
      select layer_bases.base_snapshot_id, chain.depth + 1 from layer_bases join chain on layer_bases.layer_id = chain.layer_id
    )`;
}

/** How many layers a manifest resting on `snapshotId` would stand on. */
async function depthOf(db: MetaDb, snapshotId: string): Promise<number> {
  const { rows } = await sql<{ depth: number }>`${chain(snapshotId)} select count(*) as depth from chain`.execute(db);
  return rows[0]?.depth ?? 1;
}

/**
 * Makes `layerId` (a snapshot, or a volume with `table` volume_blocks) rest on `baseSnapshotId`.
 * Its own rows must not exist yet. Past MAX_LAYERS the base's resolved blocks are copied in
 * instead (as inherited, not written, rows).
 */
export async function restOn(db: MetaDb, table: "snapshot_blocks" | "volume_blocks", layerId: string, baseSnapshotId: string): Promise<void> {
  if ((await depthOf(db, baseSnapshotId)) < MAX_LAYERS) {
    await db.insertInto("layer_bases").values({ layer_id: layerId, base_snapshot_id: baseSnapshotId }).execute();
    return;
  }
  const target = table === "snapshot_blocks" ? sql`snapshot_blocks (snapshot_id, block_index, chunk, written)` : sql`volume_blocks (volume_id, block_index, chunk)`;
  const written = table === "snapshot_blocks" ? sql`, 0` : sql``;
  await sql`${chain(baseSnapshotId)} insert into ${target}
    select ${layerId}, block_index, chunk${written} from (${nearestRows(0)}) as ranked where nearest = 1`.execute(db);
}

/** Every layer's rows from block `from` on, each ranked by how near its layer is (1: nearest). */
const nearestRows = (from: number) => sql`
  select b.block_index, b.chunk, row_number() over (partition by b.block_index order by chain.depth) as nearest
  from snapshot_blocks b join chain on b.snapshot_id = chain.layer_id
  where b.block_index >= ${from}`;

/** The snapshot a layer rests on, if any. */
export async function baseOf(db: MetaDb, layerId: string): Promise<string | undefined> {
  const row = await db.selectFrom("layer_bases").select("base_snapshot_id").where("layer_id", "=", layerId).executeTakeFirst();
  return row?.base_snapshot_id;
}

/** A snapshot's blocks, each from the nearest layer that has it, in index order. */
export async function resolvedBlocks(db: MetaDb, snapshotId: string, q: { from?: number; limit?: number; nonZero?: boolean } = {}): Promise<BlockRow[]> {
  const { rows } = await sql<BlockRow>`${chain(snapshotId)}
    select block_index, chunk from (${nearestRows(q.from ?? 0)}) as ranked
    where nearest = 1 ${q.nonZero ? sql`and chunk != ''` : sql``}
    order by block_index
    ${q.limit !== undefined ? sql`limit ${q.limit}` : sql``}`.execute(db);
  return rows;
}

/** How many non-zero blocks a snapshot reads as, through its layers. */
export async function countResolvedBlocks(db: MetaDb, snapshotId: string): Promise<number> {
  const { rows } = await sql<{ count: number }>`${chain(snapshotId)}
    select count(*) as count from (${nearestRows(0)}) as ranked where nearest = 1 and chunk != ''`.execute(db);
  return Number(rows[0]?.count ?? 0);
}

/** One block of a snapshot, from the nearest layer that has it. */
export async function resolvedBlock(db: MetaDb, snapshotId: string, blockIndex: number): Promise<BlockRow | undefined> {
  const { rows } = await sql<BlockRow>`${chain(snapshotId)}
    select b.block_index, b.chunk from snapshot_blocks b join chain on b.snapshot_id = chain.layer_id
    where b.block_index = ${blockIndex}
    order by chain.depth limit 1`.execute(db);
  return rows[0];
}

/**
 * Before a snapshot is deleted: every layer resting on it takes the snapshot's rows it does not
 * override, and rests on the snapshot's own base instead. Run in the deleting transaction.
 */
export async function foldIntoDependents(db: MetaDb, snapshotId: string): Promise<void> {
  const dependents = await db.selectFrom("layer_bases").select("layer_id").where("base_snapshot_id", "=", snapshotId).execute();
  if (dependents.length === 0) return;
  const base = await baseOf(db, snapshotId);
  for (const { layer_id: layerId } of dependents) {
    if (layerId.startsWith("vol-")) {
      await sql`insert into volume_blocks (volume_id, block_index, chunk)
        select ${layerId}, block_index, chunk from snapshot_blocks where snapshot_id = ${snapshotId}
        on conflict do nothing`.execute(db);
    } else {
      await sql`insert into snapshot_blocks (snapshot_id, block_index, chunk, written)
        select ${layerId}, block_index, chunk, 0 from snapshot_blocks where snapshot_id = ${snapshotId}
        on conflict do nothing`.execute(db);
    }
    if (base === undefined) await db.deleteFrom("layer_bases").where("layer_id", "=", layerId).execute();
    else await db.updateTable("layer_bases").set({ base_snapshot_id: base }).where("layer_id", "=", layerId).execute();
  }
}

/** Forgets what a deleted layer rested on. */
export async function dropLayer(db: MetaDb, layerIds: readonly string[]): Promise<void> {
  if (layerIds.length > 0) await db.deleteFrom("layer_bases").where("layer_id", "in", layerIds).execute();
}
