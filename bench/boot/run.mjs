#!/usr/bin/env node
// bench/boot: an instance's boot, Kiln against qemu by hand, side by side in one run.
//
//  - Boot: RunInstances of the Debian 12 image (scripts/debian-image.sh, imported through
//    ImportImage) until its login prompt shows in GetConsoleOutput, against qemu-system-x86_64
//    booting the same disk as a raw file with Kiln's own command line (read from the guest's
//    /proc/<pid>/cmdline, with the NBD disk swapped for the file and the console for a file)
//    until the prompt shows in its console. Rounds alternate; prints each time and the ratio.
//  - Disk: fio on the host against a 4 GiB volume attached to the running instance, through
//    the NBD export Kiln serves it on (fio's nbd engine, libnbd), against the same jobs on a raw
//    file: sequential 1 MiB reads and writes, random 4 KiB reads and writes. Prints MB/s and
//    the ratio.
//
//   npm run bench:boot                  # 3 boots of each
//   node bench/boot/run.mjs --rounds 5
import { execFile, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs, promisify } from "node:util";
import {
  AttachVolumeCommand,
  CreateVolumeCommand,
  EC2Client,
  GetConsoleOutputCommand,
  RunInstancesCommand,
  TerminateInstancesCommand,
  waitUntilInstanceTerminated,
  waitUntilVolumeAvailable,
} from "@aws-sdk/client-ec2";
import { S3Client } from "@aws-sdk/client-s3";
import { debianImage, importDebianImage } from "../../dist/test/helpers/debian-image.js";
import { onExit, startKiln } from "../lib/servers.mjs";

const { values: args } = parseArgs({
  options: { rounds: { type: "string", default: "3" }, "fio-seconds": { type: "string", default: "10" }, "disk-only": { type: "boolean", default: false } },
});
const ROUNDS = Number(args.rounds);
const FIO_SECONDS = Number(args["fio-seconds"]);
const LOGIN = /login: ?$/m;
const POLL_MS = 100;

const work = mkdtempSync(join(tmpdir(), "kiln-bench-boot-"));
onExit(() => rmSync(work, { recursive: true, force: true }));
const execFileAsync = promisify(execFile);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const raw = await debianImage();
const kiln = await startKiln(join(work, "data"), { KILN_INSTANCE_BACKEND: "qemu", KILN_VM_MEMORY_MAX_MIB: "1024", KILN_VM_STOP_TIMEOUT_MS: "5000" });
const endpoint = `http://127.0.0.1:${kiln.port}`;
const credentials = { accessKeyId: "test", secretAccessKey: "test" };
const ec2 = new EC2Client({ endpoint, region: "us-east-1", credentials, maxAttempts: 1 });
const s3 = new S3Client({ endpoint, region: "us-east-1", credentials, forcePathStyle: true });
const accelerator = (await (await fetch(`${endpoint}/_kiln/health`)).json()).instances;
console.log(`guests under ${accelerator.accelerator}${accelerator.reason ? ` (${accelerator.reason})` : ""}`);

const imageId = await importDebianImage(ec2, s3, "bench");

/** The qemu command line of a running guest of Kiln's, from its pid file. */
function guestCommandLine(instanceId) {
  const pid = readFileSync(join(work, "data", "instances", instanceId, "qemu.pid"), "utf8").trim();
  return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean);
}

async function bootOnKiln() {
  const start = performance.now();
  const { Instances } = await ec2.send(new RunInstancesCommand({ ImageId: imageId, InstanceType: "t3.micro", MinCount: 1, MaxCount: 1 }));
  const instanceId = Instances[0].InstanceId;
  for (;;) {
    const { Output } = await ec2.send(new GetConsoleOutputCommand({ InstanceId: instanceId, Latest: true }));
    if (LOGIN.test(Buffer.from(Output ?? "", "base64").toString("latin1"))) break;
    if (performance.now() - start > 600_000) throw new Error("no login prompt on Kiln in 10 minutes");
    await sleep(POLL_MS);
  }
  return { seconds: (performance.now() - start) / 1000, instanceId };
}

/** Kiln's command line with the disk as the raw file and the console as a file, nothing else changed. */
function directCommandLine(kilnArgs, disk, consoleFile) {
  const out = [];
  for (let i = 0; i < kilnArgs.length; i++) {
    const arg = kilnArgs[i];
    const next = kilnArgs[i + 1];
    if (arg === "-S") continue;
    if (arg === "-qmp" || arg === "-pidfile") {
      i++;
      continue;
    }
    if (arg === "-blockdev" && next.includes('"nbd"')) {
      out.push(arg, JSON.stringify({ driver: "file", filename: disk, "node-name": JSON.parse(next)["node-name"] }));
      i++;
      continue;
    }
    if (arg === "-chardev" && next.startsWith("socket,id=console")) {
      out.push(arg, `file,id=console,path=${consoleFile}`);
      i++;
      continue;
    }
    out.push(arg);
  }
  return out;
}

