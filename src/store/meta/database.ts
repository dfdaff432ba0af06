// The metadata store: Kysely, one typed query layer over two dialects. SQLite (better-sqlite3,
// embedded in the data directory) is the default; PostgreSQL (node-postgres) when a
// postgres:// URL is configured, for several nodes sharing one database.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import SQLite from "better-sqlite3";
import { Kysely, Migrator, PostgresDialect, SqliteDialect, type Dialect, type MigrationProvider } from "kysely";
import pg from "pg";
import { withoutPassword } from "../../config.js";
import { migrations } from "./migrations.js";
import { STATE_TABLES, type MetaSchema } from "./schema.js";

export type MetaDb = Kysely<MetaSchema>;

export type MetaDialect = "sqlite" | "postgres";

export interface MetaStore {
  readonly db: MetaDb;
  readonly dialect: MetaDialect;
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

function sqliteDialect(dataDir: string): Dialect {
  mkdirSync(dataDir, { recursive: true });
  const sqlite = new SQLite(join(dataDir, "kiln.sqlite3"));
  // WAL keeps readers and the writer apart; every committed transaction survives a killed process.
  sqlite.pragma("journal_mode = WAL");
  sqlite.pragma("synchronous = NORMAL");
  sqlite.pragma("foreign_keys = ON");
  sqlite.pragma("busy_timeout = 5000");
  return new SqliteDialect({ database: withStatementCache(sqlite) });
}

// int8 values (sizes in bytes, counts, times in milliseconds) as numbers, as SQLite gives them:
// every such value Kiln keeps is far below 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number(value));

function postgresDialect(url: string): Dialect {
  return new PostgresDialect({ pool: new pg.Pool({ connectionString: url, max: 10 }) });
}

/** The metadata store: PostgreSQL at `databaseUrl` when given, else SQLite in `dataDir`. */
export async function openMetaStore(where: { dataDir: string; databaseUrl?: string }): Promise<MetaStore> {
  const dialect: MetaDialect = where.databaseUrl ? "postgres" : "sqlite";
  const db = new Kysely<MetaSchema>({ dialect: where.databaseUrl ? postgresDialect(where.databaseUrl) : sqliteDialect(where.dataDir) });
  const { error, results } = await new Migrator({ db, provider }).migrateToLatest();
  const failed = results?.find((r) => r.status === "Error");
  if (error || failed) {
    await db.destroy();
    if (!failed && where.databaseUrl) throw new Error(`cannot open the metadata database ${withoutPassword(where.databaseUrl)}: ${String(error)}`);
    throw new Error(`metadata migration ${failed?.migrationName ?? ""} failed: ${String(error)}`);
  }
  return {
    db,
    dialect,
    async reset() {
      await db.transaction().execute(async (tx) => {
        for (const table of STATE_TABLES) await tx.deleteFrom(table).execute();
      });
    },
    close: () => db.destroy(),
  };
}
