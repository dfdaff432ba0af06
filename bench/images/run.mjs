#!/usr/bin/env node
// bench/images: what CreateImage costs when snapshots share chunks, and DescribeImages over 200
// and 10,000 images, side by side with moto_server.
//
//   npm run bench:images                 # 5 s a phase
//   node bench/images/run.mjs --quick    # 2 s a phase, 2,000 images instead of 10,000
import { execFileSync } from "node:child_process";
import { randomBytes, createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { CompleteSnapshotCommand, EBSClient, PutSnapshotBlockCommand, StartSnapshotCommand } from "@aws-sdk/client-ebs";
import {
  CreateImageCommand,
  CreateSnapshotCommand,
  CreateVolumeCommand,
  DescribeImagesCommand,
  EC2Client,
  RegisterImageCommand,
  RunInstancesCommand,
  waitUntilInstanceRunning,
} from "@aws-sdk/client-ec2";
import { check, count, measureReplay, signedPost } from "../lib/load.mjs";
import { onExit, startKiln, startMoto } from "../lib/servers.mjs";

const { values: args } = parseArgs({ options: { duration: { type: "string", default: "5" }, quick: { type: "boolean", default: false } } });
const DURATION = args.quick ? 2 : Number(args.duration);
const SIZES = args.quick ? [200, 2000] : [200, 10_000];
const BLOCK = 512 * 1024;
const DATA_BLOCKS = 2048; // 1 GiB
const credentials = { accessKeyId: "test", secretAccessKey: "test" };
const ec2For = (port) => new EC2Client({ endpoint: `http://127.0.0.1:${port}`, region: "us-east-1", credentials, maxAttempts: 1 });
const duBytes = (dir) => Number(execFileSync("du", ["-sb", dir]).toString().split("\t")[0]);

/** Runs `task(i)` for i < n, `width` at a time. */
async function pool(n, width, task) {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < n) await task(next++);
    }),
  );
}

async function createImageCost(kiln, dataDir) {
  const ebs = new EBSClient({ endpoint: `http://127.0.0.1:${kiln.port}`, region: "us-east-1", credentials });
  const ec2 = ec2For(kiln.port);
  const { SnapshotId } = await ebs.send(new StartSnapshotCommand({ VolumeSize: 8 }));
  const started = Date.now();
  await pool(DATA_BLOCKS, 4, async (i) => {
    const data = randomBytes(BLOCK);
    await ebs.send(
      new PutSnapshotBlockCommand({
        SnapshotId,
        BlockIndex: i * 2,
        BlockData: data,
        DataLength: BLOCK,
        Checksum: createHash("sha256").update(data).digest("base64"),
        ChecksumAlgorithm: "SHA256",
      }),
    );
  });
  await ebs.send(new CompleteSnapshotCommand({ SnapshotId, ChangedBlocksCount: DATA_BLOCKS }));
  console.log(`wrote 1 GiB into an 8 GiB snapshot in ${((Date.now() - started) / 1000).toFixed(1)} s (EBS direct, 4 at a time)`);
  const { ImageId } = await ec2.send(
    new RegisterImageCommand({
      Name: "bench-base",
      Architecture: "x86_64",
      VirtualizationType: "hvm",
      RootDeviceName: "/dev/xvda",
      BlockDeviceMappings: [{ DeviceName: "/dev/xvda", Ebs: { SnapshotId } }],
    }),
  );
  const { Instances } = await ec2.send(new RunInstancesCommand({ ImageId, MinCount: 1, MaxCount: 1 }));
  const instanceId = Instances[0].InstanceId;
  await waitUntilInstanceRunning({ client: ec2, minDelay: 1, maxWaitTime: 30 }, { InstanceIds: [instanceId] });

  const rows = [];
  for (const noReboot of [true, false]) {
    const before = duBytes(dataDir);
    const t0 = process.hrtime.bigint();
    const { ImageId: created } = await ec2.send(
      new CreateImageCommand({ InstanceId: instanceId, Name: `bench-${noReboot ? "noreboot" : "reboot"}`, NoReboot: noReboot }),
    );
    const requestMs = Number(process.hrtime.bigint() - t0) / 1e6;
    let state = "pending";
    while (state !== "available") state = (await ec2.send(new DescribeImagesCommand({ ImageIds: [created] }))).Images[0].State;
    const availableMs = Number(process.hrtime.bigint() - t0) / 1e6;
    const added = duBytes(dataDir) - before;
    rows.push({ noReboot, requestMs, availableMs, added });
    console.log(
      `CreateImage NoReboot=${noReboot}: request ${requestMs.toFixed(1)} ms, available after ${availableMs.toFixed(1)} ms, data directory grew ${(added / 1024).toFixed(0)} KiB`,
    );
  }
  ec2.destroy();
  ebs.destroy();
  return rows;
}

