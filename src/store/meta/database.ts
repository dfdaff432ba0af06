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

const STATEMENT_CACHE_SIZE = 256;

/**
 * Kysely's SQLite driver prepares every query anew, which costs more than running it. Statements
 * are reused by their SQL text (bounded; the least recently used goes first). Reuse is safe:
 * better-sqlite3 runs each statement to completion synchronously.
 */
function withStatementCache(sqlite: SQLite.Database): SQLite.Database {
  const statements = new Map<string, SQLite.Statement>();
  const prepare = sqlite.prepare.bind(sqlite);
  return new Proxy(sqlite, {
    get(target, property, receiver) {
      if (property !== "prepare") return Reflect.get(target, property, receiver);
      return (source: string) => {
        let statement = statements.get(source);
        if (statement) {
          statements.delete(source);
        } else {
          statement = prepare(source);
          if (statements.size >= STATEMENT_CACHE_SIZE) statements.delete(statements.keys().next().value!);
        }
        statements.set(source, statement);
        return statement;
      };
    },
  });
}

export async function openMetaStore(dataDir: string): Promise<MetaStore> {
  mkdirSync(dataDir, { recursive: true });
  const sqlite = new SQLite(join(dataDir, "kiln.sqlite3"));
  // WAL keeps readers and the writer apart; every committed transaction survives a killed process.
  sqlite.pragma("journal_mode = WAL");
  sqlite.pragma("synchronous = NORMAL");
  sqlite.pragma("foreign_keys = ON");
  sqlite.pragma("busy_timeout = 5000");
  const db = new Kysely<MetaSchema>({ dialect: new SqliteDialect({ database: withStatementCache(sqlite) }) });
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
