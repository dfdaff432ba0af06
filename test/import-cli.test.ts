// `kiln import FILE` as a user runs it: a separate process uploading to a running Kiln, its
// AMI id alone on stdout; a disk that cannot be imported exits non-zero with the task's reason.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { DescribeImagesCommand } from "@aws-sdk/client-ec2";
import { CreateBucketCommand, HeadObjectCommand } from "@aws-sdk/client-s3";
import { convertDisk, makeDataDisk, makeLinuxDisk } from "./helpers/disks.js";
import { startTestKiln, type TestKiln } from "./helpers/kiln.js";
import { KILN_BIN, runKiln } from "./helpers/process.js";
import { scratch } from "./helpers/tools.js";

let kiln: TestKiln;
before(async () => {
  kiln = await startTestKiln();
});
after(() => kiln.close());

function kilnImport(args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, AWS_ACCESS_KEY_ID: "test", AWS_SECRET_ACCESS_KEY: "test", ...extraEnv };
  // Not the SDK's switch from this environment: the CLI must set it itself.
  delete env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED;
  return new Promise((resolve) => {
    execFile(process.execPath, [KILN_BIN, "import", ...args, "--endpoint", kiln.url], { env }, (error, stdout, stderr) =>
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe("kiln import", () => {
  it("uploads with multipart, imports, reports progress and prints the AMI id", async () => {
    const dir = scratch();
    const disk = await convertDisk(await makeLinuxDisk(dir, { extraMiB: 8 }), "qcow2");
    const result = await kilnImport([disk, "--bucket", "uploads", "--key", "vm/disk.qcow2", "--part-size", "5", "--description", "from the CLI"]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^ami-[0-9a-f]{17}\n$/);
    assert.match(result.stderr, /upload 100%/);
    // Under Node 20 the AWS SDK would add its Node-version warning here (Kiln turns it off).
    assert.doesNotMatch(result.stderr, /Warning|AWS SDK for JavaScript/);
    const head = await kiln.s3().send(new HeadObjectCommand({ Bucket: "uploads", Key: "vm/disk.qcow2" }));
    assert.match(head.ETag!, /-\d+"$/, "uploaded in parts");
    const { Images } = await kiln.ec2().send(new DescribeImagesCommand({ ImageIds: [result.stdout.trim()] }));
    assert.equal(Images![0]!.Description, "from the CLI");
    assert.equal(Images![0]!.State, "available");
  });

  it("exits non-zero with the reason when the disk has no operating system", async () => {
    const result = await kilnImport([await makeDataDisk(scratch()), "--no-progress"]);
    assert.notEqual(result.code, 0);
    assert.equal(result.stdout, "");
    assert.match(result.stderr, /ClientError: Unknown OS \/ Missing OS files\./);
  });

  it("--help says which endpoint, region and credentials it uses", async () => {
    const { code, stdout } = await runKiln(["import", "--help"]);
    assert.equal(code, 0);
    for (const name of ["--endpoint", "KILN_ENDPOINT", "--region", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"]) {
      assert.match(stdout, new RegExp(`^Where it sends the file[^]*${name}`, "m"));
    }
  });

  it("says why when the bucket is another account's", async () => {
    await kiln.s3().send(new CreateBucketCommand({ Bucket: "taken-bucket" }));
    const result = await kilnImport([await makeDataDisk(scratch()), "--bucket", "taken-bucket", "--no-progress"], { AWS_ACCESS_KEY_ID: "111122223333" });
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /^kiln: bucket taken-bucket answered 403: another account owns it .*--bucket.*or the credentials are wrong/m);
  });

  it("exits non-zero with a clear message for a missing file", async () => {
    const result = await kilnImport(["/nonexistent/disk.vmdk", "--no-progress"]);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /kiln: .*no such file/i);
  });
});
