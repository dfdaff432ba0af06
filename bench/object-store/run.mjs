#!/usr/bin/env node
// bench/object-store: what keeping Kiln's data in an S3-compatible object store costs. moto_server
// is the store. Side by side in one run: `aws s3 cp` of one file straight to the store (what a
// user would otherwise do) and to a Kiln whose data lives in that store, and to a Kiln on its
// data folder; the download back; and ImportSnapshot of the uploaded disk on both Kilns, with
// each Kiln's peak RSS.
//
//   npm run bench:object-store              # 512 MiB
//   node bench/object-store/run.mjs --mib 128
import { randomFillSync } from "node:crypto";
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { DescribeImportSnapshotTasksCommand, EC2Client, ImportSnapshotCommand } from "@aws-sdk/client-ec2";
import { awsCli, peakRss, resetPeak, seconds } from "../lib/measure.mjs";
import { onExit, startKiln, startMoto } from "../lib/servers.mjs";

const { values: args } = parseArgs({ options: { mib: { type: "string", default: "512" } } });
const MiB = 1024 * 1024;
const dataMiB = Number(args.mib);
const credentials = { accessKeyId: "test", secretAccessKey: "test" };

const work = mkdtempSync(join(tmpdir(), "kiln-bench-object-store-"));
onExit(() => rmSync(work, { recursive: true, force: true }));

const rate = (s) => `${(dataMiB / s).toFixed(0)} MiB/s`;

async function timed(work) {
  const start = performance.now();
  await work();
  return seconds(start);
}

async function importSnapshot(port) {
  const ec2 = new EC2Client({ endpoint: `http://127.0.0.1:${port}`, region: "us-east-1", credentials, maxAttempts: 1 });
  const start = performance.now();
  const { ImportTaskId } = await ec2.send(
    new ImportSnapshotCommand({ DiskContainer: { Format: "RAW", UserBucket: { S3Bucket: "disks", S3Key: "disk.raw" } } }),
  );
  for (;;) {
    const task = (await ec2.send(new DescribeImportSnapshotTasksCommand({ ImportTaskIds: [ImportTaskId] }))).ImportSnapshotTasks[0].SnapshotTaskDetail;
    if (task.Status === "completed") return seconds(start);
    if (task.Status !== "active") throw new Error(`import ${ImportTaskId}: ${task.Status} ${task.StatusMessage}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function main() {
  // A disk of distinct, incompressible blocks (nothing for de-duplication to save).
  const file = join(work, "disk.raw");
  const fd = openSync(file, "w");
  const piece = Buffer.alloc(MiB);
  for (let i = 0; i < dataMiB; i++) writeSync(fd, randomFillSync(piece));
  closeSync(fd);

  const moto = await startMoto();
  if (!moto) throw new Error("bench/object-store needs moto_server on PATH");
  await awsCli(moto.port, ["s3", "mb", "s3://kiln-data"]);
  await awsCli(moto.port, ["s3", "mb", "s3://disks"]);
  const onStore = await startKiln(join(work, "kiln-store"), {
    KILN_OBJECT_STORE_BUCKET: "kiln-data",
    KILN_OBJECT_STORE_ENDPOINT: `http://127.0.0.1:${moto.port}`,
    KILN_OBJECT_STORE_ACCESS_KEY_ID: "test",
    KILN_OBJECT_STORE_SECRET_ACCESS_KEY: "test",
  });
  const onFolder = await startKiln(join(work, "kiln-folder"));
  for (const kiln of [onStore, onFolder]) await awsCli(kiln.port, ["s3", "mb", "s3://disks"]);

  const rows = [];
  const upload = (port) => awsCli(port, ["s3", "cp", "--only-show-errors", file, "s3://disks/disk.raw"]);
  const download = (port) => awsCli(port, ["s3", "cp", "--only-show-errors", "s3://disks/disk.raw", join(work, "back.raw")]);

  console.log(`${dataMiB} MiB, aws s3 cp (8 MiB parts), moto_server as the object store\n`);
  const direct = { up: await timed(() => upload(moto.port)), down: await timed(() => download(moto.port)) };
  rows.push(["moto_server itself", direct.up, direct.down, undefined, ""]);
  for (const [name, kiln] of [
    ["Kiln, data in moto_server", onStore],
    ["Kiln, data in its folder", onFolder],
  ]) {
    resetPeak(kiln.pid);
    const up = await timed(() => upload(kiln.port));
    const down = await timed(() => download(kiln.port));
    const imported = await importSnapshot(kiln.port);
    rows.push([name, up, down, imported, `${peakRss(kiln.pid).toFixed(0)} MiB`]);
  }

  console.log("| Where | Upload | Download | ImportSnapshot (RAW) | Kiln's peak RSS |");
  console.log("| --- | --- | --- | --- | --- |");
  for (const [name, up, down, imported, rss] of rows) {
    console.log(
      `| ${name} | ${up.toFixed(2)} s (${rate(up)}) | ${down.toFixed(2)} s (${rate(down)}) | ${imported === undefined ? "" : `${imported.toFixed(2)} s (${rate(imported)})`} | ${rss} |`,
    );
  }
  const [store, folder] = [rows[1], rows[2]];
  console.log(
    `\nKiln on moto_server ÷ moto_server alone: upload ${(store[1] / direct.up).toFixed(2)}x, download ${(store[2] / direct.down).toFixed(2)}x the time`,
  );
  console.log(
    `Kiln on moto_server ÷ Kiln on its folder: upload ${(store[1] / folder[1]).toFixed(2)}x, download ${(store[2] / folder[2]).toFixed(2)}x, import ${(store[3] / folder[3]).toFixed(2)}x the time`,
  );
  await Promise.all([onStore.stop(), onFolder.stop()]);
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
