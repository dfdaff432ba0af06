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
  SqliteDialect,
  SqliteDriver,
  type DatabaseConnection,
  type Driver,
  type MigrationProvider,
  type QueryCompiler,
  type SqliteDialectConfig,
  type TransactionSettings,
} from "kysely";
import pg from "pg";
import { withoutPassword } from "../../config.js";
import { yieldToLoop } from "../../event-loop.js";
import { NET_UNAVAILABLE, StoreUnavailableError } from "../unavailable.js";
import { checkStorableText } from "../unstorable.js";
import { startCheckpoints } from "./checkpoints.js";
import { migrations } from "./migrations.js";
import { STATE_TABLES, type MetaSchema } from "./schema.js";

export type MetaDb = Kysely<MetaSchema>;

export type MetaDialect = "sqlite" | "postgres";

/** A listing in id order: only these ids, only ids after `after`, at most `limit` rows. */
export interface ListQuery {
  ids?: readonly string[];
  after?: string;
  limit?: number;
}

/**
 * Runs `work` in one transaction: the caller's, when `db` already is one (so a task or a
 * multi-step action that opened it commits once), else a new one.
 */
export function atomically<T>(db: MetaDb, work: (tx: MetaDb) => Promise<T>): Promise<T> {
  return db.isTransaction ? work(db) : db.transaction().execute(work);
}

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
  // node-postgres's own words for a connection lost or closed, one of them thrown by a pooled
  // client that lost its connection between two queries (no code, only this message).
  return (
    typeof message === "string" &&
    /^(Connection terminated|timeout exceeded when trying to connect|Cannot use a pool after calling end|Client has encountered a connection error and is not queryable|Client was closed and is not queryable)/.test(
      message,
    )
  );
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
  // Checkpoints run on a worker thread (checkpoints.ts), never inside a commit on the event loop.
  sqlite.pragma("wal_autocheckpoint = 0");
  return sqlite;
}

type Compile = QueryCompiler["compileQuery"];

/**
 * A driver whose connections run each statement in its turn (yieldToLoop). better-sqlite3 runs
 * each statement synchronously, and Kysely awaits nothing between them but resolved promises: a
 * request running thousands of statements (or a transaction of them) would hold the event loop
 * until it ends, and no other request, not even health, would be answered. On PostgreSQL the loop
 * turns at every statement, but the answers of many connections come back in one turn, and each
 * request would go on to make and send its next statement in that same turn.
 * It also refuses, alike on both dialects, text PostgreSQL cannot hold (UnstorableTextError).
 */
class SlicedDriver implements Driver {
  /** The driver's own connection of each one handed out (it takes back only its own). */
  readonly #own = new WeakMap<DatabaseConnection, DatabaseConnection>();
  readonly #sliced = new WeakMap<DatabaseConnection, DatabaseConnection>();

  constructor(private readonly driver: Driver) {}

  init = () => this.driver.init();
  destroy = () => this.driver.destroy();

  async acquireConnection(): Promise<DatabaseConnection> {
    const own = await this.driver.acquireConnection();
    let sliced = this.#sliced.get(own);
    if (!sliced) {
      sliced = {
        // Not async: within the slice, the driver's own promise is the answer.
        executeQuery(query) {
          checkStorableText(query.parameters);
          const turn = yieldToLoop();
          return turn ? turn.then(() => own.executeQuery(query)) : own.executeQuery(query);
        },
        streamQuery(query, chunkSize) {
          checkStorableText(query.parameters);
          return own.streamQuery(query, chunkSize);
        },
      };
      this.#sliced.set(own, sliced);
      this.#own.set(sliced, own);
    }
    return sliced;
  }

