// Starts a real Kiln (HTTP server, SQLite store in a temporary data directory) for a test file.
// With KILN_TEST_DATABASE_URL set (a postgres:// URL of a role that may create databases), each
// Kiln's metadata goes into a fresh PostgreSQL database instead, dropped when the Kiln closes.
// With KILN_TEST_OBJECT_STORE_ENDPOINT set (an S3-compatible service, such as moto_server), each
// Kiln's snapshot data and bucket objects go into a fresh bucket there, emptied and dropped when
// the test file ends.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EBSClient } from "@aws-sdk/client-ebs";
import { SSMClient } from "@aws-sdk/client-ssm";
import { EC2Client } from "@aws-sdk/client-ec2";
import { CreateBucketCommand, DeleteBucketCommand, S3Client } from "@aws-sdk/client-s3";
import pg from "pg";
import { startKiln, type RunningKiln } from "../../src/app.js";
import { resolveConfig, type ConfigOverrides } from "../../src/config.js";
import { ObjectStoreBucket } from "../../src/store/bucket/bucket.js";
import { signedRequest, type RawResponse } from "./signed.js";
import { bucketBlobStore } from "../../src/store/objects/bucket-blobs.js";

// The suite runs under Node 20, which Kiln supports: the SDK's notice that its releases after
// January 2027 need Node 22 would otherwise print in every test file's output. Tests of the CLI
// clear it for the processes they start (the CLI turns the notice off itself).
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";

interface ClientOptions {
  accessKeyId?: string;
  secretAccessKey?: string;
  region?: string;
}

export interface TestKiln {
  kiln: RunningKiln;
  url: string;
  dataDir: string;
  /** An SDK client signed as `accessKeyId` (default `test`) with secret `test`, in `region`. */
  ec2(options?: ClientOptions): EC2Client;
  /** An EBS direct APIs client, signed likewise. */
  ebs(options?: ClientOptions): EBSClient;
  /** An S3 client (path-style addressing), signed likewise. */
  s3(options?: ClientOptions): S3Client;
  /** An SSM client, signed likewise. */
  ssm(options?: ClientOptions): SSMClient;
  /** A POST to one of Kiln's own routes (`/_kiln/reset`, …), signed as EC2 requests are, by `accessKeyId` (default `test`). */
  admin(path: string, options?: { query?: Record<string, string>; accessKeyId?: string; region?: string }): Promise<RawResponse>;
  reset(): Promise<void>;
  close(): Promise<void>;
}

const madeDirs: string[] = [];
const databases = new Map<string, { url: string; drop(): Promise<void> }>();
const buckets = new Map<string, TestBucket>();
// Test databases and buckets go when the test file is done (its Kilns closed in its after hooks).
process.on("beforeExit", () => {
  if (databases.size === 0 && buckets.size === 0) return;
  const dropping = [...databases.values(), ...buckets.values()];
  databases.clear();
  buckets.clear();
  void Promise.allSettled(dropping.map((made) => made.drop()));
});
process.once("exit", () => {
  for (const dir of madeDirs) rmSync(dir, { recursive: true, force: true });
});

/** A temporary directory, removed when the test process exits. */
export function tempDir(prefix = "kiln-test-"): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  madeDirs.push(dir);
  return dir;
}

/** The PostgreSQL server tests run against, when any. */
export const testDatabaseUrl = process.env.KILN_TEST_DATABASE_URL || undefined;

/**
 * A new, empty PostgreSQL database on `server` (the test server unless another is named, as the
 * benchmarks do); its URL, and a function that drops it.
 */
export async function freshDatabase(server = testDatabaseUrl, prefix = "kiln_test"): Promise<{ url: string; drop(): Promise<void> }> {
  if (!server) throw new Error("KILN_TEST_DATABASE_URL is not set");
  const name = `${prefix}_${randomBytes(6).toString("hex")}`;
  const admin = async (statement: string) => {
    const client = new pg.Client({ connectionString: server });
    await client.connect();
    try {
      await client.query(statement);
    } finally {
      await client.end();
    }
  };
  await admin(`create database ${name}`);
  const url = new URL(server);
  url.pathname = `/${name}`;
  return { url: url.toString(), drop: () => admin(`drop database if exists ${name} with (force)`) };
}

/** The S3-compatible service tests keep Kiln's data in, when any. */
export const testObjectStoreEndpoint = process.env.KILN_TEST_OBJECT_STORE_ENDPOINT || undefined;

export interface TestBucket {
  bucket: ObjectStoreBucket;
  /** The KILN_OBJECT_STORE_* settings naming it, for resolveConfig or a `kiln serve` process. */
  env: Record<string, string>;
  /** Empties the bucket (objects and multipart uploads) and deletes it. */
  drop(): Promise<void>;
}

/**
 * A new, empty bucket in the S3-compatible service at `endpoint` (the test service unless another
 * is named), signed as `test`, which moto accepts and a Kiln knows.
 */
