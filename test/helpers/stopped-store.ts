// Reads a stopped Kiln's metadata store directly, with no Kiln running on it: what a stop or a
// kill left, before a restart gets the chance to change it. The SQLite file in the data folder
// (opened read-only), or the PostgreSQL database the Kiln was given.
import { join } from "node:path";
import SQLite from "better-sqlite3";
import pg from "pg";

export interface StoppedStore {
  dataDir: string;
  /** The Kiln's KILN_DATABASE_URL, when its metadata is in PostgreSQL. */
  databaseUrl?: string;
}

/** Rows of `sql` (placeholders `?`) run against the stopped Kiln's metadata. */
export async function stoppedStoreRows(store: StoppedStore, sql: string, params: unknown[] = []): Promise<Record<string, unknown>[]> {
  if (store.databaseUrl) {
    const client = new pg.Client({ connectionString: store.databaseUrl });
    await client.connect();
    try {
      let n = 0;
      return (
        await client.query(
          sql.replace(/\?/g, () => `$${++n}`),
          params,
        )
      ).rows as Record<string, unknown>[];
    } finally {
      await client.end();
    }
  }
  // fileMustExist: a wrong path is an error, never an empty store.
  const db = new SQLite(join(store.dataDir, "kiln.sqlite3"), { readonly: true, fileMustExist: true });
  try {
    return db.prepare(sql).all(...params) as Record<string, unknown>[];
  } finally {
    db.close();
  }
}

/** The task rows of `kind` whose params mention `needle` (an image id, a task id). */
export async function stoppedTasks(store: StoppedStore, kind: string, needle: string): Promise<{ task_id: string; state: string; params: string }[]> {
  const rows = (await stoppedStoreRows(store, "select task_id, state, params from tasks where kind = ?", [kind])) as {
    task_id: string;
    state: string;
    params: string;
  }[];
  return rows.filter((row) => row.task_id === needle || row.params.includes(needle));
}
