// Kiln's settings: built-in defaults, overridden by KILN_* environment variables, overridden by
// command-line flags. Everything a running Kiln needs to know is in one KilnConfig.
import { resolve } from "node:path";
import { configuredAccounts, defaultAccounts, parseAccountsList, readAccountsFile, type AccountDirectory } from "./auth/accounts.js";
import { isKilnRegion } from "./domain/regions.js";
import { loadCatalogue, type PublicCatalogue } from "./domain/catalogue.js";
import type { ObjectStoreSettings } from "./store/bucket/bucket.js";

export interface KilnConfig {
  host: string;
  port: number;
  /** Metadata (kiln.sqlite3, unless databaseUrl names PostgreSQL) and data live under here. */
  dataDir: string;
  /** A postgres:// URL: the metadata store is that PostgreSQL database rather than SQLite. */
  databaseUrl?: string;
  /** A bucket of an S3-compatible object store: snapshot data and bucket objects live there rather than in dataDir. */
  objectStore?: ObjectStoreSettings;
  /** This node's name in task leases (KILN_NODE_ID); by default one kept in the data directory. */
  nodeId?: string;
  /** How long a node's hold on a task lasts unrenewed: how soon another node takes over a dead node's tasks. */
  taskLeaseMs: number;
  accounts: AccountDirectory;
  /** Unsigned requests act for the default account when true (off by default). */
  allowUnsigned: boolean;
  /** Region for unsigned requests, whose region no signature names. */
  defaultRegion: string;
  /** POST /_kiln/reset empties all state when true. */
  allowReset: boolean;
  /** A secret that, sent as X-Kiln-Admin-Token, lets a tool that cannot sign use Kiln's own routes. */
  adminToken?: string;
  logLevel: string;
  /** Public images every region offers (built in, plus KILN_CATALOGUE_FILE's). */
  catalogue: PublicCatalogue;
  /** Chunk collection: how often it runs, and how old an unreferenced chunk must be to go. */
  collect: { intervalMs: number; graceMs: number };
  /** How long resources take to settle (creating → available, pending → completed); 0 is at once. */
  stateDelayMs: number;
  /** What runs instances: qemu guests, or no guest (states on a timer); auto is qemu when installed. */
  instanceBackend: "auto" | "qemu" | "none";
  vm: {
    /** KVM when a guest runs under it (auto probes by booting one), else TCG. */
    accelerator: "auto" | "kvm" | "tcg";
    /** A guest's memory is its instance type's, at most this. */
    memoryMaxMiB: number;
    /** Most guests running at once; by default as many as half the host's memory holds at the cap. */
    maxRunning?: number;
    /** How long a guest has to power off by ACPI before it is forced. */
    stopTimeoutMs: number;
    /** How long a guest may take to reach its login prompt before its status check fails. */
    bootTimeoutMs: number;
    /** The port of a guest's SSH on its public address (a loopback address of its own): 22 where Kiln may bind it. */
    sshPort: number;
  };
  limits: {
    /** Largest EC2 Query request body, in bytes. */
    maxBodyBytes: number;
    maxParameters: number;
    maxDepth: number;
    /** Most instances an account may have running (not terminated) in a region: EC2's instance limit. */
    maxInstances: number;
  };
}

export interface ConfigOverrides {
  host?: string;
  port?: number | string;
  dataDir?: string;
  databaseUrl?: string;
  objectStoreBucket?: string;
  objectStoreEndpoint?: string;
  accountsFile?: string;
  allowUnsigned?: boolean;
  allowReset?: boolean;
  defaultRegion?: string;
  logLevel?: string;
  stateDelayMs?: number;
  catalogueFile?: string;
  instanceBackend?: "auto" | "qemu" | "none";
}

const flag = (value: string | undefined) => (value === undefined ? undefined : /^(1|true|yes|on)$/i.test(value));

function port(value: number | string): number {
  const number = Number(value);
  if (!Number.isInteger(number) || number < 0 || number > 65535) throw new Error(`port ${value} is not a TCP port`);
  return number;
}

function positive(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const number = Number(value);
  if (!Number.isInteger(number) || number <= 0) throw new Error(`${name} must be a positive integer, got ${value}`);
  return number;
}

function positiveOrZero(name: string, value: string): number {
  const number = Number(value);
  if (!Number.isInteger(number) || number < 0) throw new Error(`${name} must be a whole number of milliseconds, got ${value}`);
  return number;
}

function oneOf<T extends string>(name: string, value: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value)) throw new Error(`${name} must be one of ${allowed.join(", ")}, got ${value}`);
  return value as T;
}

function region(name: string): string {
  if (!isKilnRegion(name)) throw new Error(`KILN_DEFAULT_REGION must be an AWS region Kiln serves (us-east-1, eu-west-1, ...), got ${name}`);
  return name;
}

/** A database URL fit for a log line or an error: its password replaced by an ellipsis. */
export function withoutPassword(url: string): string {
  return url.replace(/^([a-z]+:\/\/[^:@/]*:)[^@/]*@/, "$1…@");
}

