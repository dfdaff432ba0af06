// `kiln serve` as a process: flags and environment, structured request logs, and state that
// survives a kill -9.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { CreateTagsCommand, DescribeTagsCommand, DescribeVolumesCommand, EC2Client } from "@aws-sdk/client-ec2";
import { tempDir } from "./helpers/kiln.js";
import { runKiln, spawnKiln } from "./helpers/process.js";
import { createVolumes } from "./helpers/resources.js";
import { signedRequest } from "./helpers/signed.js";

const client = (url: string) =>
  new EC2Client({ endpoint: url, region: "us-east-1", credentials: { accessKeyId: "test", secretAccessKey: "test" }, maxAttempts: 1 });

describe("kiln serve", () => {
  it("keeps every committed change through kill -9, in the data directory KILN_DATA_DIR names", async () => {
    const dataDir = tempDir();
    const first = await spawnKiln(["serve", "--port", "0"], { KILN_DATA_DIR: dataDir });
    let resources: string[];
    try {
      resources = (await createVolumes(client(first.url), 20)).sort();
      await client(first.url).send(new CreateTagsCommand({ Resources: resources, Tags: [{ Key: "survives", Value: "yes" }] }));
    } finally {
      assert.equal(await first.stop("SIGKILL"), null);
    }
    assert.ok(existsSync(join(dataDir, "kiln.sqlite3")));

    const second = await spawnKiln(["serve", "--port", "0", "--data-dir", dataDir]);
    try {
      const { Tags } = await client(second.url).send(new DescribeTagsCommand({ Filters: [{ Name: "key", Values: ["survives"] }] }));
      assert.deepEqual(
        Tags!.map((t) => t.ResourceId),
        resources,
      );
      const { Volumes } = await client(second.url).send(new DescribeVolumesCommand({}));
      assert.deepEqual(Volumes!.map((v) => v.VolumeId).sort(), resources);
    } finally {
      await second.stop();
    }
  });

  it("writes one JSON log line per request with action, account, region, status and duration", async () => {
    const kiln = await spawnKiln(["serve", "--port", "0", "--data-dir", tempDir()]);
    try {
      await client(kiln.url).send(new DescribeTagsCommand({}));
      await fetch(`${kiln.url}/?Action=DescribeTags`);
      await new Promise((resolve) => setTimeout(resolve, 100));
      const requests = kiln.logs.filter((line) => line.msg === "request");
      assert.equal(requests.length, 2);
      const [ok, refused] = requests as Record<string, unknown>[];
      assert.equal(ok!.action, "DescribeTags");
      assert.equal(ok!.account, "000000000000");
      assert.equal(ok!.region, "us-east-1");
      assert.equal(ok!.status, 200);
      assert.equal(typeof ok!.durationMs, "number");
      assert.match(String(ok!.requestId), /^[0-9a-f-]{36}$/);
      assert.equal(refused!.status, 403);
      assert.equal(refused!.error, "MissingAuthenticationToken");
    } finally {
      assert.equal(await kiln.stop("SIGTERM"), 0);
    }
  });

  it("listens where --host/--port or KILN_HOST/KILN_PORT say", async () => {
    // Port 0 throughout: the system hands out a free port and Kiln reports where it listens. (A
    // port found free, let go and asked for again may be taken by then.) 4566 is the default: a
    // port 0 that was not read would show as 4566, or fail to start where 4566 is in use.
    const fromEnv = await spawnKiln(["serve", "--data-dir", tempDir()], { KILN_HOST: "localhost", KILN_PORT: "0" });
    try {
      const url = new URL(fromEnv.url);
      assert.equal(url.hostname, "localhost", "KILN_HOST was not read");
      assert.ok(Number(url.port) > 0 && url.port !== "4566", `KILN_PORT=0 was not read: ${fromEnv.url}`);
      assert.equal((await fetch(`${fromEnv.url}/_kiln/health`)).status, 200);
    } finally {
      await fromEnv.stop();
    }
    // The options win over the environment.
    const fromOptions = await spawnKiln(["serve", "--host", "127.0.0.1", "--port", "0", "--data-dir", tempDir()], {
      KILN_HOST: "localhost",
      KILN_PORT: "4566",
    });
    try {
      const url = new URL(fromOptions.url);
      assert.equal(url.hostname, "127.0.0.1", "--host did not win over KILN_HOST");
      assert.ok(Number(url.port) > 0 && url.port !== "4566", `--port 0 did not win over KILN_PORT: ${fromOptions.url}`);
      assert.equal((await fetch(`${fromOptions.url}/_kiln/health`)).status, 200);
    } finally {
      await fromOptions.stop();
    }
  });

  it("refuses POST /_kiln/reset when started with --no-reset", async () => {
    const kiln = await spawnKiln(["serve", "--port", "0", "--data-dir", tempDir(), "--no-reset"]);
    try {
      assert.equal((await signedRequest(kiln.url, { method: "POST", path: "/_kiln/reset" })).status, 403);
    } finally {
      await kiln.stop();
    }
  });

  it("exits non-zero with a clear message on bad settings", async () => {
    const badPort = await runKiln(["serve", "--port", "http"]);
    assert.equal(badPort.code, 1);
    assert.match(badPort.stderr, /port http is not a TCP port/);
    const badAccounts = await runKiln(["serve", "--port", "0"], { KILN_ACCOUNTS: "12345:key" });
    assert.equal(badAccounts.code, 1);
    assert.match(badAccounts.stderr, /accountId:accessKeyId:secretAccessKey/);
    const badDatabase = await runKiln(["serve", "--port", "0", "--database-url", "mysql://kiln:secret@127.0.0.1/kiln"]);
    assert.equal(badDatabase.code, 1);
    assert.match(badDatabase.stderr, /KILN_DATABASE_URL must be a postgres:\/\/ URL/);
    assert.doesNotMatch(badDatabase.stderr, /secret/, "the password is not printed");
    // Port 1 on the loopback: nothing listens there.
    const noDatabase = await runKiln(["serve", "--port", "0", "--data-dir", tempDir()], { KILN_DATABASE_URL: "postgres://kiln:secret@127.0.0.1:1/kiln" });
    assert.equal(noDatabase.code, 1);
    assert.match(noDatabase.stderr, /cannot open the metadata database postgres:\/\/kiln:…@127\.0\.0\.1:1\/kiln: .*ECONNREFUSED/);
    assert.doesNotMatch(noDatabase.stderr, /secret/, "the password is not printed");
  });
});
