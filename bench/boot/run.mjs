#!/usr/bin/env node
// bench/boot: an instance's boot and disk, Kiln against qemu by hand, side by side in one run.
//
//  - Boot: RunInstances of the Debian 12 image (scripts/debian-image.sh, imported through
//    ImportImage) until its login prompt shows in GetConsoleOutput, against qemu-system-x86_64
//    booting the same disk as a raw file with Kiln's own command line (read from the guest's
//    /proc/<pid>/cmdline, with the NBD disk swapped for the file and the console for a file)
//    until the prompt shows in its console, in a network namespace of its own where
//    metadata-snapshot.mjs serves what Kiln's metadata service said of the instance (so
//    cloud-init does the same work in both). Also RunInstances until SSH as admin answers.
//    Rounds alternate; prints each time and the ratios.
//  - Disk in the guest: an instance with an empty 4 GiB data volume and a NoCloud seed volume
//    (CIDATA, through ImportSnapshot) whose user data is guest-disk.py, which cloud-init runs at
//    first boot: sequential 1 MiB and random 4 KiB writes and reads on the data disk with
//    O_DIRECT, results on the serial console. Then the same guest by hand, Kiln's command line
//    with each NBD disk swapped for a file (the root image, the same seed, a sparse raw file),
//    and once more with the data disk a raw file that qemu-nbd serves: the NBD path, another server.
//  - Disk on the host: fio against another 4 GiB volume attached to that instance, through the
//    NBD export Kiln serves it on (fio's nbd engine, libnbd), against the same jobs through
//    qemu-nbd and on a raw file: Kiln's side of the path alone, without qemu's NBD client and the guest.
//
//   npm run bench:boot                  # 3 boots of each, then the disk
//   node bench/boot/run.mjs --rounds 5 --disk-seconds 20
//   node bench/boot/run.mjs --disk-only
//   node bench/boot/run.mjs --boot-only
import { execFile, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs, promisify } from "node:util";
import {
  AttachVolumeCommand,
  AuthorizeSecurityGroupIngressCommand,
  CreateKeyPairCommand,
  CreateSecurityGroupCommand,
  DescribeVpcsCommand,
  CreateVolumeCommand,
  DescribeImportSnapshotTasksCommand,
  DescribeInstancesCommand,
  EC2Client,
  GetConsoleOutputCommand,
  ImportSnapshotCommand,
  RunInstancesCommand,
  TerminateInstancesCommand,
  waitUntilInstanceTerminated,
  waitUntilVolumeAvailable,
} from "@aws-sdk/client-ec2";
import { PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { LOGIN_PROMPT as LOGIN } from "../../dist/src/vm/qemu-backend.js";
import { debianImage, importDebianImage } from "../../dist/test/helpers/debian-image.js";
import { run } from "../../dist/test/helpers/tools.js";
import { onExit, startKiln } from "../lib/servers.mjs";

const { values: args } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    "disk-seconds": { type: "string", default: "10" },
    "disk-only": { type: "boolean", default: false },
    "boot-only": { type: "boolean", default: false },
  },
});
const ROUNDS = Number(args.rounds);
/** How long each disk job runs, in the guest (all but the first write, which fills a fixed region) and in fio on the host. */
const DISK_SECONDS = Number(args["disk-seconds"]);
const POLL_MS = 100;
const GiB = 1024 ** 3;
/** The data disk's size: in the guest, it is the one disk of this size. */
const DATA_GIB = 4;
const GUEST_SETTINGS = { disk_bytes: DATA_GIB * GiB, sequential_mib: 512, random_region_mib: 2048, seconds: DISK_SECONDS };
const GUEST_LINE = /^kiln-bench-disk: (.*?)\r?$/gm;
const GUEST_END = /^kiln-bench-disk: (done|failed)/m;

const work = mkdtempSync(join(tmpdir(), "kiln-bench-boot-"));
onExit(() => rmSync(work, { recursive: true, force: true }));
const execFileAsync = promisify(execFile);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const raw = await debianImage();
/** The operator's token, for the metadata snapshot (Kiln's route for an instance's metadata). */
const ADMIN_TOKEN = "bench-boot";
const kiln = await startKiln(join(work, "data"), {
  KILN_INSTANCE_BACKEND: "qemu",
  KILN_VM_MEMORY_MAX_MIB: "1024",
  KILN_VM_STOP_TIMEOUT_MS: "5000",
  KILN_ADMIN_TOKEN: ADMIN_TOKEN,
});
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

