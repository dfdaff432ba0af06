#!/usr/bin/env node
// bench/stall: does any request hold the server up? For each of the heaviest requests a client
// can send (huge counts, long lists, large sizes, pathological wildcards, CPU-heavy keys), a
// fresh server answers it while a probe asks a cheap route one request after another (Kiln's
// GET /_kiln/health; moto_server's GET /moto-api/config), and the longest wait for a probe's
// answer is the figure. Kiln and moto_server side by side where moto serves the request.
//
//   npm run bench:stall
//   node bench/stall/run.mjs --only wildcards --timeout 30
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import {
  CompleteSnapshotCommand,
  EBSClient,
  ListChangedBlocksCommand,
  ListSnapshotBlocksCommand,
  PutSnapshotBlockCommand,
  StartSnapshotCommand,
} from "@aws-sdk/client-ebs";
import { CreateBucketCommand, DeleteObjectsCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { signedPost } from "../lib/load.mjs";
import { onExit, startKiln, startMoto } from "../lib/servers.mjs";
import { startLatencyProbe } from "../../dist/test/helpers/latency-probe.js";

const { values: args } = parseArgs({ options: { only: { type: "string" }, timeout: { type: "string", default: "60" }, "no-moto": { type: "boolean" } } });
const TIMEOUT_MS = Number(args.timeout) * 1000;
const credentials = { accessKeyId: "test", secretAccessKey: "test" };
const work = mkdtempSync(join(tmpdir(), "kiln-bench-stall-"));
onExit(() => rmSync(work, { recursive: true, force: true }));

/** A signed EC2 Query request (form POST); its HTTP status and error code, if any. */
async function ec2(server, params) {
  const request = await signedPost(server.port, new URLSearchParams({ Version: "2016-11-15", ...params }).toString());
  const headers = { ...request.headers };
  delete headers.host;
  const response = await fetch(`http://127.0.0.1:${server.port}/`, { method: "POST", headers, body: request.body, signal: AbortSignal.timeout(TIMEOUT_MS) });
  const text = await response.text();
  return { status: response.status, code: /<Code>([^<]+)<\/Code>/.exec(text)?.[1], text };
}

/** Numbered parameters: `Name.1=v1`, `Name.2=v2`, … */
const numbered = (name, values) => Object.fromEntries(values.map((value, i) => [`${name}.${i + 1}`, value]));
const hexId = (prefix, n) => `${prefix}-${n.toString(16).padStart(17, "0")}`;
const s3 = (server) => new S3Client({ endpoint: `http://127.0.0.1:${server.port}`, region: "us-east-1", credentials, forcePathStyle: true, maxAttempts: 1 });
const ebs = (server) => new EBSClient({ endpoint: `http://127.0.0.1:${server.port}`, region: "us-east-1", credentials, maxAttempts: 1 });

async function firstImage(server) {
  const { text } = await ec2(server, { Action: "DescribeImages", "Owner.1": "amazon", "Filter.1.Name": "architecture", "Filter.1.Value.1": "x86_64" });
  return /<imageId>(ami-[0-9a-f]+)<\/imageId>/.exec(text)[1];
}

const launch = (server, imageId, min, max) =>
  ec2(server, { Action: "RunInstances", ImageId: imageId, MinCount: String(min), MaxCount: String(max), InstanceType: "t3.micro" });

/** 126 stars: a backtracking matcher takes time growing with a value's length to that power. */
const PATHOLOGICAL = `${"*a".repeat(126)}*b`;
const fiftyTags = Object.assign({}, ...Array.from({ length: 50 }, (_, i) => ({ [`Tag.${i + 1}.Key`]: `key-${i}`, [`Tag.${i + 1}.Value`]: "v".repeat(200) })));

/** The ids of 1,000 instances launched for the tag requests (moto tags only what it keeps). */
async function thousandInstances(server) {
  const { text } = await launch(server, await firstImage(server), 1000, 1000);
  return [...text.matchAll(/<instanceId>(i-[0-9a-f]+)<\/instanceId>/g)].map((match) => match[1]);
}
const tag = (server, ids, tags) => ec2(server, { Action: "CreateTags", ...numbered("ResourceId", ids), ...tags });

/** A 64 TiB snapshot with a block at each end, from StartSnapshot to CompleteSnapshot. */
async function hugeSnapshot(server, parent) {
  const client = ebs(server);
  const { SnapshotId } = await client.send(new StartSnapshotCommand({ VolumeSize: 65536, ParentSnapshotId: parent, ClientToken: `bench-${Math.random()}` }));
  const data = Buffer.alloc(512 * 1024, parent ? 2 : 1);
  const checksum = createHash("sha256").update(data).digest("base64");
  for (const index of [0, 65536 * 2048 - 1]) {
    const block = { SnapshotId, BlockIndex: index, BlockData: data, DataLength: data.length, Checksum: checksum, ChecksumAlgorithm: "SHA256" };
    await client.send(new PutSnapshotBlockCommand(block));
  }
  await client.send(new CompleteSnapshotCommand({ SnapshotId, ChangedBlocksCount: 2 }));
  return SnapshotId;
}

/**
 * The requests. `setup` runs before the probe starts and is not measured; `run` is, and answers
 * what the server said. `moto: false` where moto_server does not serve the request as EC2 does.
 */
const KINDS = [
  { name: "run-100000", what: "RunInstances MinCount=MaxCount=100000", setup: firstImage, run: (server, image) => launch(server, image, 100000, 100000) },
  // moto would launch all 100,000.
  { name: "run-max", what: "RunInstances MinCount=1 MaxCount=100000", moto: false, setup: firstImage, run: (server, image) => launch(server, image, 1, 1e5) },
  { name: "run-1000", what: "RunInstances MinCount=MaxCount=1000", setup: firstImage, run: (server, image) => launch(server, image, 1000, 1000) },
  {
    name: "describe-1000",
    what: "DescribeInstances of 1,000 instances",
    setup: async (server) => launch(server, await firstImage(server), 1000, 1000),
    run: (server) => ec2(server, { Action: "DescribeInstances" }),
  },
  {
    name: "wildcards",
    what: "DescribeTags, 200 values `*a*a…*a*b` (126 stars) against 1,000 tag values of 255 `a`",
    setup: async (server) => tag(server, await thousandInstances(server), { "Tag.1.Key": "k", "Tag.1.Value": "a".repeat(255) }),
    run: (server) => ec2(server, { Action: "DescribeTags", "Filter.1.Name": "value", ...numbered("Filter.1.Value", Array(200).fill(PATHOLOGICAL)) }),
  },
  { name: "create-tags", what: "CreateTags, 1,000 instances × 50 tags", setup: thousandInstances, run: (server, ids) => tag(server, ids, fiftyTags) },
  {
    name: "create-tags-5000",
    what: "CreateTags, 5,000 resources (launch templates, which neither server keeps)",
    run: (server) =>
      tag(
        server,
        Array.from({ length: 5000 }, (_, i) => hexId("lt", i + 1)),
        { "Tag.1.Key": "k", "Tag.1.Value": "v" },
      ),
  },
  {
    name: "describe-tags",
    what: "DescribeTags of 50,000 tags",
    setup: async (server) => tag(server, await thousandInstances(server), fiftyTags),
    run: (server) => ec2(server, { Action: "DescribeTags" }),
  },
  {
    name: "describe-ids",
    what: "DescribeVolumes of 9,998 ids (a 10,000-parameter request)",
    run: (server) =>
      ec2(server, {
        Action: "DescribeVolumes",
        ...numbered(
          "VolumeId",
          Array.from({ length: 9998 }, (_, i) => hexId("vol", i + 1)),
        ),
      }),
  },
  {
    name: "delete-objects",
    what: "DeleteObjects of 1,000 keys",
    async setup(server) {
      const client = s3(server);
      await client.send(new CreateBucketCommand({ Bucket: "stall" }));
      const put = (i) => client.send(new PutObjectCommand({ Bucket: "stall", Key: `key-${i}`, Body: "x" }));
      for (let i = 0; i < 1000; i += 50) await Promise.all(Array.from({ length: 50 }, (_, j) => put(i + j)));
    },
    async run(server) {
      const Objects = Array.from({ length: 1000 }, (_, i) => ({ Key: `key-${i}` }));
      const options = { abortSignal: AbortSignal.timeout(TIMEOUT_MS) };
      const answer = await s3(server).send(new DeleteObjectsCommand({ Bucket: "stall", Delete: { Objects } }), options);
      return { status: 200, code: answer.Errors?.length ? `${answer.Errors.length} errors` : undefined };
    },
  },
  {
    name: "rsa-keys",
    what: "CreateKeyPair (RSA) ×20 at once",
    async run(server) {
      const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => ec2(server, { Action: "CreateKeyPair", KeyName: `stall-${i}`, KeyType: "rsa" })));
      return answers.find((a) => a.status !== 200) ?? answers[0];
    },
  },
  {
    name: "ebs-lists",
    what: "ListSnapshotBlocks and ListChangedBlocks of 64 TiB snapshots",
    async setup(server) {
      const first = await hugeSnapshot(server);
      return { first, second: await hugeSnapshot(server, first) };
    },
    async run(server, { first, second }) {
      const client = ebs(server);
      const options = { abortSignal: AbortSignal.timeout(TIMEOUT_MS) };
      await client.send(new ListSnapshotBlocksCommand({ SnapshotId: second, MaxResults: 10000 }), options);
      await client.send(new ListChangedBlocksCommand({ FirstSnapshotId: first, SecondSnapshotId: second, MaxResults: 10000 }), options);
      return { status: 200 };
    },
  },
];

