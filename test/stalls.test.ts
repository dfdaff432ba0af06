// No request stalls the server. The heaviest requests a client can send (a count of 100,000, a
// launch as large as the instance limit allows, pathological wildcards, a CreateTags of 50,000
// tags, a DeleteObjects of 1,000 keys, RSA keys, block lists of 64 TiB snapshots, a request of
// thousands of parameters) all run at once against a Kiln of its own process, while GET
// /_kiln/live (which asks no store) is asked one request after another from a thread of its
// own: every answer must come within 100 ms. Before Kiln worked in slices of the event loop, the
// first of these alone held health unanswered for 20 s. GET /_kiln/health, which asks the
// stores too, is held to the same bound where they are local (SQLite or PostgreSQL, and a data
// folder); an object store answers in its own time, which is not Kiln's. The requests are raw signed HTTP, their answers read as text:
// parsing a thousand instances' XML here would take the CPU the server is measured on.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { CompleteSnapshotCommand, EBSClient, PutSnapshotBlockCommand, StartSnapshotCommand } from "@aws-sdk/client-ebs";
import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3";
import { sharedStores, testObjectStoreEndpoint, type SharedStores } from "./helpers/kiln.js";
import { startLatencyProbe, type LatencyReport } from "./helpers/latency-probe.js";
import { spawnKiln, type KilnProcess } from "./helpers/process.js";
import { errorCode, form, signedRequest, type RawResponse } from "./helpers/signed.js";

const credentials = { accessKeyId: "test", secretAccessKey: "test" };
const BOUND_MS = 100;

const numbered = (name: string, values: readonly string[]) => Object.fromEntries(values.map((value, i) => [`${name}.${i + 1}`, value]));
const tagsOf = (count: number) =>
  Object.fromEntries(
    Array.from({ length: count }, (_, i) => [
      [`Tag.${i + 1}.Key`, `key-${i}`],
      [`Tag.${i + 1}.Value`, "v".repeat(200)],
    ]).flat(),
  );
const hexIds = (prefix: string, count: number, from = 1) => Array.from({ length: count }, (_, i) => `${prefix}-${(from + i).toString(16).padStart(17, "0")}`);