async function bootDirect(kilnArgs, round) {
  const disk = join(work, `direct-${round}.raw`);
  spawnSync("cp", ["--sparse=always", raw, disk]);
  const consoleFile = join(work, `direct-${round}.log`);
  writeFileSync(consoleFile, "");
  const [binary, ...argv] = directCommandLine(kilnArgs, disk, consoleFile);
  const start = performance.now();
  const child = spawn(binary, argv, { stdio: "ignore" });
  try {
    for (;;) {
      if (LOGIN.test(readFileSync(consoleFile, "latin1"))) break;
      if (child.exitCode !== null) throw new Error(`qemu exited with ${child.exitCode}`);
      if (performance.now() - start > 600_000) throw new Error("no login prompt from qemu in 10 minutes");
      await sleep(POLL_MS);
    }
    return (performance.now() - start) / 1000;
  } finally {
    child.kill("SIGKILL");
    rmSync(disk, { force: true });
  }
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const kilnTimes = [];
const directTimes = [];
let lastInstance;
let kilnArgs;
if (args["disk-only"]) lastInstance = (await bootOnKiln()).instanceId;
for (let round = 0; round < (args["disk-only"] ? 0 : ROUNDS); round++) {
  const booted = await bootOnKiln();
  kilnTimes.push(booted.seconds);
  kilnArgs ??= guestCommandLine(booted.instanceId);
  if (round < ROUNDS - 1) {
    await ec2.send(new TerminateInstancesCommand({ InstanceIds: [booted.instanceId] }));
    await waitUntilInstanceTerminated({ client: ec2, maxWaitTime: 120, minDelay: 1, maxDelay: 1 }, { InstanceIds: [booted.instanceId] });
  } else lastInstance = booted.instanceId;
  directTimes.push(await bootDirect(kilnArgs, round));
  console.log(`round ${round + 1}: Kiln ${booted.seconds.toFixed(1)} s, qemu on the raw file ${directTimes.at(-1).toFixed(1)} s`);
}
if (!args["disk-only"])
  console.log(
    `\nboot to login prompt (median of ${ROUNDS}): Kiln ${median(kilnTimes).toFixed(1)} s, qemu directly ${median(directTimes).toFixed(1)} s, ` +
      `ratio ${(median(kilnTimes) / median(directTimes)).toFixed(2)}x (target ≤ 1.2x)`,
  );

// Disk: a volume of the running instance through its NBD export, and a raw file, under one fio job set.
const volume = await ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 4 }));
await waitUntilVolumeAvailable({ client: ec2, maxWaitTime: 60, minDelay: 1, maxDelay: 1 }, { VolumeIds: [volume.VolumeId] });
await ec2.send(new AttachVolumeCommand({ VolumeId: volume.VolumeId, InstanceId: lastInstance, Device: "/dev/sdf" }));
const socket = readdirSync(tmpdir())
  .filter((name) => name.startsWith("kiln-vm-"))
  .map((name) => join(tmpdir(), name, `${volume.VolumeId}.sock`))
  .find((path) => existsSync(path));
if (!socket) throw new Error(`no NBD export of ${volume.VolumeId} found`);
const rawFile = join(work, "fio.raw");
writeFileSync(rawFile, "");
spawnSync("truncate", ["-s", "4G", rawFile]);

const JOBS = [
  ["sequential write, 1 MiB", ["--rw=write", "--bs=1M"]],
  ["sequential read, 1 MiB", ["--rw=read", "--bs=1M"]],
  ["random write, 4 KiB", ["--rw=randwrite", "--bs=4k"]],
  ["random read, 4 KiB", ["--rw=randread", "--bs=4k"]],
];
/** One fio job's MB/s. Run asynchronously: this process's event loop keeps its connections to Kiln alive meanwhile. */
async function fio(target, job) {
  const common = ["--name=bench", "--size=2G", `--runtime=${FIO_SECONDS}`, "--time_based", "--iodepth=16", "--output-format=json", "--end_fsync=1"];
  const where = target === "nbd" ? ["--ioengine=nbd", `--uri=nbd+unix:///?socket=${socket}`] : ["--ioengine=libaio", "--direct=0", `--filename=${rawFile}`];
  const { stdout } = await execFileAsync("fio", [...common, ...where, ...job], { maxBuffer: 16 * 1024 * 1024 });
  const [stats] = JSON.parse(stdout.slice(stdout.indexOf("{"))).jobs;
  return (stats.read.bw_bytes + stats.write.bw_bytes) / 1e6;
}
console.log("\nguest disk path, fio on the host (MB/s): Kiln's NBD export of a volume | raw file | ratio (target ≥ 0.5)");
for (const [name, job] of JOBS) {
  const viaKiln = await fio("nbd", job);
  const viaFile = await fio("file", job);
  console.log(`  ${name.padEnd(24)} ${viaKiln.toFixed(0).padStart(7)} | ${viaFile.toFixed(0).padStart(7)} | ${(viaKiln / viaFile).toFixed(2)}`);
}
await ec2.send(new TerminateInstancesCommand({ InstanceIds: [lastInstance] }));
await kiln.stop();
