// Starts a real Kiln (HTTP server, SQLite store in a temporary data directory) for a test file.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EBSClient } from "@aws-sdk/client-ebs";
import { EC2Client } from "@aws-sdk/client-ec2";
import { S3Client } from "@aws-sdk/client-s3";
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
process.once("exit", () => {
  for (const dir of madeDirs) rmSync(dir, { recursive: true, force: true });
});

/** A temporary directory, removed when the test process exits. */
export function tempDir(prefix = "kiln-test-"): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  madeDirs.push(dir);
  return dir;
}

export async function startTestKiln(overrides: ConfigOverrides = {}, env: NodeJS.ProcessEnv = {}): Promise<TestKiln> {
  const dataDir = overrides.dataDir ?? tempDir();
  const config = resolveConfig({ port: 0, logLevel: "silent", ...overrides, dataDir }, env);
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
