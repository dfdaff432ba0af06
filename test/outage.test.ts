// A store out of reach: requests answer ServiceUnavailable (503, in each protocol's
// own form) rather than an internal error or a wrong result, health says which dependency is
// down, and Kiln recovers by itself once the store is back. On PostgreSQL the connection is cut
// at a TCP proxy between Kiln and the server; on SQLite another process holds the write lock
// past Kiln's busy timeout. The object store (moto_server) is cut at a TCP proxy too.
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import {
  CreateVolumeCommand,
  DescribeImportSnapshotTasksCommand,
  DescribeSnapshotsCommand,
  DescribeVolumesCommand,
  ImportSnapshotCommand,
} from "@aws-sdk/client-ec2";
import { ListSnapshotBlocksCommand, PutSnapshotBlockCommand, StartSnapshotCommand } from "@aws-sdk/client-ebs";
import { CreateBucketCommand, GetObjectCommand, ListBucketsCommand, ListObjectsV2Command, PutObjectCommand } from "@aws-sdk/client-s3";
import { assertBlocksHold, BLOCK, readSnapshot, writeSnapshot } from "./helpers/data.js";
import { makeDataDisk } from "./helpers/disks.js";
import { freshBucket, freshDatabase, startTestKiln, testDatabaseUrl, type TestKiln } from "./helpers/kiln.js";
import { startMotoServer } from "./helpers/moto.js";
import { cuttableProxy } from "./helpers/proxy.js";
import { scratch } from "./helpers/tools.js";

interface Failure {
  name: string;
  $metadata: { httpStatusCode?: number };
}
const failureOf = (promise: Promise<unknown>) =>
  promise.then(
    () => assert.fail("the request succeeded"),
    (error: Failure) => error,
  );

/** `promise`, or a failure naming `what` once `ms` have passed without it settling. */
async function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

async function health(
  kiln: TestKiln,
): Promise<{ code: number; body: { status: string; dependencies: { metadata: { status: string }; data: { status: string } } } }> {
  const response = await fetch(`${kiln.url}/_kiln/health`);
  return { code: response.status, body: (await response.json()) as never };
}