async function kilnConsole(instanceId) {
  const { Output } = await ec2.send(new GetConsoleOutputCommand({ InstanceId: instanceId, Latest: true }));
  return Buffer.from(Output ?? "", "base64").toString("latin1");
}

/** Polls a console until it matches `pattern`; what it said then. */
async function consoleShows(read, pattern, what, child) {
  const start = performance.now();
  for (;;) {
    const said = await read();
    if (pattern.test(said)) return said;
    if (child && child.exitCode !== null) throw new Error(`qemu exited with ${child.exitCode}`);
    if (performance.now() - start > 600_000) {
      // The whole console is kept for a look afterwards (the work folder goes at exit).
      const kept = join(tmpdir(), `kiln-bench-boot-${what.replace(/[^\w.-]+/g, "-")}.log`);
      writeFileSync(kept, said);
      throw new Error(`no ${pattern} from ${what} in 10 minutes (its console: ${kept}); its last lines:\n${said.slice(-2000)}`);
    }
    await sleep(POLL_MS);
  }
}

async function terminate(instanceId) {
  await ec2.send(new TerminateInstancesCommand({ InstanceIds: [instanceId] }));
  await waitUntilInstanceTerminated({ client: ec2, maxWaitTime: 120, minDelay: 1, maxDelay: 1 }, { InstanceIds: [instanceId] });
}

/** SSH on a guest's public address: Kiln's default port (22 as root, else 2222). */
const SSH_PORT = process.getuid?.() === 0 ? 22 : 2222;

/** A key pair and a security group that lets this host's SSH in, for the SSH-ready time. */
async function sshAccess() {
  const key = await ec2.send(new CreateKeyPairCommand({ KeyName: "bench-boot" }));
  const keyFile = join(work, "bench-boot.pem");
  writeFileSync(keyFile, key.KeyMaterial, { mode: 0o600 });
  const vpcId = (await ec2.send(new DescribeVpcsCommand({ Filters: [{ Name: "is-default", Values: ["true"] }] }))).Vpcs[0].VpcId;
  const { GroupId } = await ec2.send(new CreateSecurityGroupCommand({ GroupName: "bench-boot-ssh", Description: "ssh from this host", VpcId: vpcId }));
  await ec2.send(
    new AuthorizeSecurityGroupIngressCommand({
      GroupId,
      IpPermissions: [{ IpProtocol: "tcp", FromPort: 22, ToPort: 22, IpRanges: [{ CidrIp: "127.0.0.1/32" }] }],
    }),
  );
  return { keyName: "bench-boot", keyFile, groupId: GroupId };
}

/** True once `ssh admin@address true` succeeds. */
const sshAnswers = (keyFile, address) =>
  new Promise((resolve) => {
    const options = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5"];
    const child = spawn("ssh", ["-i", keyFile, ...options, "-p", String(SSH_PORT), `admin@${address}`, "true"], { stdio: "ignore" });
    child.on("close", (code) => resolve(code === 0));
  });

/** RunInstances until the console shows the login prompt, and until SSH as admin answers: seconds for each. */
async function bootOnKiln(access) {
  const start = performance.now();
  const { Instances } = await ec2.send(
    new RunInstancesCommand({
      ImageId: imageId,
      InstanceType: "t3.micro",
      MinCount: 1,
      MaxCount: 1,
      KeyName: access.keyName,
      SecurityGroupIds: [access.groupId],
    }),
  );
  const instanceId = Instances[0].InstanceId;
  await consoleShows(() => kilnConsole(instanceId), LOGIN, instanceId);
  const seconds = (performance.now() - start) / 1000;
  const address = (await ec2.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }))).Reservations[0].Instances[0].PublicIpAddress;
  while (!(await sshAnswers(access.keyFile, address))) {
    if (performance.now() - start > 600_000) throw new Error(`no SSH from ${instanceId} at ${address}:${SSH_PORT} in 10 minutes`);
    await sleep(500);
  }
  return { seconds, sshSeconds: (performance.now() - start) / 1000, instanceId };
}