/** One request on a fresh server, probed; the server is stopped afterwards whatever happened. */
async function measure(kind, server) {
  const probeUrl = server.name === "kiln" ? `http://127.0.0.1:${server.port}/_kiln/health` : `http://127.0.0.1:${server.port}/moto-api/config`;
  try {
    // The region is made on first use: not part of any request measured.
    await ec2(server, { Action: "DescribeAvailabilityZones" });
    const prepared = await kind.setup?.(server);
    const probe = startLatencyProbe(probeUrl);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const started = performance.now();
    const failed = (error) => ({ status: 0, code: error.name === "TimeoutError" ? `no answer in ${TIMEOUT_MS / 1000} s` : error.name });
    const answer = await kind.run(server, prepared).catch(failed);
    const seconds = (performance.now() - started) / 1000;
    const report = await probe.stop();
    return { answer: answer.code ?? String(answer.status), seconds, worstMs: report.worstMs, probes: report.count };
  } finally {
    await server.stop();
  }
}

const format = (r) => (r ? `${r.worstMs.toFixed(0).padStart(6)} ms  ${r.seconds.toFixed(2).padStart(6)} s  ${r.answer}` : "—");

console.log(`bench/stall: the longest wait for a probe while each request runs (timeout ${TIMEOUT_MS / 1000} s)\n`);
const kinds = KINDS.filter((kind) => !args.only || args.only.split(",").includes(kind.name));
const rows = [];
for (const kind of kinds) {
  const kiln = await measure(kind, await startKiln(join(work, `${kind.name}-kiln`)));
  let moto;
  if (kind.moto !== false && !args["no-moto"]) {
    const server = await startMoto();
    if (server) moto = await measure(kind, server);
  }
  rows.push({ kind, kiln, moto });
  console.log(`${kind.what}\n  kiln  ${format(kiln)}\n  moto  ${format(moto)}`);
}
console.log("\n| Request | Kiln: worst health wait | Kiln: answer | moto_server: worst probe wait | moto_server: answer |\n| --- | --- | --- | --- | --- |");
for (const { kind, kiln, moto } of rows) {
  const answer = (r) => (r ? `${r.answer}, ${r.seconds.toFixed(2)} s` : "—");
  console.log(`| ${kind.what} | ${kiln.worstMs.toFixed(0)} ms | ${answer(kiln)} | ${moto ? `${moto.worstMs.toFixed(0)} ms` : "—"} | ${answer(moto)} |`);
}
process.exit(0);
