#!/usr/bin/env node
// bench/store: CreateStoreImageTask and CreateRestoreImageTask of an 8 GiB image holding 2 GiB of
// data, side by side with `cp` of the same 2 GiB in the same run; Kiln's peak RSS in each phase;
// a 2 GiB multipart upload with the AWS CLI against Kiln and against moto_server, and its download
// from Kiln.
//
//   npm run bench:store                  # 2 GiB of data
//   node bench/store/run.mjs --data-gib 0.5 --skip-moto
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { createHash, randomFillSync } from "node:crypto";
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { CompleteSnapshotCommand, EBSClient, PutSnapshotBlockCommand, StartSnapshotCommand } from "@aws-sdk/client-ebs";
import {
  CreateRestoreImageTaskCommand,
  CreateStoreImageTaskCommand,
  DescribeImagesCommand,
  DescribeStoreImageTasksCommand,
  EC2Client,
  RegisterImageCommand,
} from "@aws-sdk/client-ec2";
import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3";
import { awsCli, currentRss, peakRss, resetPeak, seconds } from "../lib/measure.mjs";
import { onExit, startKiln, startMoto } from "../lib/servers.mjs";

const { values: args } = parseArgs({ options: { "data-gib": { type: "string", default: "2" }, "skip-moto": { type: "boolean", default: false } } });
const BLOCK = 512 * 1024;
const DATA_BLOCKS = Math.round(Number(args["data-gib"]) * 2048);
const IMAGE_GIB = 8;
const credentials = { accessKeyId: "test", secretAccessKey: "test" };
const MiB = 1024 * 1024;
const run = promisify(execFile);

const work = mkdtempSync(join(tmpdir(), "kiln-bench-store-"));
onExit(() => rmSync(work, { recursive: true, force: true }));

/** Resets the peak to the current RSS, and says what that is. */
function startPhase(pid, phase) {
  resetPeak(pid);
  console.log(`${phase}: Kiln's RSS at the start ${currentRss(pid).toFixed(0)} MiB`);
}

/** The data blocks: spread over the 8 GiB volume, distinct (no block repeats another). */
const blockIndex = (i) => Math.floor((i * IMAGE_GIB * 2048) / DATA_BLOCKS);
function blockData(i) {
  const data = randomFillSync(Buffer.alloc(BLOCK));
  data.writeUInt32BE(i, 0);
  return data;
}

async function pool(n, width, task) {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < n) await task(next++);
    }),
  );
}

