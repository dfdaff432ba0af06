// The metadata store: Kysely, one typed query layer over two dialects. SQLite (better-sqlite3,
// embedded in the data directory) is the default; PostgreSQL (node-postgres) when a
// postgres:// URL is configured, for several nodes sharing one database.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import SQLite from "better-sqlite3";
import {
  CompiledQuery,
  Kysely,
  Migrator,
  PostgresDialect,
  sql,
  SqliteDialect,
  SqliteDriver,
  type DatabaseConnection,
  type Dialect,
  type Driver,
  type MigrationProvider,
  type SqliteDialectConfig,
} from "kysely";
import pg from "pg";
import { withoutPassword } from "../../config.js";
import { yieldToLoop } from "../../event-loop.js";
import { NET_UNAVAILABLE, StoreUnavailableError } from "../unavailable.js";
import { migrations } from "./migrations.js";
import { STATE_TABLES, type MetaSchema } from "./schema.js";

export type MetaDb = Kysely<MetaSchema>;

export type MetaDialect = "sqlite" | "postgres";

export interface MetaStore {
  readonly db: MetaDb;
  readonly dialect: MetaDialect;
  /** Resolves when the database answers a query; throws why not. */
  ping(): Promise<void>;
  reset(): Promise<void>;
  close(): Promise<void>;
}

/** True for an insert refused because the row (or its unique key) exists: another writer, another node, got there first. */
export function isUniqueViolation(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code;
  return code === "23505" || code === "SQLITE_CONSTRAINT_PRIMARYKEY" || code === "SQLITE_CONSTRAINT_UNIQUE";
}

/** PostgreSQL's error classes and codes that mean "not reachable now", not "this request is wrong". */
const PG_UNAVAILABLE = /^(08...|57P0[123]|53300)$/;

/**
 * True for a failure of a store itself (PostgreSQL out of reach or shutting down, a connection
 * lost; SQLite locked by another process past the busy timeout; the object store out of reach):
 * the request may succeed later, and Kiln answers ServiceUnavailable rather than an internal error.
 */
export function isStoreUnavailable(error: unknown): boolean {
  if (error instanceof StoreUnavailableError) return true;
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  if (typeof code === "string" && (PG_UNAVAILABLE.test(code) || NET_UNAVAILABLE.has(code) || code === "SQLITE_BUSY" || code === "SQLITE_LOCKED")) return true;
  return typeof message === "string" && /^(Connection terminated|timeout exceeded when trying to connect|Cannot use a pool after calling end)/.test(message);
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

function openSqlite(dataDir: string): SQLite.Database {
  mkdirSync(dataDir, { recursive: true });
  const sqlite = new SQLite(join(dataDir, "kiln.sqlite3"));
  // First, so that what follows waits for another process's lock rather than failing at once.
  sqlite.pragma("busy_timeout = 5000");
  // WAL keeps readers and the writer apart; every committed transaction survives a killed process.
  sqlite.pragma("journal_mode = WAL");
  sqlite.pragma("synchronous = NORMAL");
  sqlite.pragma("foreign_keys = ON");
  return sqlite;
}

/**
 * A connection whose every statement first waits its turn (yieldToLoop): better-sqlite3 runs each
 * statement synchronously, and Kysely awaits nothing between them but resolved promises, so a
 * request running thousands of statements (or a transaction of them) would otherwise hold the
 * event loop until it ends, and no other request, not even health, would be answered.
 */
function sliced(connection: DatabaseConnection): DatabaseConnection {
  return {
    async executeQuery(query) {
      await yieldToLoop();
      return connection.executeQuery(query);
    },
    streamQuery: (query, chunkSize) => connection.streamQuery(query, chunkSize),
  };
}

/**
 * Transactions that take the write lock when they begin. A deferred transaction (SQLite's
 * default) that reads and then writes, while another process wrote in between, fails with
 * SQLITE_BUSY at once, whatever the busy timeout: its snapshot is stale. Beginning immediately,
 * it waits its turn instead (two nodes on one file, each racing to make the same image).
 * Statements run in slices of the event loop (sliced).
 */
class ImmediateSqliteDialect extends SqliteDialect {
  constructor(private readonly settings: SqliteDialectConfig) {
    super(settings);
  }

  override createDriver(): Driver {
    let connection: DatabaseConnection | undefined;
    return new (class extends SqliteDriver {
      override async acquireConnection(): Promise<DatabaseConnection> {
        // SQLite has one connection: wrapped once.
        const raw = await super.acquireConnection();
        return (connection ??= sliced(raw));
      }

      override async beginTransaction(connection: DatabaseConnection): Promise<void> {
        await connection.executeQuery(CompiledQuery.raw("begin immediate"));
      }
    })(this.settings);
  }
}

// int8 values (sizes in bytes, counts, times in milliseconds) as numbers, as SQLite gives them:
// every such value Kiln keeps is far below 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number(value));

function postgresDialect(url: string): Dialect {
  // A database out of reach fails a request within seconds rather than holding it open.
  const pool = new pg.Pool({ connectionString: url, max: 10, connectionTimeoutMillis: 5000 });
  // A connection the server dropped: the query on it (if any) fails and says so, and the pool
  // replaces it. The client's own error event, idle or checked out, is no reason to crash.
  pool.on("error", () => {});
  pool.on("connect", (client) => client.on("error", () => {}));
  return new PostgresDialect({ pool });
}

/** The metadata store: PostgreSQL at `databaseUrl` when given, else SQLite in `dataDir`. */
export async function openMetaStore(where: { dataDir: string; databaseUrl?: string }): Promise<MetaStore> {
  const dialect: MetaDialect = where.databaseUrl ? "postgres" : "sqlite";
  const sqlite = where.databaseUrl ? undefined : openSqlite(where.dataDir);
  const db = new Kysely<MetaSchema>({ dialect: sqlite ? new ImmediateSqliteDialect({ database: withStatementCache(sqlite) }) : postgresDialect(where.databaseUrl!) });
  let { error, results } = await new Migrator({ db, provider }).migrateToLatest();
  if (dialect === "sqlite" && (error || results?.some((r) => r.status === "Error"))) {
    // Kysely's migrator takes no lock on SQLite: two processes starting together on one file
    // both begin the same migrations, and the one that waited fails on what the other made.
    // Once the other has committed, nothing is left to run.
    await new Promise((resolve) => setTimeout(resolve, 200));
    ({ error, results } = await new Migrator({ db, provider }).migrateToLatest());
  }
  const failed = results?.find((r) => r.status === "Error");
  if (error || failed) {
    await db.destroy();
    if (!failed && where.databaseUrl) throw new Error(`cannot open the metadata database ${withoutPassword(where.databaseUrl)}: ${String(error)}`);
    throw new Error(`metadata migration ${failed?.migrationName ?? ""} failed: ${String(error)}`);
  }
  return {
    db,
    dialect,
    async ping() {
      // SQLite's one connection may be held by a transaction under way (running in slices):
      // health asks the database directly rather than waiting its turn behind it.
      if (sqlite) sqlite.prepare("select 1").get();
      else await sql`select 1`.execute(db);
    },
    async reset() {
      await db.transaction().execute(async (tx) => {
        for (const table of STATE_TABLES) await tx.deleteFrom(table).execute();
      });
    },
    close: () => db.destroy(),
  };
}