describe("the metadata store out of reach", () => {
  if (testDatabaseUrl) {
    it("answers ServiceUnavailable while PostgreSQL cannot be reached, and serves again once it can", async () => {
      const database = await freshDatabase();
      const url = new URL(database.url);
      const proxy = await cuttableProxy({ host: url.hostname, port: Number(url.port || 5432) });
      url.host = `127.0.0.1:${proxy.port}`;
      const kiln = await startTestKiln({ databaseUrl: url.toString() });
      try {
        const ec2 = kiln.ec2();
        await ec2.send(new DescribeVolumesCommand({}));
        assert.equal((await health(kiln)).code, 200);

        await proxy.cut();
        const ec2Failure = await failureOf(ec2.send(new DescribeVolumesCommand({})));
        assert.equal(ec2Failure.name, "ServiceUnavailable");
        assert.equal(ec2Failure.$metadata.httpStatusCode, 503);
        const ebsFailure = await failureOf(kiln.ebs().send(new ListSnapshotBlocksCommand({ SnapshotId: "snap-0123456789abcdef0" })));
        assert.equal(ebsFailure.name, "ServiceUnavailableException");
        assert.equal(ebsFailure.$metadata.httpStatusCode, 503);
        const s3Failure = await failureOf(kiln.s3().send(new ListBucketsCommand({})));
        assert.equal(s3Failure.name, "ServiceUnavailable");
        assert.equal(s3Failure.$metadata.httpStatusCode, 503);
        const down = await health(kiln);
        assert.equal(down.code, 503);
        assert.equal(down.body.status, "unavailable");
        assert.equal(down.body.dependencies.metadata.status, "unavailable");
        assert.equal((await fetch(`${kiln.url}/_kiln/live`)).status, 200, "liveness asks no store");

        // Back: no restart, the next request simply works.
        await proxy.restore();
        const { VolumeId } = await ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 1 }));
        assert.deepEqual(
          (await ec2.send(new DescribeVolumesCommand({}))).Volumes!.map((v) => v.VolumeId),
          [VolumeId],
        );
        assert.equal((await health(kiln)).code, 200);
      } finally {
        await kiln.close();
        await proxy.close();
        await database.drop();
      }
    });
  } else {
    it("answers ServiceUnavailable while another process holds SQLite's write lock, and serves again once it lets go", async () => {
      const kiln = await startTestKiln();
      let holder: ChildProcess | undefined;
      try {
        const ec2 = kiln.ec2();
        await ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 1 }));
        // Another process takes the write lock and keeps it until it is killed.
        const script = `const db = new (require("better-sqlite3"))(process.argv[1]); db.exec("begin immediate"); console.log("locked"); setInterval(() => {}, 1000);`;
        holder = spawn(process.execPath, ["-e", script, join(kiln.dataDir, "kiln.sqlite3")], { cwd: process.cwd(), stdio: ["ignore", "pipe", "inherit"] });
        await within(
          30_000,
          "the lock holder to take SQLite's write lock",
          new Promise<void>((resolve, reject) => {
            holder!.stdout!.once("data", () => resolve());
            holder!.once("exit", (code) => reject(new Error(`the lock holder exited with ${code} before it took the lock`)));
          }),
        );

        // A write waits out Kiln's busy timeout (5 s), then is answered, not failed as Kiln's fault.
        const failure = await failureOf(ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 1 })));
        assert.equal(failure.name, "ServiceUnavailable");
        assert.equal(failure.$metadata.httpStatusCode, 503);
        // Reads go on: SQLite's WAL keeps readers apart from the lock.
        assert.equal((await ec2.send(new DescribeVolumesCommand({}))).Volumes!.length, 1);

        holder.kill();
        await within(30_000, "the lock holder to exit", new Promise((resolve) => holder!.once("exit", resolve)));
        await ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 1 }));
        assert.equal((await ec2.send(new DescribeVolumesCommand({}))).Volumes!.length, 2);
        assert.equal((await health(kiln)).code, 200);
      } finally {
        holder?.kill();
        await kiln.close();
      }
    });
  }
});