/**
 * What Kiln's metadata service says of an instance, every path under `latest/` (and the root's
 * list of versions), read through Kiln's route for it: what the guest by hand is served.
 */
async function metadataSnapshot(instanceId) {
  const get = async (path) => {
    const answer = await fetch(`${endpoint}/_kiln/instances/${instanceId}/metadata/${path}`, { headers: { "x-kiln-admin-token": ADMIN_TOKEN } });
    return answer.ok ? answer.text() : undefined;
  };
  const snapshot = { "": await get("") };
  const walk = async (directory) => {
    const listing = await get(directory);
    if (listing === undefined) return;
    snapshot[directory] = listing;
    for (const line of listing.split("\n").filter(Boolean)) {
      // public-keys lists `0=<name>`, read as the directory `0/`.
      const name = line.includes("=") ? `${line.split("=")[0]}/` : line;
      if (name.endsWith("/")) await walk(directory + name);
      else snapshot[directory + name] = await get(directory + name);
    }
  };
  await walk("latest/");
  if (!snapshot["latest/meta-data/instance-id"]) throw new Error(`no metadata read for ${instanceId}`);
  const file = join(work, `metadata-${instanceId}.json`);
  writeFileSync(file, JSON.stringify(snapshot));
  return file;
}

/**
 * Kiln's command line with each NBD disk as `fileOf(volumeId)` says (a file's path, or
 * `{ nbd: socket }` for another NBD server's export) and the console as a file. With
 * `withMetadata`, the rest as it is (the guest runs in a namespace with a metadata service, as
 * Kiln's does); without, no EC2 identity and no port forward.
 */
