// Starts a real Kiln (HTTP server, SQLite store in a temporary data directory) for a test file.
// With KILN_TEST_DATABASE_URL set (a postgres:// URL of a role that may create databases), each
// Kiln's metadata goes into a fresh PostgreSQL database instead, dropped when the Kiln closes.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EBSClient } from "@aws-sdk/client-ebs";
import { EC2Client } from "@aws-sdk/client-ec2";
import { S3Client } from "@aws-sdk/client-s3";
import pg from "pg";
import { startKiln, type RunningKiln } from "../../src/app.js";
import { resolveConfig, type ConfigOverrides } from "../../src/config.js";

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
  reset(): Promise<void>;
  close(): Promise<void>;
}

const madeDirs: string[] = [];
const databases = new Map<string, { url: string; drop(): Promise<void> }>();
// Test databases go when the test file is done (its Kilns closed in its after hooks).
process.on("beforeExit", () => {
  if (databases.size === 0) return;
  const dropping = [...databases.values()];
  databases.clear();
  void Promise.allSettled(dropping.map((database) => database.drop()));
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

export async function startTestKiln(overrides: ConfigOverrides = {}, env: NodeJS.ProcessEnv = {}): Promise<TestKiln> {
  const dataDir = overrides.dataDir ?? tempDir();
  // A Kiln restarted on the same data directory keeps its database.
  let database = testDatabaseUrl && !overrides.databaseUrl ? databases.get(dataDir) : undefined;
  if (testDatabaseUrl && !overrides.databaseUrl && !database) {
    database = await freshDatabase();
    databases.set(dataDir, database);
  }
  const config = resolveConfig({ port: 0, logLevel: process.env.KILN_TEST_LOG_LEVEL ?? "silent", databaseUrl: database?.url, ...overrides, dataDir }, env);
  const kiln = await startKiln(config);
  return {
    kiln,
    url: kiln.url,
    dataDir,
    ec2: ({ accessKeyId = "test", secretAccessKey = "test", region = "us-east-1" } = {}) =>
      new EC2Client({ endpoint: kiln.url, region, credentials: { accessKeyId, secretAccessKey }, maxAttempts: 1 }),
    ebs: ({ accessKeyId = "test", secretAccessKey = "test", region = "us-east-1" } = {}) =>
      new EBSClient({ endpoint: kiln.url, region, credentials: { accessKeyId, secretAccessKey }, maxAttempts: 1 }),
    s3: ({ accessKeyId = "test", secretAccessKey = "test", region = "us-east-1" } = {}) =>
      new S3Client({ endpoint: kiln.url, region, credentials: { accessKeyId, secretAccessKey }, forcePathStyle: true, maxAttempts: 1 }),
    async reset() {
      const response = await fetch(`${kiln.url}/_kiln/reset`, { method: "POST" });
      if (response.status !== 200) throw new Error(`reset answered ${response.status}`);
    },
    async close() {
      await kiln.close();
    },
  };
}
