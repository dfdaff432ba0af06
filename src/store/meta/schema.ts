// Table types for the query layer. Every resource row carries account_id and region.
export interface TagTable {
  account_id: string;
  region: string;
  resource_id: string;
  resource_type: string;
  key: string;
  value: string;
}

export interface MetaSchema {
  tags: TagTable;
}

/** Tables that hold state (everything but the migration bookkeeping): what a reset empties. */
export const STATE_TABLES: readonly (keyof MetaSchema)[] = ["tags"];