function databaseUrl(value: string | undefined): string | undefined {
  if (value === undefined || value === "") return undefined;
  if (!/^postgres(ql)?:\/\//.test(value)) throw new Error(`KILN_DATABASE_URL must be a postgres:// URL, got ${withoutPassword(value)}`);
  return value;
}

/** The object store settings (KILN_OBJECT_STORE_*), when a bucket is named. */
function objectStore(overrides: ConfigOverrides, env: NodeJS.ProcessEnv): ObjectStoreSettings | undefined {
  const bucket = overrides.objectStoreBucket ?? env.KILN_OBJECT_STORE_BUCKET;
  if (!bucket) return undefined;
  const endpoint = overrides.objectStoreEndpoint ?? (env.KILN_OBJECT_STORE_ENDPOINT || undefined);
  if (endpoint !== undefined && !/^https?:\/\/[^/]/.test(endpoint))
    throw new Error(`KILN_OBJECT_STORE_ENDPOINT must be an http:// or https:// URL, got ${endpoint}`);
  const accessKeyId = env.KILN_OBJECT_STORE_ACCESS_KEY_ID;
  const secretAccessKey = env.KILN_OBJECT_STORE_SECRET_ACCESS_KEY;
  if (!accessKeyId !== !secretAccessKey) throw new Error("KILN_OBJECT_STORE_ACCESS_KEY_ID and KILN_OBJECT_STORE_SECRET_ACCESS_KEY go together");
  const prefix = env.KILN_OBJECT_STORE_PREFIX ?? "";
  if (prefix.startsWith("/")) throw new Error(`KILN_OBJECT_STORE_PREFIX must not start with /, got ${prefix}`);
  return {
    bucket,
    prefix,
    endpoint,
    region: env.KILN_OBJECT_STORE_REGION || env.AWS_REGION || "us-east-1",
    credentials: accessKeyId && secretAccessKey ? { accessKeyId, secretAccessKey } : undefined,
    // Services other than AWS S3 mostly want the bucket in the path.
    forcePathStyle: flag(env.KILN_OBJECT_STORE_PATH_STYLE) ?? endpoint !== undefined,
  };
}

export function resolveConfig(overrides: ConfigOverrides = {}, env: NodeJS.ProcessEnv = process.env): KilnConfig {
  const accountsFile = overrides.accountsFile ?? env.KILN_ACCOUNTS_FILE;
  const accounts = accountsFile
    ? configuredAccounts(readAccountsFile(accountsFile))
    : env.KILN_ACCOUNTS
      ? configuredAccounts(parseAccountsList(env.KILN_ACCOUNTS))
      : defaultAccounts();
  return {
    host: overrides.host ?? env.KILN_HOST ?? "127.0.0.1",
    port: port(overrides.port ?? env.KILN_PORT ?? 4566),
    dataDir: resolve(overrides.dataDir ?? env.KILN_DATA_DIR ?? "data"),
    databaseUrl: databaseUrl(overrides.databaseUrl ?? env.KILN_DATABASE_URL),
    objectStore: objectStore(overrides, env),
    nodeId: env.KILN_NODE_ID || undefined,
    taskLeaseMs: positive("KILN_TASK_LEASE_MS", env.KILN_TASK_LEASE_MS, 30_000),
    accounts,
    allowUnsigned: overrides.allowUnsigned ?? flag(env.KILN_ALLOW_UNSIGNED) ?? false,
    defaultRegion: region(overrides.defaultRegion ?? env.KILN_DEFAULT_REGION ?? "us-east-1"),
    allowReset: overrides.allowReset ?? flag(env.KILN_ALLOW_RESET) ?? true,
    adminToken: env.KILN_ADMIN_TOKEN || undefined,
    logLevel: overrides.logLevel ?? env.KILN_LOG_LEVEL ?? "info",
    collect: {
      intervalMs: positive("KILN_COLLECT_INTERVAL_MS", env.KILN_COLLECT_INTERVAL_MS, 10 * 60_000),
      graceMs: env.KILN_COLLECT_GRACE_MS === undefined ? 10 * 60_000 : positiveOrZero("KILN_COLLECT_GRACE_MS", env.KILN_COLLECT_GRACE_MS),
    },
    catalogue: loadCatalogue(overrides.catalogueFile ?? (env.KILN_CATALOGUE_FILE || undefined)),
    stateDelayMs: overrides.stateDelayMs ?? (env.KILN_STATE_DELAY_MS === undefined ? 0 : positiveOrZero("KILN_STATE_DELAY_MS", env.KILN_STATE_DELAY_MS)),
    instanceBackend: oneOf("KILN_INSTANCE_BACKEND", overrides.instanceBackend ?? env.KILN_INSTANCE_BACKEND ?? "auto", ["auto", "qemu", "none"]),
    vm: {
      accelerator: oneOf("KILN_VM_ACCELERATOR", env.KILN_VM_ACCELERATOR ?? "auto", ["auto", "kvm", "tcg"]),
      memoryMaxMiB: positive("KILN_VM_MEMORY_MAX_MIB", env.KILN_VM_MEMORY_MAX_MIB, 2048),
      maxRunning: env.KILN_VM_MAX_RUNNING === undefined ? undefined : positive("KILN_VM_MAX_RUNNING", env.KILN_VM_MAX_RUNNING, 1),
      stopTimeoutMs: positive("KILN_VM_STOP_TIMEOUT_MS", env.KILN_VM_STOP_TIMEOUT_MS, 120_000),
      bootTimeoutMs: positive("KILN_VM_BOOT_TIMEOUT_MS", env.KILN_VM_BOOT_TIMEOUT_MS, 600_000),
      // Ports under 1024 need root (or CAP_NET_BIND_SERVICE): 22 as root, else 2222.
      sshPort: positive("KILN_VM_SSH_PORT", env.KILN_VM_SSH_PORT, process.getuid?.() === 0 ? 22 : 2222),
    },
    limits: {
      maxBodyBytes: positive("KILN_MAX_BODY_BYTES", env.KILN_MAX_BODY_BYTES, 1024 * 1024),
      maxParameters: positive("KILN_MAX_PARAMETERS", env.KILN_MAX_PARAMETERS, 10_000),
      maxDepth: 16,
      maxInstances: positive("KILN_MAX_INSTANCES", env.KILN_MAX_INSTANCES, 1000),
    },
  };
}
