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
import { insertInBatches } from "./batches.js";
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
  await restAllOn(db, table, [layerId], baseSnapshotId);
}

/** restOn for several new layers on one base (a launch's volumes from one image). */
export async function restAllOn(db: MetaDb, table: "snapshot_blocks" | "volume_blocks", layerIds: readonly string[], baseSnapshotId: string): Promise<void> {
  if (layerIds.length === 0) return;
  if ((await depthOf(db, baseSnapshotId)) < MAX_LAYERS) {
    const rows = layerIds.map((layerId) => ({ layer_id: layerId, base_snapshot_id: baseSnapshotId }));
    await insertInBatches(rows, (batch) => db.insertInto("layer_bases").values(batch).execute());
    return;
  }
  const target =
    table === "snapshot_blocks" ? sql`snapshot_blocks (snapshot_id, block_index, chunk, written)` : sql`volume_blocks (volume_id, block_index, chunk)`;
  const written = table === "snapshot_blocks" ? sql`, 0` : sql``;
  for (const layerId of layerIds) {
    await sql`${chain(baseSnapshotId)} insert into ${target}
      select ${layerId}, block_index, chunk${written} from (${nearestRows(0)}) as ranked where nearest = 1`.execute(db);
  }
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

/** The layers a snapshot reads through, nearest first (itself, then each base). */
async function layersOf(db: MetaDb, snapshotId: string): Promise<string[]> {
  const { rows } = await sql<{ layer_id: string }>`${chain(snapshotId)} select layer_id from chain order by depth`.execute(db);
  return rows.map((row) => row.layer_id);
}

/** Rows read from each layer at a time, so that no statement reads a whole manifest. */
const SCAN_ROWS = 1024;

/**
 * A snapshot's blocks from block `from` on, each from the nearest layer that has it, in index
 * order, with the zero blocks that hide a lower layer's data unless `nonZero`. Each layer is
 * read a bounded number of rows at a time, merged here: a page costs the rows it reads, not the
 * size of the manifest (a window over every row of every layer did).
 */
export async function* blockRows(db: MetaDb, snapshotId: string, q: { from?: number; nonZero?: boolean } = {}): AsyncGenerator<BlockRow> {
  let from: number | undefined = q.from ?? 0;
  while (from !== undefined) {
    const page = await blockPage(db, snapshotId, from);
    for (const row of page.rows) if (!q.nonZero || row.chunk !== "") yield row;
    from = page.next;
  }
}

/**
 * One page of blockRows, read in one transaction (repeatable read on PostgreSQL): a layer folded
 * into its dependents meanwhile (DeleteSnapshot of a base) is seen before or after, never half.
 */
function blockPage(db: MetaDb, snapshotId: string, from: number): Promise<{ rows: BlockRow[]; next?: number }> {
  return db
    .transaction()
    .setIsolationLevel("repeatable read")
    .execute(async (tx) => {
      // Every layer's rows are known up to `through`: the last index read of any layer that had more.
      let through = Infinity;
      const nearest = new Map<number, string>();
      for (const layerId of await layersOf(tx, snapshotId)) {
        const rows = await tx
          .selectFrom("snapshot_blocks")
          .select(["block_index", "chunk"])
          .where("snapshot_id", "=", layerId)
          .where("block_index", ">=", from)
          .orderBy("block_index")
          .limit(SCAN_ROWS)
          .execute();
        if (rows.length === SCAN_ROWS) through = Math.min(through, rows[rows.length - 1]!.block_index);
        for (const row of rows) if (!nearest.has(row.block_index)) nearest.set(row.block_index, row.chunk);
      }
      const indices = [...nearest.keys()].filter((index) => index <= through).sort((a, b) => a - b);
      return { rows: indices.map((index) => ({ block_index: index, chunk: nearest.get(index)! })), next: through === Infinity ? undefined : through + 1 };
    });
}

/** Up to `limit` of a snapshot's blocks from `from` on (see blockRows). */
export async function resolvedBlocks(db: MetaDb, snapshotId: string, q: { from?: number; limit: number; nonZero?: boolean }): Promise<BlockRow[]> {
  const page: BlockRow[] = [];
  if (q.limit <= 0) return page;
  for await (const row of blockRows(db, snapshotId, q)) {
    page.push(row);
    if (page.length === q.limit) break;
  }
  return page;
}

/** How many non-zero blocks a snapshot reads as, through its layers. */
export async function countResolvedBlocks(db: MetaDb, snapshotId: string): Promise<number> {
  let count = 0;
  for await (const _row of blockRows(db, snapshotId, { nonZero: true })) count++;
  return count;
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
 * A volume's blocks from `from` to `to` (inclusive), each from the nearest layer that has it
 * (the volume's own rows, then each base), zero rows included. One statement, so a fold of a
 * base (DeleteSnapshot) meanwhile is seen before or after, never half.
 */
export async function volumeWindow(db: MetaDb, volumeId: string, from: number, to: number): Promise<BlockRow[]> {
  const { rows } = await sql<BlockRow>`${chain(volumeId)}
    select block_index, chunk from (
      select block_index, chunk, row_number() over (partition by block_index order by depth) as nearest from (
        select block_index, chunk, 0 as depth from volume_blocks
          where volume_id = ${volumeId} and block_index >= ${from} and block_index <= ${to}
        union all
        select b.block_index, b.chunk, chain.depth from snapshot_blocks b join chain on b.snapshot_id = chain.layer_id
          where chain.depth > 0 and b.block_index >= ${from} and b.block_index <= ${to}
      ) as layered
    ) as ranked where nearest = 1 order by block_index`.execute(db);
  return rows;
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
