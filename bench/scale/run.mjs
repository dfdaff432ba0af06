#!/usr/bin/env node
// bench/scale: DescribeImages and CreateImage throughput on one Kiln node with SQLite, on one
// node with PostgreSQL, and on two nodes sharing that PostgreSQL database (and the data folder),
// side by side in one run. Load is spread evenly over the nodes.
//
//   KILN_BENCH_DATABASE_URL=postgres://user:password@127.0.0.1:5432/postgres npm run bench:scale
//   node bench/scale/run.mjs --duration 3 --connections 8
//
// The PostgreSQL URL names a role that may create databases: each setup gets a fresh one, dropped
// after it.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import {
  CreateImageCommand,
  CreateSnapshotCommand,
  CreateVolumeCommand,
  EC2Client,
  RegisterImageCommand,
  RunInstancesCommand,
  waitUntilInstanceRunning,
  waitUntilSnapshotCompleted,
} from "@aws-sdk/client-ec2";
import { freshDatabase } from "../../dist/test/helpers/kiln.js";
import { check, count, measureReplay, signedPost } from "../lib/load.mjs";
import { onExit, startKiln } from "../lib/servers.mjs";

const { values: args } = parseArgs({
  options: {
    duration: { type: "string", default: "5" },
    connections: { type: "string", default: "16" },
    images: { type: "string", default: "200" },
    postgres: { type: "string", default: process.env.KILN_BENCH_DATABASE_URL ?? process.env.KILN_TEST_DATABASE_URL ?? "" },
  },
});
const DURATION = Number(args.duration);
const CONNECTIONS = Number(args.connections);
const IMAGES = Number(args.images);
if (!args.postgres) {
  console.error(
    "bench/scale needs a PostgreSQL server: --postgres postgres://user:password@host:port/db (a role that may create databases), or KILN_BENCH_DATABASE_URL.",
  );
  process.exit(2);
}
const credentials = { accessKeyId: "test", secretAccessKey: "test" };
const ec2For = (port) => new EC2Client({ endpoint: `http://127.0.0.1:${port}`, region: "us-east-1", credentials, maxAttempts: 1 });

const work = mkdtempSync(join(tmpdir(), "kiln-bench-scale-"));
onExit(() => rmSync(work, { recursive: true, force: true }));

/** Starts `nodes` Kiln nodes on one data folder (and the database, when given). */
async function startNodes(label, nodes, databaseUrl) {
  const dataDir = join(work, label.replace(/\W+/g, "-"));
  const started = [];
  for (let i = 0; i < nodes; i++) {
    started.push(await startKiln(dataDir, { KILN_NODE_ID: `bench-${i}`, ...(databaseUrl ? { KILN_DATABASE_URL: databaseUrl } : {}) }));
  }
  return started;
}

/** IMAGES registered images (on one snapshot) and one running instance, through the first node. */
async function seed(node) {
  const ec2 = ec2For(node.port);
  const { VolumeId } = await ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 8 }));
  const { SnapshotId } = await ec2.send(new CreateSnapshotCommand({ VolumeId }));
  await waitUntilSnapshotCompleted({ client: ec2, minDelay: 1, maxWaitTime: 30 }, { SnapshotIds: [SnapshotId] });
  for (let i = 0; i < IMAGES; i++) {
    await ec2.send(
      new RegisterImageCommand({
        Name: `scale-${String(i).padStart(5, "0")}`,
        RootDeviceName: "/dev/xvda",
        VirtualizationType: "hvm",
        Architecture: "x86_64",
        BlockDeviceMappings: [{ DeviceName: "/dev/xvda", Ebs: { SnapshotId } }],
      }),
    );
  }
  const { Instances } = await ec2.send(
    new RunInstancesCommand({
      ImageId: (
        await ec2.send(
          new RegisterImageCommand({
            Name: "scale-base",
            RootDeviceName: "/dev/xvda",
            VirtualizationType: "hvm",
            Architecture: "x86_64",
            BlockDeviceMappings: [{ DeviceName: "/dev/xvda", Ebs: { SnapshotId } }],
          }),
        )
      ).ImageId,
      MinCount: 1,
      MaxCount: 1,
    }),
  );
  await waitUntilInstanceRunning({ client: ec2, minDelay: 1, maxWaitTime: 30 }, { InstanceIds: [Instances[0].InstanceId] });
  return Instances[0].InstanceId;
}