async function until(probe) {
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function main() {
  const kiln = await startKiln(join(work, "kiln"));
  const endpoint = `http://127.0.0.1:${kiln.port}`;
  const ec2 = new EC2Client({ endpoint, region: "us-east-1", credentials, maxAttempts: 1 });
  const ebs = new EBSClient({ endpoint, region: "us-east-1", credentials, maxAttempts: 1 });
  const s3 = new S3Client({ endpoint, region: "us-east-1", credentials, forcePathStyle: true, maxAttempts: 1 });

  // The same data twice: as a file for cp, and as a snapshot (EBS direct) for Kiln.
  console.log(`Writing ${(DATA_BLOCKS * BLOCK) / 2 ** 30} GiB of data into an ${IMAGE_GIB} GiB snapshot and into a file…`);
  const file = join(work, "data.raw");
  const fd = openSync(file, "w");
  const { SnapshotId } = await ebs.send(new StartSnapshotCommand({ VolumeSize: IMAGE_GIB }));
  await pool(DATA_BLOCKS, 4, async (i) => {
    const data = blockData(i);
    writeSync(fd, data, 0, BLOCK, i * BLOCK);
    await ebs.send(
      new PutSnapshotBlockCommand({
        SnapshotId,
        BlockIndex: blockIndex(i),
        BlockData: data,
        DataLength: BLOCK,
        Checksum: createHash("sha256").update(data).digest("base64"),
        ChecksumAlgorithm: "SHA256",
      }),
    );
  });
  closeSync(fd);
  await ebs.send(new CompleteSnapshotCommand({ SnapshotId, ChangedBlocksCount: DATA_BLOCKS }));
  const { ImageId } = await ec2.send(
    new RegisterImageCommand({
      Name: "bench-store",
      RootDeviceName: "/dev/xvda",
      VirtualizationType: "hvm",
      Architecture: "x86_64",
      BlockDeviceMappings: [{ DeviceName: "/dev/xvda", Ebs: { SnapshotId } }],
    }),
  );
  await s3.send(new CreateBucketCommand({ Bucket: "bench" }));
  const dataMiB = (DATA_BLOCKS * BLOCK) / MiB;

  // cp of the same bytes, and cp followed by a sync of the file system (Kiln syncs what it writes).
  // Run asynchronously: a blocked event loop would miss Kiln closing idle keep-alive sockets.
  await run("sync");
  let start = performance.now();
  await run("cp", [file, join(work, "copy.raw")]);
  const cpSeconds = seconds(start);
  await run("sync", ["-f", join(work, "copy.raw")]);
  const cpSyncSeconds = seconds(start);
  rmSync(join(work, "copy.raw"));
  await run("sync");

  startPhase(kiln.pid, "store");
  start = performance.now();
  await ec2.send(new CreateStoreImageTaskCommand({ ImageId, Bucket: "bench" }));
  const task = await until(async () => {
    const t = (await ec2.send(new DescribeStoreImageTasksCommand({ ImageIds: [ImageId] }))).StoreImageTaskResults?.[0];
    return t && t.StoreTaskState !== "InProgress" ? t : undefined;
  });
  const storeSeconds = seconds(start);
  const storeRss = peakRss(kiln.pid);
  if (task.StoreTaskState !== "Completed") throw new Error(`store failed: ${task.StoreTaskFailureReason}`);

  await run("sync");
  startPhase(kiln.pid, "restore");
  start = performance.now();
  const restored = await ec2.send(new CreateRestoreImageTaskCommand({ Bucket: "bench", ObjectKey: `${ImageId}.bin`, Name: "bench-restored" }));
  const image = await until(async () => {
    const found = (await ec2.send(new DescribeImagesCommand({ ImageIds: [restored.ImageId] }))).Images?.[0];
    return found && found.State !== "pending" ? found : undefined;
  });
  const restoreSeconds = seconds(start);
  const restoreRss = peakRss(kiln.pid);
  if (image.State !== "available") throw new Error(`restore failed: ${image.StateReason?.Message}`);

  const rate = (s) => `${(dataMiB / s).toFixed(0)} MB/s`;
  console.log(`\nStore and restore: ${IMAGE_GIB} GiB image, ${dataMiB} MiB of data`);
  console.table([
    { operation: "cp (2 GiB file)", seconds: cpSeconds.toFixed(2), rate: rate(cpSeconds), "peak RSS": "" },
    { operation: "cp + sync -f", seconds: cpSyncSeconds.toFixed(2), rate: rate(cpSyncSeconds), "peak RSS": "" },
    { operation: "CreateStoreImageTask", seconds: storeSeconds.toFixed(2), rate: rate(storeSeconds), "peak RSS": `${storeRss.toFixed(0)} MiB` },
    { operation: "CreateRestoreImageTask", seconds: restoreSeconds.toFixed(2), rate: rate(restoreSeconds), "peak RSS": `${restoreRss.toFixed(0)} MiB` },
  ]);
  console.log(
    `store ÷ cp: ${(storeSeconds / cpSeconds).toFixed(2)}x   store ÷ (cp + sync): ${(storeSeconds / cpSyncSeconds).toFixed(2)}x   (target: within 2x)`,
  );
  console.log(`restore ÷ cp: ${(restoreSeconds / cpSeconds).toFixed(2)}x   restore ÷ (cp + sync): ${(restoreSeconds / cpSyncSeconds).toFixed(2)}x`);
  console.log(`peak RSS: store ${storeRss.toFixed(0)} MiB, restore ${restoreRss.toFixed(0)} MiB (target: under 256 MiB)`);

  // Multipart upload of the file with the AWS CLI: Kiln, then moto_server.
  const uploads = [];
  startPhase(kiln.pid, "upload");
  await awsCli(kiln.port, ["s3", "mb", "s3://upload"]);
  start = performance.now();
  await awsCli(kiln.port, ["s3", "cp", "--only-show-errors", file, "s3://upload/data.raw"]);
  uploads.push({ server: "Kiln", seconds: seconds(start), rss: peakRss(kiln.pid) });
  startPhase(kiln.pid, "download");
  start = performance.now();
  await awsCli(kiln.port, ["s3", "cp", "--only-show-errors", "s3://upload/data.raw", join(work, "back.raw")]);
  const download = { seconds: seconds(start), rss: peakRss(kiln.pid) };
  rmSync(join(work, "back.raw"));
  const moto = args["skip-moto"] ? undefined : await startMoto();
  if (moto) {
    await awsCli(moto.port, ["s3", "mb", "s3://upload"]);
    start = performance.now();
    await awsCli(moto.port, ["s3", "cp", "--only-show-errors", file, "s3://upload/data.raw"]);
    uploads.push({ server: "moto_server", seconds: seconds(start), rss: peakRss(moto.pid) });
  }
  console.log(`\nMultipart upload of ${dataMiB} MiB with the AWS CLI (aws s3 cp)`);
  console.table(uploads.map((u) => ({ server: u.server, seconds: u.seconds.toFixed(2), rate: rate(u.seconds), "peak RSS": `${u.rss.toFixed(0)} MiB` })));
  if (uploads.length === 2) console.log(`Kiln ÷ moto_server throughput: ${(uploads[1].seconds / uploads[0].seconds).toFixed(2)}x`);
  console.log(
    `Download of the same object from Kiln (aws s3 cp): ${download.seconds.toFixed(2)} s, ${rate(download.seconds)}, Kiln's peak RSS ${download.rss.toFixed(0)} MiB`,
  );
  process.exit(0);
}

main().catch((error) => {
  console.error(error);
  // A moment for a server that died to report why.
  setTimeout(() => process.exit(1), 500);
});
