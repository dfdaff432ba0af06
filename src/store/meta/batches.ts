// Many rows or ids in few statements, each small: one statement per row costs a round trip on
// PostgreSQL and, on SQLite, runs synchronously on the event loop (see event-loop.ts), so a
// long list is written or read in statements of a bounded number of parameters.

/**
 * Parameters one statement binds, at most: far within SQLite's 32,766 and PostgreSQL's 65,535,
 * and small enough that one statement runs in a few milliseconds.
 */
export const PARAMETERS_PER_STATEMENT = 4000;

/** `items` in consecutive batches of at most `PARAMETERS_PER_STATEMENT / perItem` items. */
export function* batchesOf<T>(items: readonly T[], perItem = 1): Generator<T[]> {
  const size = Math.max(1, Math.floor(PARAMETERS_PER_STATEMENT / perItem));
  for (let i = 0; i < items.length; i += size) yield items.slice(i, i + size);
}

/**
 * Rows written by `write`, a multi-row insert, a batch at a time (each row binds a parameter per
 * column). Rows may be made as they are taken (a generator), so that a large write never holds
 * them all, nor spends the time making them all, between two statements.
 */
export async function insertInBatches<Row extends object>(rows: Iterable<Row>, write: (batch: Row[]) => Promise<unknown>): Promise<void> {
  let batch: Row[] = [];
  let size = 0;
  for (const row of rows) {
    size ||= Math.max(1, Math.floor(PARAMETERS_PER_STATEMENT / Object.keys(row).length));
    batch.push(row);
    if (batch.length < size) continue;
    await write(batch);
    batch = [];
  }
  if (batch.length > 0) await write(batch);
}

/** What `read` finds for each batch of `ids` (an `in` list), concatenated. */
export async function readInBatches<Id, Row>(ids: readonly Id[], read: (batch: Id[]) => Promise<Row[]>): Promise<Row[]> {
  const rows: Row[] = [];
  for (const batch of batchesOf(ids)) for (const row of await read(batch)) rows.push(row);
  return rows;
}
