#!/usr/bin/env node
// bench/api: signed EC2 Query requests against Kiln, side by side in one run with a bare
// node:http server answering the same bytes (the ceiling for any node:http server here) and
// moto_server (when installed). Prints requests/s, p50/p99 latency and the ratios.
//
// Two load generators, each ratio taken with one of them: autocannon (Kiln against the bare
// server; it is fast enough that the servers are the limit) and a raw-socket replay client
// (Kiln against moto: moto's server closes the connection after each answer, which autocannon
// cannot measure, while this client reconnects as any SDK does).
//
//   npm run bench:api                   # 5 s a phase
//   node bench/api/run.mjs --duration 10 --json results.json
//   node bench/api/run.mjs --quick      # 2 s a phase
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { CreateTagsCommand, CreateVolumeCommand, EC2Client } from "@aws-sdk/client-ec2";
import {
  check,
  count,
  measureAutocannon as measureWithAutocannon,
  measureReplay as measureWithReplay,
  signedPost,
  WARMUP_SECONDS as WARMUP,
} from "../lib/load.mjs";
import { freePort, onExit, start, startKiln, startMoto, waitUntilUp } from "../lib/servers.mjs";

const { values: args } = parseArgs({
  options: {
    duration: { type: "string", default: "5" },
    quick: { type: "boolean", default: false },
    json: { type: "string" },
  },
});
const DURATION = args.quick ? 2 : Number(args.duration);
const CONCURRENCY = [1, 32];
const RESOURCES = 100;
const TAGS_PER_RESOURCE = 10;
const measure = (port, request, connections) => measureWithAutocannon(port, request, connections, DURATION);
const measureReplay = (port, request, connections) => measureWithReplay(port, request, connections, DURATION);