function directCommandLine(kilnArgs, fileOf, consoleFile, withMetadata) {
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
      // The device lines stay as they are: each disk keeps its bus and its serial (the volume id).
      const nodeName = JSON.parse(next)["node-name"];
      const disk = fileOf(nodeName.replace(/^disk-/, ""));
      const blockdev = disk.nbd ? { driver: "nbd", server: { type: "unix", path: disk.nbd } } : { driver: "file", filename: disk };
      out.push(arg, JSON.stringify({ ...blockdev, "node-name": nodeName }));
      i++;
      continue;
    }
    // Kiln's guest reaches its metadata service in a namespace of its own; by hand there is
    // none, so no EC2 identity (cloud-init would wait minutes for the service) and no port
    // forward (port 22 of the host's loopback is not the bench's to take).
    if (arg === "-smbios" && !withMetadata) {
      i++;
      continue;
    }
    if (arg === "-netdev" && next.startsWith("user,") && !withMetadata) {
      out.push(arg, next.replace(/,hostfwd=[^,]*/g, ""));
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

const SNAPSHOT_SERVER = new URL("metadata-snapshot.mjs", import.meta.url).pathname;

/**
 * qemu by hand with Kiln's command line until its console matches `pattern`; the seconds that
 * took and the console. With `metadata` (a snapshot file), qemu runs in a network namespace of
 * its own whose 169.254.169.254 serves it, as Kiln's guest does with Kiln's service.
 */
async function runDirect(kilnArgs, fileOf, name, pattern, metadata) {
  const consoleFile = join(work, `${name}.log`);
  writeFileSync(consoleFile, "");
  const [binary, ...argv] = directCommandLine(kilnArgs, fileOf, consoleFile, Boolean(metadata));
  const start = performance.now();
  // The shell starts the snapshot server, then becomes qemu (exec): the server ends with qemu.
  const inNamespace = 'ip link set lo up && ip addr add 169.254.169.254/32 dev lo && node "$1" "$2" & shift 2; exec "$@"';
  const child = metadata
    ? spawn("unshare", ["--user", "--map-root-user", "--net", "--", "sh", "-c", inNamespace, "sh", SNAPSHOT_SERVER, metadata, binary, ...argv], {
        stdio: "ignore",
      })
    : spawn(binary, argv, { stdio: "ignore" });
  try {
    const said = await consoleShows(() => readFileSync(consoleFile, "latin1"), pattern, `qemu (${name})`, child);
    return { seconds: (performance.now() - start) / 1000, said };
  } finally {
    child.kill("SIGKILL");
  }
}

/** A fresh copy of the Debian disk, as a user would boot it. */
function rootCopy(name) {
  const disk = join(work, `${name}.raw`);
  spawnSync("cp", ["--sparse=always", raw, disk]);
  return disk;
}

async function bootDirect(kilnArgs, round, metadata) {
  const disk = rootCopy(`direct-${round}`);
  try {
    return (await runDirect(kilnArgs, () => disk, `direct-${round}`, LOGIN, metadata)).seconds;
  } finally {
    rmSync(disk, { force: true });
  }
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const kilnTimes = [];
const sshTimes = [];
const directTimes = [];
const access = args["disk-only"] ? undefined : await sshAccess();
for (let round = 0; round < (args["disk-only"] ? 0 : ROUNDS); round++) {
  const booted = await bootOnKiln(access);
  kilnTimes.push(booted.seconds);
  sshTimes.push(booted.sshSeconds);
  const kilnArgs = guestCommandLine(booted.instanceId);
  const metadata = await metadataSnapshot(booted.instanceId);
  await terminate(booted.instanceId);
  directTimes.push(await bootDirect(kilnArgs, round, metadata));
  console.log(
    `round ${round + 1}: Kiln ${booted.seconds.toFixed(1)} s to the login prompt, ${booted.sshSeconds.toFixed(1)} s to SSH; ` +
      `qemu on the raw file ${directTimes.at(-1).toFixed(1)} s to the login prompt`,
  );
}
if (!args["disk-only"]) {
  const direct = median(directTimes);
  console.log(
    `\nboot to login prompt (median of ${ROUNDS}): Kiln ${median(kilnTimes).toFixed(1)} s, qemu directly ${direct.toFixed(1)} s, ` +
      `ratio ${(median(kilnTimes) / direct).toFixed(2)}x (target ≤ 1.2x)`,
  );
  console.log(
    `RunInstances to SSH as admin (median of ${ROUNDS}): ${median(sshTimes).toFixed(1)} s, ` +
      `against qemu directly to the login prompt: ratio ${(median(sshTimes) / direct).toFixed(2)}x (target ≤ 1.3x)`,
  );
}

/** MB/s, with a decimal for the small figures of 4 KiB requests. */
const rate = (value) => value.toFixed(value < 10 ? 1 : 0).padStart(7);
const printRow = (name, viaKiln, viaQemuNbd, viaFile) =>
  console.log(
    `  ${name.padEnd(24)} ${rate(viaKiln)} | ${rate(viaQemuNbd)} | ${rate(viaFile)} | ${(viaKiln / viaFile).toFixed(2).padStart(5)} | ${(viaKiln / viaQemuNbd).toFixed(2).padStart(5)}`,
  );

/**
 * qemu-nbd (qemu's own NBD server, through the page cache as qemu's default) exporting `file`
 * on a unix socket: the same NBD path as Kiln's, served by another server, so the figures say
 * what the path itself costs and what Kiln's side of it does.
 */
async function qemuNbd(file) {
  const socket = join(work, `qemu-nbd-${Math.random().toString(36).slice(2)}.sock`);
  const child = spawn("qemu-nbd", ["--persistent", "--shared=4", "--format=raw", "--cache=writeback", `--socket=${socket}`, file], { stdio: "ignore" });
  for (let waited = 0; !existsSync(socket); waited += 50) {
    if (waited > 10_000 || child.exitCode !== null) throw new Error("qemu-nbd did not start");
    await sleep(50);
  }
  return { socket, stop: () => child.kill("SIGTERM") };
}

/** An empty sparse file of the data disk's size. */
function sparseFile(name) {
  const file = join(work, name);
  writeFileSync(file, "");
  truncateSync(file, DATA_GIB * GiB);
  return file;
}

/**
 * The NoCloud seed, a file and a snapshot of it: cloud-init finds it by its vfat (or iso9660)
 * file system labelled CIDATA, and runs its user data, guest-disk.py, once at the first boot.
 */
async function makeSeed() {
  const file = join(work, "seed.raw");
  writeFileSync(
    join(work, "user-data"),
    `#!/usr/bin/python3\nSETTINGS = ${JSON.stringify(GUEST_SETTINGS)}\n${readFileSync(new URL("guest-disk.py", import.meta.url), "utf8")}`,
  );
  writeFileSync(join(work, "meta-data"), "instance-id: kiln-bench-disk\nlocal-hostname: kiln-bench-disk\n");
  await run("mkfs.vfat", ["-n", "CIDATA", "-C", file, "1024"]);
  await run("mcopy", ["-i", file, join(work, "user-data"), join(work, "meta-data"), "::"]);
  await s3.send(new PutObjectCommand({ Bucket: "bench", Key: "seed.raw", Body: readFileSync(file) }));
  const { ImportTaskId } = await ec2.send(
    new ImportSnapshotCommand({ DiskContainer: { Format: "RAW", UserBucket: { S3Bucket: "bench", S3Key: "seed.raw" } } }),
  );
  for (;;) {
    const task = (await ec2.send(new DescribeImportSnapshotTasksCommand({ ImportTaskIds: [ImportTaskId] }))).ImportSnapshotTasks[0].SnapshotTaskDetail;
    if (task.Status === "completed") return { file, snapshotId: task.SnapshotId };
    if (task.Status !== "active") throw new Error(`the seed's import ${ImportTaskId}: ${task.Status} ${task.StatusMessage}`);
    await sleep(POLL_MS);
  }
}

/** The guest's figures from its console: job name to MB/s, and the serial of the disk it measured. */
function guestResults(said, where) {
  const lines = [...said.matchAll(GUEST_LINE)].map((match) => match[1]);
  const failed = lines.find((line) => line.startsWith("failed"));
  if (failed) throw new Error(`the disk jobs in the guest on ${where} ${failed}`);
  const results = new Map(
    lines
      .map((line) => /^(.+): ([\d.]+) MB\/s$/.exec(line))
      .filter(Boolean)
      .map(([, job, rate]) => [job, Number(rate)]),
  );
  return { results, serial: lines.find((line) => line.startsWith("serial "))?.slice("serial ".length) };
}

const DATA_DEVICE = "/dev/sdf";
const SEED_DEVICE = "/dev/sdg";

/** The disk jobs in a guest of Kiln's with a fresh data volume and the seed; the guest is left running. */
async function diskOnKiln(seed) {
  const { Instances } = await ec2.send(
    new RunInstancesCommand({
      ImageId: imageId,
      InstanceType: "t3.micro",
      MinCount: 1,
      MaxCount: 1,
      BlockDeviceMappings: [
        { DeviceName: DATA_DEVICE, Ebs: { VolumeSize: DATA_GIB, DeleteOnTermination: true } },
        { DeviceName: SEED_DEVICE, Ebs: { SnapshotId: seed.snapshotId, DeleteOnTermination: true } },
      ],
    }),
  );
  const instanceId = Instances[0].InstanceId;
  const { results, serial } = guestResults(await consoleShows(() => kilnConsole(instanceId), GUEST_END, instanceId), instanceId);
  const described = (await ec2.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }))).Reservations[0].Instances[0];
  const volumeOf = Object.fromEntries(described.BlockDeviceMappings.map((mapping) => [mapping.DeviceName, mapping.Ebs.VolumeId]));
  // The guest must have measured the data volume, not some other disk of its size.
  if (serial !== volumeOf[DATA_DEVICE].replace("-", "")) throw new Error(`the guest measured disk ${serial}, not ${volumeOf[DATA_DEVICE]}`);
  // For the guest by hand: the root image, the same seed and an empty sparse file for the data volume.
  const files = {
    [volumeOf[described.RootDeviceName]]: rootCopy("direct-disk"),
    [volumeOf[SEED_DEVICE]]: seed.file,
    [volumeOf[DATA_DEVICE]]: sparseFile("direct-data.raw"),
  };
  return {
    instanceId,
    results,
    commandLine: guestCommandLine(instanceId),
    files,
    rootVolumeId: volumeOf[described.RootDeviceName],
    dataVolumeId: volumeOf[DATA_DEVICE],
  };
}

