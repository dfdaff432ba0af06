#!/usr/bin/env node
// bench/import: ImportImage of a 2 GiB disk (about half data, half zeros: a GPT disk with an EFI
// partition and an ext4 root holding the OS files and a 1 GiB payload) from an object already in
// Kiln's S3 to a completed task, for streamOptimized VMDK, dynamic VHD, VHDX and QCOW2; side by
// side with `qemu-img convert -O raw` of the same file in the same run; Kiln's peak RSS.
//
//   npm run bench:import                     # 2 GiB disks
//   node bench/import/run.mjs --disk-gib 1 --formats vmdk-stream,qcow2 --runs 1
import { execFile } from "node:child_process";
import { createReadStream, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs, promisify } from "node:util";
import { DescribeImportImageTasksCommand, EC2Client, ImportImageCommand } from "@aws-sdk/client-ec2";
import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { convertDisk, makeLinuxDisk } from "../../dist/test/helpers/disks.js";
import { peakRss, resetPeak, seconds } from "../lib/measure.mjs";
import { onExit, startKiln } from "../lib/servers.mjs";

const { values: args } = parseArgs({
  options: {
    "disk-gib": { type: "string", default: "2" },
    formats: { type: "string", default: "vmdk-stream,vhd-dynamic,vhdx,qcow2" },
    runs: { type: "string", default: "3" },
  },
});
const DISK_MIB = Math.round(Number(args["disk-gib"]) * 1024);
const FORMATS = args.formats.split(",");
const RUNS = Number(args.runs);
const QEMU_FORMAT = { "vmdk-stream": "vmdk", "vmdk-sparse": "vmdk", "vhd-dynamic": "vpc", "vhd-fixed": "vpc", vhdx: "vhdx", qcow2: "qcow2", raw: "raw" };
const DECLARED = { "vmdk-stream": "VMDK", "vmdk-sparse": "VMDK", "vhd-dynamic": "VHD", "vhd-fixed": "VHD", vhdx: "VHDX", qcow2: "QCOW2", raw: "RAW" };
const credentials = { accessKeyId: "test", secretAccessKey: "test" };
const exec = promisify(execFile);

const work = mkdtempSync(join(tmpdir(), "kiln-bench-import-"));
onExit(() => rmSync(work, { recursive: true, force: true }));

const mib = (bytes) => (bytes / 1024 / 1024).toFixed(0);

/** Writes every dirty page out, so no run pays for the previous one's writeback. */
const syncDisks = () => exec("sync");
const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

async function timeQemu(format, file) {
  const out = join(work, "qemu-out.raw");
  await syncDisks();
  const start = performance.now();
  await exec("qemu-img", ["convert", "-f", QEMU_FORMAT[format], "-O", "raw", file, out]);
  const convert = seconds(start);
  // Kiln's task completes with every block durable; qemu-img's output is durable after a sync.
  await syncDisks();
  const durable = seconds(start);
  rmSync(out, { force: true });
  return { convert, durable };
}

/**
 * One ImportImage on a fresh Kiln (an empty data folder, the file uploaded anew): a second import
 * of the same disk into the same Kiln would find every block already stored and write nothing.
 */
async function timeKiln(format, file, run) {
  const kiln = await startKiln(join(work, `kiln-${format}-${run}`));
  const endpoint = `http://127.0.0.1:${kiln.port}`;
  const ec2 = new EC2Client({ endpoint, region: "us-east-1", credentials, maxAttempts: 1 });
  const s3 = new S3Client({ endpoint, region: "us-east-1", credentials, forcePathStyle: true, maxAttempts: 1 });
  try {
    await s3.send(new CreateBucketCommand({ Bucket: "bench" }));
    await new Upload({ client: s3, params: { Bucket: "bench", Key: format, Body: createReadStream(file) }, partSize: 64 * 1024 * 1024, queueSize: 2 }).done();
    await syncDisks();
    resetPeak(kiln.pid);
    const start = performance.now();
    const { ImportTaskId } = await ec2.send(
      new ImportImageCommand({ DiskContainers: [{ Format: DECLARED[format], UserBucket: { S3Bucket: "bench", S3Key: format } }] }),
    );
    let task;
    for (;;) {
      task = (await ec2.send(new DescribeImportImageTasksCommand({ ImportTaskIds: [ImportTaskId] }))).ImportImageTasks[0];
      if (task.Status === "completed" || task.Status === "deleted") break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const time = seconds(start);
    if (task.Status !== "completed") throw new Error(`${format}: ${task.StatusMessage}`);
    return { time, rss: peakRss(kiln.pid), found: `${task.Platform}, ${task.BootMode}` };
  } finally {
    ec2.destroy();
    s3.destroy();
    await kiln.stop();
    rmSync(join(work, `kiln-${format}-${run}`), { recursive: true, force: true });
  }
}

async function main() {
  console.log(`Making a ${DISK_MIB} MiB GPT disk (EFI partition, ext4 root with the OS files and ${Math.round(DISK_MIB / 2)} MiB of data)…`);
  const raw = await makeLinuxDisk(work, { sizeMiB: DISK_MIB, extraMiB: Math.round(DISK_MIB / 2) });

  const rows = [];
  for (const format of FORMATS) {
    const file = await convertDisk(raw, format);
    const size = statSync(file).size;
    const runs = [];
    for (let run = 0; run < RUNS; run++) {
      const qemu = await timeQemu(format, file);
      const kiln = await timeKiln(format, file, run);
      runs.push({ ...qemu, kiln: kiln.time, rss: kiln.rss });
      console.log(
        `${format.padEnd(12)} run ${run + 1}: file ${mib(size)} MiB   qemu-img convert -O raw ${qemu.convert.toFixed(2)} s (${qemu.durable.toFixed(2)} s with sync)   ` +
          `Kiln ImportImage ${kiln.time.toFixed(2)} s   peak RSS ${kiln.rss.toFixed(0)} MiB   (${kiln.found})`,
      );
    }
    rows.push({
      format,
      fileMiB: mib(size),
      qemu: median(runs.map((r) => r.convert)),
      durable: median(runs.map((r) => r.durable)),
      kiln: median(runs.map((r) => r.kiln)),
      rss: Math.max(...runs.map((r) => r.rss)),
    });
    rmSync(file, { force: true });
  }
  console.log(`\nMedians of ${RUNS} run(s); peak RSS is the largest seen.`);
  console.log("format        file (MiB)   qemu-img (s)   qemu-img + sync (s)   Kiln (s)   qemu/Kiln   (qemu+sync)/Kiln   Kiln peak RSS (MiB)");
  for (const r of rows) {
    console.log(
      `${r.format.padEnd(12)}  ${r.fileMiB.padStart(10)}   ${r.qemu.toFixed(2).padStart(12)}   ${r.durable.toFixed(2).padStart(19)}   ${r.kiln.toFixed(2).padStart(8)}   ` +
        `${(r.qemu / r.kiln).toFixed(2).padStart(8)}x   ${(r.durable / r.kiln).toFixed(2).padStart(15)}x   ${r.rss.toFixed(0).padStart(8)}`,
    );
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
