// Table types for the query layer. Every resource row carries account_id and region.
export interface TagTable {
  account_id: string;
  region: string;
  resource_id: string;
  resource_type: string;
  key: string;
  value: string;
}

export interface SnapshotTable {
  account_id: string;
  region: string;
  snapshot_id: string;
  /** vol-ffffffff for snapshots not taken from a volume, as AWS reports them. */
  volume_id: string;
  /** GiB. */
  volume_size: number;
  state: "pending" | "completed" | "error";
  progress: string;
  /** ISO 8601. */
  start_time: string;
  description: string;
  encrypted: number;
  kms_key_id: string | null;
  parent_snapshot_id: string | null;
  client_token: string | null;
}

/** A snapshot's manifest: which chunk holds each written block. */
export interface SnapshotBlockTable {
  snapshot_id: string;
  block_index: number;
  /** SHA-256 of the block, or '' for a block of zeros. */
  chunk: string;
  /** 1 when this snapshot wrote the block; 0 when it came from the parent snapshot. */
  written: number;
}

export interface MetaSchema {
  tags: TagTable;
  snapshots: SnapshotTable;
  snapshot_blocks: SnapshotBlockTable;
}

/** Tables that hold state (everything but the migration bookkeeping): what a reset empties. */
export const STATE_TABLES: readonly (keyof MetaSchema)[] = ["tags", "snapshot_blocks", "snapshots"];