describe("the object store out of reach", () => {
  it("answers ServiceUnavailable for what needs the store, keeps serving what does not, and recovers by itself", async () => {
    const moto = await startMotoServer();
    const proxy = await cuttableProxy({ host: "127.0.0.1", port: Number(new URL(moto.endpoint).port) });
    const made = await freshBucket(moto.endpoint);
    const kiln = await startTestKiln({}, { ...made.env, KILN_OBJECT_STORE_ENDPOINT: `http://127.0.0.1:${proxy.port}` });
    try {
      const s3 = kiln.s3();
      const ec2 = kiln.ec2();
      await s3.send(new CreateBucketCommand({ Bucket: "kept" }));
      await s3.send(new PutObjectCommand({ Bucket: "kept", Key: "before", Body: "bytes from before" }));
      const blocks = new Map([[0, randomBytes(BLOCK)]]);
      const snapshotId = await writeSnapshot(kiln, blocks);

      await proxy.cut();
      const putFailure = await failureOf(s3.send(new PutObjectCommand({ Bucket: "kept", Key: "during", Body: "lost?" })));
      assert.equal(putFailure.name, "ServiceUnavailable");
      assert.equal(putFailure.$metadata.httpStatusCode, 503);
      const getFailure = await failureOf(s3.send(new GetObjectCommand({ Bucket: "kept", Key: "before" })));
      assert.equal(getFailure.$metadata.httpStatusCode, 503);
      const block = randomBytes(BLOCK);
      const started = await kiln.ebs().send(new StartSnapshotCommand({ VolumeSize: 1 }));
      const checksum = createHash("sha256").update(block).digest("base64");
      const ebsFailure = await failureOf(
        kiln.ebs().send(
          new PutSnapshotBlockCommand({
            SnapshotId: started.SnapshotId,
            BlockIndex: 0,
            BlockData: block,
            DataLength: BLOCK,
            Checksum: checksum,
            ChecksumAlgorithm: "SHA256",
          }),
        ),
      );
      assert.equal(ebsFailure.name, "ServiceUnavailableException");
      assert.equal(ebsFailure.$metadata.httpStatusCode, 503);
      // The metadata is still there: what does not touch the data is served.
      assert.equal((await ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [snapshotId] }))).Snapshots![0]!.State, "completed");
      const down = await health(kiln);
      assert.equal(down.code, 503);
      assert.equal(down.body.dependencies.data.status, "unavailable");
      assert.equal(down.body.dependencies.metadata.status, "available");
      // Liveness asks no store: the server itself runs, and nothing should restart it.
      assert.equal((await fetch(`${kiln.url}/_kiln/live`)).status, 200);

      await proxy.restore();
      await s3.send(new PutObjectCommand({ Bucket: "kept", Key: "after", Body: "bytes from after" }));
      const keys = (await s3.send(new ListObjectsV2Command({ Bucket: "kept" }))).Contents!.map((o) => o.Key);
      assert.deepEqual(keys, ["after", "before"], "the write refused during the outage left nothing");
      assert.equal(await (await s3.send(new GetObjectCommand({ Bucket: "kept", Key: "before" }))).Body!.transformToString(), "bytes from before");
      assert.deepEqual(await readSnapshot(kiln, snapshotId), blocks);
      assert.equal((await health(kiln)).code, 200);
    } finally {
      await kiln.close();
      await proxy.close();
      await made.drop().catch(() => {});
      await moto.stop();
    }
  });

  it("pauses an import while the store is away, and finishes it with every byte once it is back", async () => {
    const moto = await startMotoServer();
    const proxy = await cuttableProxy({ host: "127.0.0.1", port: Number(new URL(moto.endpoint).port) });
    const made = await freshBucket(moto.endpoint);
    // A short lease: a paused task is taken again at each heartbeat (a third of it).
    const kiln = await startTestKiln({}, { ...made.env, KILN_OBJECT_STORE_ENDPOINT: `http://127.0.0.1:${proxy.port}`, KILN_TASK_LEASE_MS: "1500" });
    try {
      const disk = await makeDataDisk(scratch());
      const s3 = kiln.s3();
      await s3.send(new CreateBucketCommand({ Bucket: "disks" }));
      await s3.send(new PutObjectCommand({ Bucket: "disks", Key: "data.raw", Body: readFileSync(disk) }));

      await proxy.cut();
      const ec2 = kiln.ec2();
      const { ImportTaskId } = await ec2.send(
        new ImportSnapshotCommand({ DiskContainer: { Format: "RAW", UserBucket: { S3Bucket: "disks", S3Key: "data.raw" } } }),
      );
      const detail = async () =>
        (await ec2.send(new DescribeImportSnapshotTasksCommand({ ImportTaskIds: [ImportTaskId!] }))).ImportSnapshotTasks![0]!.SnapshotTaskDetail!;
      // Long enough for several tries, each failing after the client's own retries.
      await new Promise((resolve) => setTimeout(resolve, 6000));
      assert.equal((await detail()).Status, "active", "the import waits rather than failing");

      await proxy.restore();
      let task = await detail();
      const deadline = Date.now() + 60_000;
      while (task.Status === "active" && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        task = await detail();
      }
      assert.equal(task.Status, "completed", task.StatusMessage);
      assertBlocksHold(await readSnapshot(kiln, task.SnapshotId!), readFileSync(disk), task.SnapshotId!);
    } finally {
      await kiln.close();
      await proxy.close();
      await made.drop().catch(() => {});
      await moto.stop();
    }
  });
});
