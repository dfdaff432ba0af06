// A bootable Debian 12 disk for the boot tests, made by scripts/debian-image.sh from Debian's
// packages once and kept: in KILN_TEST_IMAGE_CACHE (default ~/.cache/kiln), named by a hash of
// the script, so a changed script builds a new one. KILN_TEST_DEBIAN_IMAGE names a ready one.
import { createHash } from "node:crypto";
import { createReadStream, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { DescribeImportImageTasksCommand, type EC2Client, ImportImageCommand } from "@aws-sdk/client-ec2";
import { CreateBucketCommand, type S3Client } from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { run } from "./tools.js";

const SCRIPT = fileURLToPath(new URL("../../../scripts/debian-image.sh", import.meta.url));

/** The disk's path (raw), built first when the cache has none. */
export async function debianImage(): Promise<string> {
  if (process.env.KILN_TEST_DEBIAN_IMAGE) return process.env.KILN_TEST_DEBIAN_IMAGE;
  const hash = createHash("sha256").update(readFileSync(SCRIPT)).digest("hex").slice(0, 16);
  const cache = process.env.KILN_TEST_IMAGE_CACHE ?? join(homedir(), ".cache", "kiln");
  const image = join(cache, `debian-12-${hash}.raw`);
  if (existsSync(image)) return image;
  mkdirSync(cache, { recursive: true });
  const partial = `${image}.${process.pid}.part`;
  try {
    await run("bash", [SCRIPT, partial], { env: { DEBIAN_DEB_CACHE: join(cache, "debs") } });
    renameSync(partial, image);
  } finally {
    rmSync(partial, { force: true });
  }
  return image;
}

/**
 * The Debian disk imported into a Kiln as users import theirs: converted to qcow2 (only its
 * allocated clusters travel), uploaded to `bucket`, ImportImage; the new AMI's id.
 */
export async function importDebianImage(ec2: EC2Client, s3: S3Client, bucket = "debian-images"): Promise<string> {
  const raw = await debianImage();
  const dir = mkdtempSync(join(tmpdir(), "kiln-debian-"));
  try {
    const qcow2 = join(dir, "debian-12.qcow2");
    await run("qemu-img", ["convert", "-f", "raw", "-O", "qcow2", raw, qcow2]);
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    await new Upload({ client: s3, params: { Bucket: bucket, Key: "debian-12.qcow2", Body: createReadStream(qcow2) } }).done();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const { ImportTaskId } = await ec2.send(new ImportImageCommand({ DiskContainers: [{ Format: "qcow2", Url: `s3://${bucket}/debian-12.qcow2` }] }));
  const deadline = Date.now() + 600_000;
  for (;;) {
    const { ImportImageTasks } = await ec2.send(new DescribeImportImageTasksCommand({ ImportTaskIds: [ImportTaskId!] }));
    const task = ImportImageTasks![0]!;
    if (task.Status === "completed") return task.ImageId!;
    if (task.Status === "deleted") throw new Error(`the import of the Debian image failed: ${task.StatusMessage}`);
    if (Date.now() > deadline) throw new Error(`the import of the Debian image is still ${task.StatusMessage} after 10 minutes`);
    await new Promise((r) => setTimeout(r, 500));
  }
}
