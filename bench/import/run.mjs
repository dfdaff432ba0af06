#!/usr/bin/env node
// bench/import: ImportImage of a 2 GiB disk (about half data, half zeros: a GPT disk with an EFI
// partition and an ext4 root holding the OS files and a 1 GiB payload) from an object already in
// Kiln's S3 to a completed task, for streamOptimized VMDK, dynamic VHD, VHDX and QCOW2; side by
// side with `qemu-img convert -O raw` of the same file in the same run; Kiln's peak RSS.
//
//   npm run bench:import                     # 2 GiB disks
//   node bench/import/run.mjs --disk-gib 1 --formats vmdk-stream,qcow2
import { execFile } from "node:child_process";
import { createReadStream, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs, promisify } from "node:util";
import { DescribeImportImageTasksCommand, EC2Client, ImportImageCommand } from "@aws-sdk/client-ec2";
import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { convertDisk, makeLinuxDisk } from "../../dist/test/helpers/disks.js";
import { onExit, startKiln } from "../lib/servers.mjs";

const { values: args } = parseArgs({
  options: {
    "disk-gib": { type: "string", default: "2" },
    formats: { type: "string", default: "vmdk-stream,vhd-dynamic,vhdx,qcow2" },
    runs: { type: "string", default: "1" },
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

const peakRss = (pid) => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))[1]) / 1024;
const resetPeak = (pid) => writeFileSync(`/proc/${pid}/clear_refs`, "5");
const seconds = (start) => (performance.now() - start) / 1000;
const mib = (bytes) => (bytes / 1024 / 1024).toFixed(0);

async function main() {
  console.log(`Making a ${DISK_MIB} MiB GPT disk (EFI partition, ext4 root with the OS files and ${Math.round(DISK_MIB / 2)} MiB of data)…`);
  const raw = await makeLinuxDisk(work, { sizeMiB: DISK_MIB, extraMiB: Math.round(DISK_MIB / 2) });

  const kiln = await startKiln(join(work, "kiln"));
  const endpoint = `http://127.0.0.1:${kiln.port}`;
  const ec2 = new EC2Client({ endpoint, region: "us-east-1", credentials, maxAttempts: 1 });
  const s3 = new S3Client({ endpoint, region: "us-east-1", credentials, forcePathStyle: true, maxAttempts: 1 });
  await s3.send(new CreateBucketCommand({ Bucket: "bench" }));

  const rows = [];
  for (const format of FORMATS) {
    const file = await convertDisk(raw, format);
    const size = statSync(file).size;
    await new Upload({ client: s3, params: { Bucket: "bench", Key: format, Body: createReadStream(file) }, partSize: 64 * 1024 * 1024, queueSize: 2 }).done();
    for (let run = 0; run < RUNS; run++) {
      const out = join(work, "qemu-out.raw");
      let start = performance.now();
      await exec("qemu-img", ["convert", "-f", QEMU_FORMAT[format], "-O", "raw", file, out]);
      const qemu = seconds(start);
      rmSync(out, { force: true });

      resetPeak(kiln.pid);
      start = performance.now();
      const { ImportTaskId } = await ec2.send(new ImportImageCommand({ DiskContainers: [{ Format: DECLARED[format], UserBucket: { S3Bucket: "bench", S3Key: format } }] }));
      let task;
      for (;;) {
        task = (await ec2.send(new DescribeImportImageTasksCommand({ ImportTaskIds: [ImportTaskId] }))).ImportImageTasks[0];
        if (task.Status === "completed" || task.Status === "deleted") break;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      const kilnSeconds = seconds(start);
      if (task.Status !== "completed") throw new Error(`${format}: ${task.StatusMessage}`);
      const rss = peakRss(kiln.pid);
      rows.push({ format, fileMiB: mib(size), qemu, kiln: kilnSeconds, rss });
      console.log(`${format.padEnd(12)} file ${mib(size).padStart(5)} MiB   qemu-img convert -O raw ${qemu.toFixed(2)} s   Kiln ImportImage ${kilnSeconds.toFixed(2)} s   qemu/Kiln ${(qemu / kilnSeconds).toFixed(2)}x   Kiln peak RSS ${rss.toFixed(0)} MiB   (${task.Platform}, ${task.BootMode})`);
    }
    rmSync(file, { force: true });
  }
  console.log("\nformat        qemu-img (s)   Kiln (s)   qemu/Kiln   Kiln peak RSS (MiB)");
  for (const r of rows) console.log(`${r.format.padEnd(12)}  ${r.qemu.toFixed(2).padStart(12)}   ${r.kiln.toFixed(2).padStart(8)}   ${(r.qemu / r.kiln).toFixed(2).padStart(8)}x   ${r.rss.toFixed(0).padStart(8)}`);
  ec2.destroy();
  s3.destroy();
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