export async function freshBucket(endpoint = testObjectStoreEndpoint, prefix = ""): Promise<TestBucket> {
  if (!endpoint) throw new Error("KILN_TEST_OBJECT_STORE_ENDPOINT is not set");
  const env = {
    KILN_OBJECT_STORE_BUCKET: `kiln-test-${randomBytes(6).toString("hex")}`,
    KILN_OBJECT_STORE_ENDPOINT: endpoint,
    KILN_OBJECT_STORE_PREFIX: prefix,
    KILN_OBJECT_STORE_ACCESS_KEY_ID: "test",
    KILN_OBJECT_STORE_SECRET_ACCESS_KEY: "test",
  };
  const bucket = new ObjectStoreBucket(resolveConfig({}, env).objectStore!);
  await bucket.client.send(new CreateBucketCommand({ Bucket: bucket.name }));
  return {
    bucket,
    env,
    async drop() {
      await bucketBlobStore(bucket).clearLeftovers(Infinity);
      await bucket.removeAll("");
      await bucket.client.send(new DeleteBucketCommand({ Bucket: bucket.name }));
      bucket.client.destroy();
    },
  };
}

export interface SharedStores {
  /** KILN_* settings naming the stores, for every `kiln serve` process. */
  env: Record<string, string>;
  /**
   * A data folder for a node: its own when the nodes share a database and an object store (they
   * share no folder then, as on separate machines), else the one folder all of them share.
   */
  folder(): string;
  /** True when each node has a folder of its own. */
  separate: boolean;
  drop(): Promise<void>;
}

/** Stores for several `kiln serve` processes: the test database and bucket when the suite runs on them. */
export async function sharedStores(): Promise<SharedStores> {
  const database = testDatabaseUrl ? await freshDatabase() : undefined;
  const bucket = testObjectStoreEndpoint ? await freshBucket() : undefined;
  const separate = database !== undefined && bucket !== undefined;
  const shared = tempDir();
  return {
    env: { ...(database ? { KILN_DATABASE_URL: database.url } : {}), ...bucket?.env },
    folder: () => (separate ? tempDir() : shared),
    separate,
    async drop() {
      await Promise.allSettled([database?.drop(), bucket?.drop()]);
    },
  };
}

export async function startTestKiln(overrides: ConfigOverrides = {}, env: NodeJS.ProcessEnv = {}): Promise<TestKiln> {
  const dataDir = overrides.dataDir ?? tempDir();
  // A Kiln restarted on the same data directory keeps its database.
  let database = testDatabaseUrl && !overrides.databaseUrl ? databases.get(dataDir) : undefined;
  if (testDatabaseUrl && !overrides.databaseUrl && !database) {
    database = await freshDatabase();
    databases.set(dataDir, database);
  }
  let bucket = testObjectStoreEndpoint && !("KILN_OBJECT_STORE_BUCKET" in env) ? buckets.get(dataDir) : undefined;
  if (testObjectStoreEndpoint && !("KILN_OBJECT_STORE_BUCKET" in env) && !bucket) {
    bucket = await freshBucket();
    buckets.set(dataDir, bucket);
  }
  const config = resolveConfig(
    {
      port: 0,
      logLevel: process.env.KILN_TEST_LOG_LEVEL ?? "silent",
      databaseUrl: database?.url,
      // Instances run no guest unless a test asks for one (test/boot.test.ts).
      instanceBackend: env.KILN_INSTANCE_BACKEND ? undefined : "none",
      ...overrides,
      dataDir,
    },
    { ...bucket?.env, ...env },
  );
  const kiln = await startKiln(config);
  return {
    kiln,
    url: kiln.url,
    dataDir,
    ec2: ({ accessKeyId = "test", secretAccessKey = "test", region = "us-east-1" } = {}) =>
      new EC2Client({ endpoint: kiln.url, region, credentials: { accessKeyId, secretAccessKey }, maxAttempts: 1 }),
    ebs: ({ accessKeyId = "test", secretAccessKey = "test", region = "us-east-1" } = {}) =>
      new EBSClient({ endpoint: kiln.url, region, credentials: { accessKeyId, secretAccessKey }, maxAttempts: 1 }),
    ssm: ({ accessKeyId = "test", secretAccessKey = "test", region = "us-east-1" } = {}) =>
      new SSMClient({ endpoint: kiln.url, region, credentials: { accessKeyId, secretAccessKey }, maxAttempts: 1 }),
    s3: ({ accessKeyId = "test", secretAccessKey = "test", region = "us-east-1" } = {}) =>
      new S3Client({ endpoint: kiln.url, region, credentials: { accessKeyId, secretAccessKey }, forcePathStyle: true, maxAttempts: 1 }),
    admin: (path, options = {}) => signedRequest(kiln.url, { method: "POST", path, ...options }),
    async reset() {
      const response = await signedRequest(kiln.url, { method: "POST", path: "/_kiln/reset" });
      if (response.status !== 200) throw new Error(`reset answered ${response.status}: ${response.text}`);
    },
    async close() {
      await kiln.close();
    },
  };
}
