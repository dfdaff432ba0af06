// `kiln import FILE`: a local disk image into an AMI on a running Kiln, the way a user would do
// it with the AWS tools: upload to S3 (multipart, several parts at once), ImportImage, then poll
// the task. Progress bars go to stderr, the AMI id alone to stdout, so scripts can capture it.
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { basename } from "node:path";
import { DescribeImportImageTasksCommand, DescribeImportSnapshotTasksCommand, EC2Client, ImportImageCommand, ImportSnapshotCommand } from "@aws-sdk/client-ec2";
import { CreateBucketCommand, HeadBucketCommand, S3Client } from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import cliProgress from "cli-progress";

export interface ImportOptions {
  endpoint: string;
  region: string;
  bucket: string;
  key?: string;
  format?: string;
  description?: string;
  /** ImportSnapshot (a data disk, no AMI) instead of ImportImage. */
  snapshot?: boolean;
  partSizeMiB: number;
  progress: boolean;
}

/** What the user sees as the work goes: bars on a terminal, a line per step otherwise. */
class Progress {
  private readonly bars?: cliProgress.MultiBar;
  private upload?: cliProgress.SingleBar;
  private convert?: cliProgress.SingleBar;
  private lastLine = "";

  constructor(private readonly enabled: boolean) {
    if (enabled && process.stderr.isTTY) {
      this.bars = new cliProgress.MultiBar(
        { stream: process.stderr, format: " {step} |{bar}| {percentage}% {detail}", hideCursor: true, clearOnComplete: false, etaBuffer: 20 },
        cliProgress.Presets.shades_classic,
      );
    }
  }

  uploaded(loaded: number, total: number) {
    const detail = `${mib(loaded)}/${mib(total)} MiB`;
    if (this.bars) {
      this.upload ??= this.bars.create(total, 0, { step: "upload ", detail });
      this.upload.update(loaded, { detail });
    } else this.line(`upload ${Math.floor((loaded / Math.max(1, total)) * 100)}%`, loaded === total);
  }

  converting(percent: number, status: string) {
    if (this.bars) {
      this.convert ??= this.bars.create(100, 0, { step: "convert", detail: status });
      this.convert.update(percent, { detail: status });
    } else this.line(`convert ${status}`);
  }

  private line(text: string, force = false) {
    if (!this.enabled || (!force && text === this.lastLine)) return;
    this.lastLine = text;
    process.stderr.write(`${text}\n`);
  }

  stop() {
    this.bars?.stop();
  }
}

const mib = (bytes: number) => (bytes / 1024 / 1024).toFixed(1);

function credentials() {
  return {
    accessKeyId: process.env.AWS_ACCESS_KEY_ID ?? "test",
    secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY ?? "test",
    sessionToken: process.env.AWS_SESSION_TOKEN,
  };
}

/** Uploads and imports `file`; resolves the AMI (or snapshot) id, rejects with the task's message. */
export async function importFile(file: string, options: ImportOptions): Promise<string> {
  const info = await stat(file);
  if (!info.isFile()) throw new Error(`${file} is not a file`);
  const clientConfig = { endpoint: options.endpoint, region: options.region, credentials: credentials() };
  const s3 = new S3Client({ ...clientConfig, forcePathStyle: true });
  const ec2 = new EC2Client(clientConfig);
  const key = options.key ?? basename(file);
  const progress = new Progress(options.progress);
  try {
    await ensureBucket(s3, options.bucket, options.region);
    const upload = new Upload({
      client: s3,
      params: { Bucket: options.bucket, Key: key, Body: createReadStream(file, { highWaterMark: 1 << 20 }), ContentLength: info.size },
      partSize: options.partSizeMiB * 1024 * 1024,
      queueSize: 4,
      leavePartsOnError: false,
    });
    upload.on("httpUploadProgress", (p) => progress.uploaded(p.loaded ?? 0, p.total ?? info.size));
    await upload.done();
    progress.uploaded(info.size, info.size);

    const container = { Format: options.format, UserBucket: { S3Bucket: options.bucket, S3Key: key }, Description: options.description };
    if (options.snapshot) {
      const { ImportTaskId } = await ec2.send(new ImportSnapshotCommand({ DiskContainer: container, Description: options.description }));
      for (;;) {
        const { ImportSnapshotTasks } = await ec2.send(new DescribeImportSnapshotTasksCommand({ ImportTaskIds: [ImportTaskId!] }));
        const detail = ImportSnapshotTasks?.[0]?.SnapshotTaskDetail ?? {};
        if (detail.Status === "completed") return detail.SnapshotId!;
        if (detail.Status === "deleted" || detail.Status === "deleting") throw new Error(detail.StatusMessage ?? `import ${ImportTaskId} was ${detail.Status}`);
        progress.converting(Number(detail.Progress ?? 0), detail.StatusMessage ?? detail.Status ?? "");
        await sleep(500);
      }
    }
    const { ImportTaskId } = await ec2.send(new ImportImageCommand({ DiskContainers: [container], Description: options.description }));
    for (;;) {
      const { ImportImageTasks } = await ec2.send(new DescribeImportImageTasksCommand({ ImportTaskIds: [ImportTaskId!] }));
      const task = ImportImageTasks?.[0] ?? {};
      if (task.Status === "completed") {
        progress.converting(100, "completed");
        return task.ImageId!;
      }
      if (task.Status === "deleted" || task.Status === "deleting") throw new Error(task.StatusMessage ?? `import ${ImportTaskId} was ${task.Status}`);
      progress.converting(Number(task.Progress ?? 0), task.StatusMessage ?? task.Status ?? "");
      await sleep(500);
    }
  } finally {
    progress.stop();
    s3.destroy();
    ec2.destroy();
  }
}

async function ensureBucket(s3: S3Client, bucket: string, region: string) {
  try {
    await s3.send(new HeadBucketCommand({ Bucket: bucket }));
  } catch (error) {
    const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    // A HEAD answer has no body, so the SDK can only call a 403 "UnknownError": say what it means.
    if (status === 403) {
      throw new Error(`bucket ${bucket} answered 403: another account owns it (names are global: pick another with --bucket), or the credentials are wrong`);
    }
    if (status !== 404) throw error;
    await s3.send(
      new CreateBucketCommand({ Bucket: bucket, CreateBucketConfiguration: region === "us-east-1" ? undefined : { LocationConstraint: region as never } }),
    );
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