describe("no request stalls the server", () => {
  let stores: SharedStores;
  let kiln: KilnProcess;
  const ec2 = (params: Record<string, string>) => signedRequest(kiln.url, { body: form({ Version: "2016-11-15", ...params }) });

  before(async () => {
    stores = await sharedStores();
    kiln = await spawnKiln(["serve", "--port", "0", "--data-dir", stores.folder()], stores.env);
  });

  after(async () => {
    await kiln?.stop();
    await stores?.drop();
  });

  it("answers liveness (and health, its stores local) within 100 ms while the heaviest requests run at once", async (t) => {
    // Set-up, not measured: an image, tags to match against, a bucket, two 64 TiB snapshots.
    const images = await ec2({ Action: "DescribeImages", "Owner.1": "amazon", "Filter.1.Name": "architecture", "Filter.1.Value.1": "x86_64" });
    const imageId = /<imageId>(ami-[0-9a-f]+)<\/imageId>/.exec(images.text)![1]!;
    const templates = hexIds("lt", 1000);
    assert.equal((await ec2({ Action: "CreateTags", ...numbered("ResourceId", templates), "Tag.1.Key": "k", "Tag.1.Value": "a".repeat(255) })).status, 200);
    const s3 = new S3Client({ endpoint: kiln.url, region: "us-east-1", credentials, forcePathStyle: true, maxAttempts: 1 });
    await s3.send(new CreateBucketCommand({ Bucket: "stalls" }));
    s3.destroy();
    const ebs = new EBSClient({ endpoint: kiln.url, region: "us-east-1", credentials, maxAttempts: 1 });
    const hugeSnapshot = async (parent?: string) => {
      const { SnapshotId } = await ebs.send(new StartSnapshotCommand({ VolumeSize: 65536, ParentSnapshotId: parent }));
      const data = Buffer.alloc(512 * 1024, parent ? 2 : 1);
      const checksum = createHash("sha256").update(data).digest("base64");
      for (const index of [0, 65536 * 2048 - 1]) {
        const block = { SnapshotId, BlockIndex: index, BlockData: data, DataLength: data.length, Checksum: checksum, ChecksumAlgorithm: "SHA256" as const };
        await ebs.send(new PutSnapshotBlockCommand(block));
      }
      await ebs.send(new CompleteSnapshotCommand({ SnapshotId, ChangedBlocksCount: 2 }));
      return SnapshotId!;
    };
    const first = await hugeSnapshot();
    const second = await hugeSnapshot(first);
    ebs.destroy();

    const pathological = `${"*a".repeat(126)}*b`;
    const expect = (code: string | undefined) => (answer: RawResponse) => {
      assert.equal(code === undefined ? answer.status : errorCode(answer.text), code ?? 200, answer.text.slice(0, 300));
      return answer;
    };
    /** The requests, at full size, or `small` to warm the server's code up first (a fresh process compiles as it goes). */
    const launch = (min: string, max: string) => ec2({ Action: "RunInstances", ImageId: imageId, MinCount: min, MaxCount: max, InstanceType: "t3.micro" });
    const heaviest = (small: boolean) => {
      const n = (full: number) => (small ? 2 : full);
      const deleteBody = `<Delete>${Array.from({ length: n(1000) }, (_, i) => `<Object><Key>gone-${i}</Key></Object>`).join("")}</Delete>`;
      return [
        launch("100000", "100000").then(expect("InstanceLimitExceeded")),
        // As large as the instance limit (1,000 by default) allows.
        launch("1", String(n(100000))).then(expect(undefined)),
        ec2({ Action: "DescribeTags", "Filter.1.Name": "value", ...numbered("Filter.1.Value", Array(n(200)).fill(pathological)) }).then(expect(undefined)),
        ec2({ Action: "DescribeTags", ...numbered("Filter.1.Value", Array(201).fill("x")), "Filter.1.Name": "value" }).then(expect("FilterLimitExceeded")),
        ec2({ Action: "CreateTags", ...numbered("ResourceId", hexIds("lt", n(1000), small ? 3000 : 5000)), ...tagsOf(n(50)) }).then(expect(undefined)),
        ec2({ Action: "CreateTags", ...numbered("ResourceId", hexIds("lt", 1001, 9000)), ...tagsOf(1) }).then(expect("ResourceCountExceeded")),
        ec2({ Action: "DescribeVolumes", ...numbered("VolumeId", hexIds("vol", n(5000))) }).then(expect("InvalidVolume.NotFound")),
        signedRequest(kiln.url, {
          method: "POST",
          service: "s3",
          path: "/stalls",
          query: { delete: "" },
          body: deleteBody,
          contentType: "application/xml",
          headers: { "content-md5": createHash("md5").update(deleteBody).digest("base64") },
        }).then(expect(undefined)),
        ...[0, 1].map((i) => ec2({ Action: "CreateKeyPair", KeyName: `stalls-${small}-${i}`, KeyType: small ? "ed25519" : "rsa" }).then(expect(undefined))),
        signedRequest(kiln.url, { service: "ebs", path: `/snapshots/${second}/blocks`, query: { maxResults: "10000" } }).then(expect(undefined)),
        signedRequest(kiln.url, { service: "ebs", path: `/snapshots/${second}/changedblocks`, query: { firstSnapshotId: first, maxResults: "10000" } }).then(
          expect(undefined),
        ),
      ];
    };
    const [, warmLaunch] = await Promise.all(heaviest(true));
    // Terminated, they leave the whole instance limit to the launch measured.
    const warmInstances = [...warmLaunch!.text.matchAll(/<instanceId>(i-[0-9a-f]+)<\/instanceId>/g)].map((m) => m[1]!);
    await ec2({ Action: "TerminateInstances", ...numbered("InstanceId", warmInstances) }).then(expect(undefined));

    const routes = testObjectStoreEndpoint ? ["live"] : ["live", "health"];
    const probes = routes.map((route) => startLatencyProbe(`${kiln.url}/_kiln/${route}`));
    const started = performance.now();
    let answers: RawResponse[];
    let reports: LatencyReport[];
    try {
      answers = await Promise.all(heaviest(false));
    } finally {
      reports = await Promise.all(probes.map((probe) => probe.stop()));
    }
    const seconds = (performance.now() - started) / 1000;
    for (const [i, report] of reports.entries())
      t.diagnostic(`${routes[i]} asked ${report.count} times in ${seconds.toFixed(1)} s; worst wait ${report.worstMs.toFixed(0)} ms`);
    const [, launched, described] = answers as [RawResponse, RawResponse, RawResponse];

    assert.equal((launched.text.match(/<instanceId>/g) ?? []).length, 1000, "the launch as large as the instance limit allows");
    assert.equal((described.text.match(/<item>/g) ?? []).length, 0, "no value of 255 `a` ends in b");
    for (const [i, report] of reports.entries()) {
      const route = routes[i];
      assert.equal(report.failures, 0, `${route} failed`);
      assert.ok(report.count >= 10, `${route} was asked ${report.count} times in ${seconds.toFixed(1)} s`);
      const slow = report.latencies.filter((ms) => ms >= BOUND_MS);
      const worst = `worst ${report.worstMs.toFixed(0)} ms`;
      assert.deepEqual(slow, [], `${route} answers slower than ${BOUND_MS} ms of ${report.count} (${worst}) in ${seconds.toFixed(1)} s`);
    }
  });
});