/** Brings the server's own image count to `target`, all over one snapshot. */
async function registerUpTo(server, target, have, snapshotId) {
  const ec2 = ec2For(server.port);
  await pool(target - have, 8, async (i) => {
    await ec2.send(
      new RegisterImageCommand({
        Name: `bench-image-${String(have + i).padStart(5, "0")}`,
        Architecture: "x86_64",
        VirtualizationType: "hvm",
        RootDeviceName: "/dev/xvda",
        BlockDeviceMappings: [{ DeviceName: "/dev/xvda", Ebs: { SnapshotId: snapshotId } }],
      }),
    );
  });
  ec2.destroy();
}

async function snapshotFor(server) {
  const ec2 = ec2For(server.port);
  const volume = await ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 8 }));
  await new Promise((resolve) => setTimeout(resolve, 200));
  const { SnapshotId } = await ec2.send(new CreateSnapshotCommand({ VolumeId: volume.VolumeId }));
  await new Promise((resolve) => setTimeout(resolve, 200));
  ec2.destroy();
  return SnapshotId;
}

async function main() {
  const dataDir = mkdtempSync(join(tmpdir(), "kiln-bench-images-"));
  onExit(() => rmSync(dataDir, { recursive: true, force: true }));
  console.log("== CreateImage of an instance with an 8 GiB root volume holding 1 GiB ==");
  const created = await createImageCost(await startKiln(dataDir), dataDir);

  // A fresh Kiln for DescribeImages, so it and moto hold exactly the same images.
  const describeDir = mkdtempSync(join(tmpdir(), "kiln-bench-images-"));
  onExit(() => rmSync(describeDir, { recursive: true, force: true }));
  const kiln = await startKiln(describeDir);
  const moto = await startMoto();
  const servers = [kiln, ...(moto ? [moto] : [])];

  console.log(`\n== DescribeImages, ${DURATION} s a phase, replay client ==`);
  const snapshots = new Map();
  for (const server of servers) snapshots.set(server.name, await snapshotFor(server));
  const results = [];
  let have = 0;
  for (const size of SIZES) {
    const started = Date.now();
    for (const server of servers) await registerUpTo(server, size, have, snapshots.get(server.name));
    console.log(`(registered images up to ${size} on ${servers.map((s) => s.name).join(" and ")} in ${((Date.now() - started) / 1000).toFixed(0)} s)`);
    have = size;
    const workloads = [
      { name: `all ${size} images (Owners=self)`, body: "Action=DescribeImages&Version=2016-11-15&Owner.1=self", expect: (t) => count(t, "imageId") === size },
      {
        name: `one by name, of ${size}`,
        body: `Action=DescribeImages&Version=2016-11-15&Owner.1=self&Filter.1.Name=name&Filter.1.Value.1=bench-image-00042`,
        expect: (t) => count(t, "imageId") === 1,
      },
      // moto ignores MaxResults and answers every image: its figure is for the whole list.
      {
        name: `a page of 100, of ${size}`,
        body: "Action=DescribeImages&Version=2016-11-15&Owner.1=self&MaxResults=100",
        expect: (t, server) => count(t, "imageId") === (server === "moto" ? size : 100),
      },
    ];
    for (const workload of workloads) {
      for (const connections of [1, 8]) {
        const row = { workload: workload.name, connections };
        for (const server of servers) {
          const request = await signedPost(server.port, workload.body);
          await check(server.port, request, (t) => workload.expect(t, server.name), `${server.name} ${workload.name}`);
          row[server.name] = await measureReplay(server.port, request, connections, DURATION);
        }
        results.push(row);
        const fmt = (r) => (r ? `${r.rps.toFixed(1).padStart(8)} req/s p50 ${String(r.p50).padStart(7)} ms` : "");
        const ratio = row.moto
          ? `  ${(row.kiln.rps / Math.max(row.moto.rps, 1 / DURATION)).toFixed(0)}x moto${row.moto.rps === 0 ? " (moto answered none in time)" : ""}`
          : "";
        console.log(`${workload.name.padEnd(32)} c=${String(connections).padEnd(2)} kiln ${fmt(row.kiln)} | moto ${fmt(row.moto)}${ratio}`);
      }
    }
  }
  return { created, results };
}

main()
  .then(() => process.exit(0))
  .catch((error) => {
    console.error(`bench/images: ${error.message}`);
    process.exit(1);
  });