const FIO_JOBS = [
  ["sequential write, 1 MiB", ["--rw=write", "--bs=1M"]],
  ["sequential read, 1 MiB", ["--rw=read", "--bs=1M"]],
  ["random write, 4 KiB", ["--rw=randwrite", "--bs=4k"]],
  ["random read, 4 KiB", ["--rw=randread", "--bs=4k"]],
];

/** fio through the NBD export of a fresh volume attached to the instance, and on a raw file: [job, MB/s on Kiln, MB/s on the file]. */
async function fioOnHost(instanceId) {
  const volume = await ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: DATA_GIB }));
  await waitUntilVolumeAvailable({ client: ec2, maxWaitTime: 60, minDelay: 1, maxDelay: 1 }, { VolumeIds: [volume.VolumeId] });
  await ec2.send(new AttachVolumeCommand({ VolumeId: volume.VolumeId, InstanceId: instanceId, Device: "/dev/sdh" }));
  const socket = readdirSync(tmpdir())
    .filter((name) => name.startsWith("kiln-vm-"))
    .map((name) => join(tmpdir(), name, `${volume.VolumeId}.sock`))
    .find((path) => existsSync(path));
  if (!socket) throw new Error(`no NBD export of ${volume.VolumeId} found`);
  const file = sparseFile("fio.raw");
  // Run asynchronously: this process's event loop keeps its connections to Kiln alive meanwhile.
  const fio = async (where, job) => {
    const common = ["--name=bench", "--size=2G", `--runtime=${DISK_SECONDS}`, "--time_based", "--iodepth=16", "--output-format=json", "--end_fsync=1"];
    const { stdout } = await execFileAsync("fio", [...common, ...where, ...job], { maxBuffer: 16 * 1024 * 1024 });
    const [stats] = JSON.parse(stdout.slice(stdout.indexOf("{"))).jobs;
    return (stats.read.bw_bytes + stats.write.bw_bytes) / 1e6;
  };
  const viaNbd = (path) => ["--ioengine=nbd", `--uri=nbd+unix:///?socket=${path}`];
  const reference = await qemuNbd(sparseFile("fio-nbd.raw"));
  const rows = [];
  try {
    for (const [name, job] of FIO_JOBS) {
      const viaKiln = await fio(viaNbd(socket), job);
      const viaQemuNbd = await fio(viaNbd(reference.socket), job);
      rows.push([name, viaKiln, viaQemuNbd, await fio(["--ioengine=libaio", "--direct=0", `--filename=${file}`], job)]);
    }
  } finally {
    reference.stop();
  }
  return rows;
}

