// The metadata store: Kysely (one typed query layer; SQLite now, PostgreSQL as a second dialect
// later) over better-sqlite3 embedded in the data directory.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import SQLite from "better-sqlite3";
import { Kysely, Migrator, SqliteDialect, type MigrationProvider } from "kysely";
import { migrations } from "./migrations.js";
import { STATE_TABLES, type MetaSchema } from "./schema.js";

export type MetaDb = Kysely<MetaSchema>;

export interface MetaStore {
  readonly db: MetaDb;
  reset(): Promise<void>;
  close(): Promise<void>;
}

const provider: MigrationProvider = { getMigrations: async () => migrations };

export async function openMetaStore(dataDir: string): Promise<MetaStore> {
  mkdirSync(dataDir, { recursive: true });
  const sqlite = new SQLite(join(dataDir, "kiln.sqlite3"));
  // WAL keeps readers and the writer apart; every committed transaction survives a killed process.
  sqlite.pragma("journal_mode = WAL");
  sqlite.pragma("synchronous = NORMAL");
  sqlite.pragma("foreign_keys = ON");
  sqlite.pragma("busy_timeout = 5000");
  const db = new Kysely<MetaSchema>({ dialect: new SqliteDialect({ database: sqlite }) });
  const { error, results } = await new Migrator({ db, provider }).migrateToLatest();
  const failed = results?.find((r) => r.status === "Error");
  if (error || failed) {
    await db.destroy();
    throw new Error(`metadata migration ${failed?.migrationName ?? ""} failed: ${String(error)}`);
  }
  return {
    db,
    async reset() {
      await db.transaction().execute(async (tx) => {
        for (const table of STATE_TABLES) await tx.deleteFrom(table).execute();
      });
    },
    close: () => db.destroy(),
  };
}