/** DescribeImages (Owners=self, IMAGES images) replayed by CONNECTIONS connections spread over the nodes. */
async function describeImages(nodes) {
  const body = "Action=DescribeImages&Version=2016-11-15&Owner.1=self";
  const share = Math.max(1, Math.floor(CONNECTIONS / nodes.length));
  const runs = await Promise.all(
    nodes.map(async (node) => {
      const request = await signedPost(node.port, body);
      await check(node.port, request, (text) => count(text, "imageId") === IMAGES + 1, "DescribeImages");
      return measureReplay(node.port, request, share, DURATION);
    }),
  );
  return {
    rps: runs.reduce((sum, run) => sum + run.rps, 0),
    p50: Math.max(...runs.map((run) => run.p50)),
    p99: Math.max(...runs.map((run) => run.p99)),
    failed: runs.reduce((sum, run) => sum + run.non2xx, 0),
  };
}

/** CreateImage (NoReboot, a fresh name each) through the SDK, CONNECTIONS callers spread over the nodes, for DURATION seconds. */
async function createImages(nodes, instanceId, label) {
  const clients = nodes.map((node) => ec2For(node.port));
  let made = 0;
  let failed = 0;
  const latencies = [];
  const deadline = Date.now() + DURATION * 1000;
  const started = Date.now();
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async (_, caller) => {
      const ec2 = clients[caller % clients.length];
      for (let n = 0; Date.now() < deadline; n++) {
        const t = performance.now();
        try {
          await ec2.send(new CreateImageCommand({ InstanceId: instanceId, Name: `made-${label}-${caller}-${n}`, NoReboot: true }));
          latencies.push(performance.now() - t);
          made++;
        } catch {
          failed++;
        }
      }
    }),
  );
  for (const client of clients) client.destroy();
  latencies.sort((a, b) => a - b);
  return {
    rps: made / ((Date.now() - started) / 1000),
    p50: latencies[Math.floor(latencies.length / 2)] ?? NaN,
    p99: latencies[Math.floor(latencies.length * 0.99)] ?? NaN,
    failed,
  };
}

async function main() {
  const setups = [
    { label: "SQLite, 1 node", nodes: 1, database: false },
    { label: "PostgreSQL, 1 node", nodes: 1, database: true },
    { label: "PostgreSQL, 2 nodes", nodes: 2, database: true },
  ];
  const rows = [];
  for (const setup of setups) {
    const database = setup.database ? await freshDatabase(args.postgres, "kiln_bench_scale") : undefined;
    const nodes = await startNodes(setup.label, setup.nodes, database?.url);
    try {
      const instanceId = await seed(nodes[0]);
      const describe = await describeImages(nodes);
      const create = await createImages(nodes, instanceId, setup.nodes);
      rows.push({ setup: setup.label, describe, create });
      console.log(`${setup.label}: DescribeImages ${describe.rps.toFixed(0)}/s, CreateImage ${create.rps.toFixed(0)}/s`);
    } finally {
      for (const node of nodes) await node.stop();
      await database?.drop();
    }
  }
  const base = rows[0];
  console.log(`\n${CONNECTIONS} connections for ${DURATION} s a phase; DescribeImages returns ${IMAGES + 1} images; load spread evenly over the nodes.`);
  console.table(
    rows.map((row) => ({
      setup: row.setup,
      "DescribeImages /s": row.describe.rps.toFixed(0),
      "p50 / p99 ms": `${row.describe.p50} / ${row.describe.p99}`,
      "vs SQLite": `${(row.describe.rps / base.describe.rps).toFixed(2)}x`,
      "CreateImage /s": row.create.rps.toFixed(0),
      "CreateImage p50 / p99 ms": `${row.create.p50.toFixed(1)} / ${row.create.p99.toFixed(1)}`,
      "vs SQLite ": `${(row.create.rps / base.create.rps).toFixed(2)}x`,
      failed: row.describe.failed + row.create.failed,
    })),
  );
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