if (!args["boot-only"]) {
  // Kiln's guest first (its command line is the one by hand), then fio on the host while it
  // idles, then the guests by hand once Kiln's has gone, one after the other, so no two guests
  // share the CPU: the data disk a raw file, then the same through qemu-nbd. Each by hand boots
  // a fresh copy of the root disk, so cloud-init runs the jobs on each.
  const seed = await makeSeed();
  const onKiln = await diskOnKiln(seed);
  const onHost = await fioOnHost(onKiln.instanceId);
  await terminate(onKiln.instanceId);
  const byHand = guestResults((await runDirect(onKiln.commandLine, (volumeId) => onKiln.files[volumeId], "direct-disk", GUEST_END)).said, "qemu by hand");
  const reference = await qemuNbd(sparseFile("direct-data-nbd.raw"));
  let throughQemuNbd;
  try {
    const root = rootCopy("direct-nbd");
    const fileOf = (volumeId) =>
      volumeId === onKiln.dataVolumeId ? { nbd: reference.socket } : volumeId === onKiln.rootVolumeId ? root : onKiln.files[volumeId];
    throughQemuNbd = guestResults((await runDirect(onKiln.commandLine, fileOf, "direct-nbd", GUEST_END)).said, "qemu by hand through qemu-nbd");
  } finally {
    reference.stop();
  }

  const header = "Kiln volume | qemu-nbd on a raw file | raw file | Kiln/raw file (target ≥ 0.5) | Kiln/qemu-nbd";
  console.log(`\nguest disk, in the guest (MB/s, O_DIRECT, one request at a time, ${DISK_SECONDS} s a job but the first write):\n  ${header}`);
  for (const [name, viaKiln] of onKiln.results) printRow(name, viaKiln, throughQemuNbd.results.get(name), byHand.results.get(name));
  console.log(`\nKiln's side alone, fio on the host (MB/s, iodepth 16, ${DISK_SECONDS} s a job):\n  ${header}`);
  for (const [name, viaKiln, viaQemuNbd, viaFile] of onHost) printRow(name, viaKiln, viaQemuNbd, viaFile);
}
await kiln.stop();