  releaseConnection = (connection: DatabaseConnection) => this.driver.releaseConnection(this.#own.get(connection)!);
  // These run statements on the connection: the sliced one.
  beginTransaction = (connection: DatabaseConnection, settings: TransactionSettings) => this.driver.beginTransaction(connection, settings);
  commitTransaction = (connection: DatabaseConnection) => this.driver.commitTransaction(connection);
  rollbackTransaction = (connection: DatabaseConnection) => this.driver.rollbackTransaction(connection);
  savepoint = (connection: DatabaseConnection, name: string, compile: Compile) => this.driver.savepoint!(connection, name, compile);
  rollbackToSavepoint = (connection: DatabaseConnection, name: string, compile: Compile) => this.driver.rollbackToSavepoint!(connection, name, compile);
  releaseSavepoint = (connection: DatabaseConnection, name: string, compile: Compile) => this.driver.releaseSavepoint!(connection, name, compile);
}

/**
 * Transactions that take the write lock when they begin. A deferred transaction (SQLite's
 * default) that reads and then writes, while another process wrote in between, fails with
 * SQLITE_BUSY at once, whatever the busy timeout: its snapshot is stale. Beginning immediately,
 * it waits its turn instead (two nodes on one file, each racing to make the same image).
 */
class ImmediateSqliteDialect extends SqliteDialect {
  constructor(private readonly settings: SqliteDialectConfig) {
    super(settings);
  }

  override createDriver(): Driver {
    return new SlicedDriver(
      new (class extends SqliteDriver {
        override async beginTransaction(connection: DatabaseConnection): Promise<void> {
          await connection.executeQuery(CompiledQuery.raw("begin immediate"));
        }
      })(this.settings),
    );
  }
}

class SlicedPostgresDialect extends PostgresDialect {
  override createDriver(): Driver {
    return new SlicedDriver(super.createDriver());
  }
}

// int8 values (sizes in bytes, counts, times in milliseconds) as numbers, as SQLite gives them:
// every such value Kiln keeps is far below 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number(value));

function postgresPool(url: string, max: number, idleTimeoutMillis?: number): pg.Pool {
  // A database out of reach fails a request within seconds rather than holding it open.
  const pool = new pg.Pool({ connectionString: url, max, connectionTimeoutMillis: 5000, idleTimeoutMillis });
  // A connection the server dropped: the query on it (if any) fails and says so, and the pool
  // replaces it. The client's own error event, idle or checked out, is no reason to crash.
  pool.on("error", () => {});
  pool.on("connect", (client) => client.on("error", () => {}));
  return pool;
}

/** The metadata store: PostgreSQL at `databaseUrl` when given, else SQLite in `dataDir`. */
export async function openMetaStore(where: { dataDir: string; databaseUrl?: string }): Promise<MetaStore> {
  const dialect: MetaDialect = where.databaseUrl ? "postgres" : "sqlite";
  const sqlite = where.databaseUrl ? undefined : openSqlite(where.dataDir);
  // Health asks PostgreSQL on a connection of its own, kept open (0: never idle out): the pool's
  // ten may all be busy with requests, and connecting anew takes a while on a busy server.
  const pingPool = where.databaseUrl ? postgresPool(where.databaseUrl, 1, 0) : undefined;
  const db = new Kysely<MetaSchema>({
    dialect: sqlite
      ? new ImmediateSqliteDialect({ database: withStatementCache(sqlite) })
      : new SlicedPostgresDialect({ pool: postgresPool(where.databaseUrl!, 10) }),
  });
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
    await pingPool?.end();
    await db.destroy();
    if (!failed && where.databaseUrl) throw new Error(`cannot open the metadata database ${withoutPassword(where.databaseUrl)}: ${String(error)}`);
    throw new Error(`metadata migration ${failed?.migrationName ?? ""} failed: ${String(error)}`);
  }
  const checkpoints = sqlite ? startCheckpoints(sqlite.name) : undefined;
  // Health's connection is made now, while the database is not busy.
  await pingPool?.query("select 1");
  return {
    db,
    dialect,
    async ping() {
      // Health asks the database beside the requests' queries, not behind them: SQLite's one
      // connection may be held by a transaction under way (running in slices), and every pooled
      // PostgreSQL connection by requests.
      if (sqlite) sqlite.prepare("select 1").get();
      else await pingPool!.query("select 1");
    },
    async reset() {
      await db.transaction().execute(async (tx) => {
        for (const table of STATE_TABLES) await tx.deleteFrom(table).execute();
      });
    },
    async close() {
      await checkpoints?.stop();
      await pingPool?.end();
      await db.destroy();
    },
  };
}