async function main() {
  const dataDir = mkdtempSync(join(tmpdir(), "kiln-bench-"));
  onExit(() => rmSync(dataDir, { recursive: true, force: true }));

  const servers = [];
  const kiln = await startKiln(dataDir);
  const kilnPort = kiln.port;
  servers.push(kiln);

  const regionsBody = "Action=DescribeRegions&Version=2016-11-15";
  const regionsAnswer = await check(kilnPort, await signedPost(kilnPort, regionsBody), (t) => t.includes("<regionInfo>"), "kiln DescribeRegions");

  // The ceiling: node:http answering the very bytes Kiln answers, doing nothing else.
  const barePort = await freePort();
  const bodyFile = join(dataDir, "constant.xml");
  writeFileSync(bodyFile, regionsAnswer);
  start(
    process.execPath,
    [
      "-e",
      `const body = require("fs").readFileSync(${JSON.stringify(bodyFile)});
     require("http").createServer((req, res) => {
       req.resume();
       req.on("end", () => { res.writeHead(200, { "content-type": "text/xml;charset=UTF-8", "content-length": body.length }); res.end(body); });
     }).listen(${barePort}, "127.0.0.1");`,
    ],
    "bare node:http",
  );
  await waitUntilUp(`http://127.0.0.1:${barePort}/`, "bare node:http");
  servers.push({ name: "bare", port: barePort });

  // The least any server meeting Kiln's contract does: verify the signature, answer, log a line.
  const minimalPort = await freePort();
  start(process.execPath, [fileURLToPath(new URL("minimal-server.mjs", import.meta.url)), String(minimalPort), bodyFile], "minimal signed server");
  await waitUntilUp(`http://127.0.0.1:${minimalPort}/`, "minimal signed server");
  servers.push({ name: "minimal", port: minimalPort });

  const moto = await startMoto();
  if (moto) servers.push(moto);

  // 1,000 tags on Kiln and moto: 100 volumes × 10 tags (Kiln tags only resources that exist).
  const tags = Array.from({ length: TAGS_PER_RESOURCE }, (_, i) => ({ Key: `key-${i}`, Value: `value-${i}` }));
  const resourcesOn = new Map();
  for (const server of servers.filter((s) => s.name !== "bare" && s.name !== "minimal")) {
    const ec2 = new EC2Client({
      endpoint: `http://127.0.0.1:${server.port}`,
      region: "us-east-1",
      credentials: { accessKeyId: "test", secretAccessKey: "test" },
    });
    const volumes = [];
    for (let i = 0; i < RESOURCES; i++) volumes.push((await ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 1 }))).VolumeId);
    await ec2.send(new CreateTagsCommand({ Resources: volumes, Tags: tags }));
    resourcesOn.set(server.name, volumes.sort());
    ec2.destroy();
  }

  const total = RESOURCES * TAGS_PER_RESOURCE;
  const workloads = [
    { name: "DescribeRegions", body: regionsBody, expect: (t) => count(t, "regionName") >= 17, servers: ["bare", "minimal", "kiln", "moto"] },
    {
      name: `DescribeTags, ${total} tags in one page`,
      body: "Action=DescribeTags&Version=2016-11-15&MaxResults=1000",
      expect: (t) => count(t, "resourceId") === total,
      servers: ["kiln", "moto"],
    },
    {
      name: "DescribeTags, filtered to one resource",
      body: (server) => `Action=DescribeTags&Version=2016-11-15&Filter.1.Name=resource-id&Filter.1.Value.1=${resourcesOn.get(server)[42]}`,
      expect: (t) => count(t, "resourceId") === TAGS_PER_RESOURCE,
      servers: ["kiln", "moto"],
    },
  ];

  console.log(`bench/api: ${DURATION} s a phase after ${WARMUP} s of warm-up, one server loaded at a time; ${total} tags stored\n`);
  const results = [];
  const phases = [];
  for (const workload of workloads) {
    for (const server of servers.filter((s) => workload.servers.includes(s.name))) {
      // autocannon for Kiln and the bare server; the replay client for Kiln and moto.
      const clients =
        server.name === "kiln" && workload.servers.includes("moto") && servers.some((s) => s.name === "moto")
          ? ["autocannon", "replay"]
          : server.name === "moto"
            ? ["replay"]
            : ["autocannon"];
      for (const client of clients) for (const connections of CONCURRENCY) phases.push({ workload, server, client, connections });
    }
  }
  for (const { workload, server, client, connections } of phases) {
    const body = typeof workload.body === "function" ? workload.body(server.name) : workload.body;
    const request = await signedPost(server.port, body);
    // The reference servers' constant body is not an answer to check.
    if (server.name !== "bare" && server.name !== "minimal") await check(server.port, request, workload.expect, `${server.name} ${workload.name}`);
    const figures = client === "autocannon" ? await measure(server.port, request, connections) : await measureReplay(server.port, request, connections);
    results.push({ workload: workload.name, server: server.name, client, connections, ...figures });
    console.log(
      `${workload.name.padEnd(40)} ${server.name.padEnd(5)} ${client.padEnd(10)} c=${String(connections).padEnd(3)}` +
        ` ${figures.rps.toFixed(0).padStart(7)} req/s  p50 ${String(figures.p50).padStart(5)} ms  p99 ${String(figures.p99).padStart(6)} ms` +
        (figures.non2xx ? `  (${figures.non2xx} failed)` : ""),
    );
  }

  console.log("\nratios (requests/s, each with one client)");
  const rps = (workload, server, client, connections) =>
    results.find((r) => r.workload === workload && r.server === server && r.client === client && r.connections === connections)?.rps;
  const ratios = [];
  for (const workload of workloads) {
    for (const connections of CONCURRENCY) {
      for (const [server, other, client, label] of [
        ["kiln", "bare", "autocannon", "Kiln / bare node:http"],
        ["minimal", "bare", "autocannon", "minimal / bare"],
        ["kiln", "minimal", "autocannon", "Kiln / minimal"],
        ["kiln", "moto", "replay", "Kiln / moto_server"],
      ]) {
        const mine = rps(workload.name, server, client, connections);
        const base = rps(workload.name, other, client, connections);
        if (!mine || !base) continue;
        const ratio = mine / base;
        ratios.push({ workload: workload.name, connections, server, against: other, client, ratio });
        console.log(
          `${workload.name.padEnd(40)} c=${String(connections).padEnd(3)} ${label.padEnd(22)} ${other === "moto" ? `${ratio.toFixed(1)}x` : `${(100 * ratio).toFixed(0)}%`}`,
        );
      }
    }
  }
  if (results.some((r) => r.non2xx > 0)) console.log("\nsome requests failed: these figures are not comparable");

  if (args.json) {
    writeFileSync(args.json, `${JSON.stringify({ date: new Date().toISOString(), durationSeconds: DURATION, results, ratios }, null, 2)}\n`);
    console.log(`\nwrote ${args.json}`);
  }
}

main()
  .then(() => process.exit(0))
  .catch((error) => {
    console.error(`bench/api: ${error.message}`);
    process.exit(1);
  });
