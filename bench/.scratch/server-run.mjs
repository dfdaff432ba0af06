import { createReadStream, readFileSync, writeFileSync, rmSync } from "node:fs";
import { DescribeImportImageTasksCommand, EC2Client, ImportImageCommand } from "@aws-sdk/client-ec2";
import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { freePort, start, waitUntilUp } from "/work/main/bench/lib/servers.mjs";
const formats = process.argv.slice(2);
if (!process.env.KEEP) rmSync("/tmp/prof/kiln", { recursive: true, force: true });
const port = await freePort();
const extra = process.env.KILN_PROF ? ["--cpu-prof", "--cpu-prof-dir=/tmp/prof/cpu"] : process.env.KILN_EXTRA ? process.env.KILN_EXTRA.split(" ") : [];
const child = start(process.execPath, [...extra, "/work/main/dist/src/cli/main.js", "serve", "--port", String(port), "--data-dir", "/tmp/prof/kiln"], "kiln");
await waitUntilUp(`http://127.0.0.1:${port}/_kiln/health`, "Kiln");
const kiln = { port, pid: child.pid };
const endpoint = `http://127.0.0.1:${kiln.port}`;
const credentials = { accessKeyId: "test", secretAccessKey: "test" };
const ec2 = new EC2Client({ endpoint, region: "us-east-1", credentials, maxAttempts: 1 });
const s3 = new S3Client({ endpoint, region: "us-east-1", credentials, forcePathStyle: true, maxAttempts: 1 });
if (!process.env.KEEP) await s3.send(new CreateBucketCommand({ Bucket: "bench" }));
const peak = () => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${kiln.pid}/status`, "utf8"))[1]) / 1024;
const DECL = { "vmdk-stream": "VMDK", "vhd-dynamic": "VHD", vhdx: "VHDX", qcow2: "QCOW2" };
for (const f of formats) {
  if (!process.env.KEEP) await new Upload({ client: s3, params: { Bucket: "bench", Key: f, Body: createReadStream(`/tmp/prof/disk.raw.${f}`) }, partSize: 64 << 20, queueSize: 2 }).done();
  for (let i = 0; i < Number(process.env.RUNS ?? 2); i++) {
    writeFileSync(`/proc/${kiln.pid}/clear_refs`, "5");
    const base = peak();
    const cpu = () => { const f = readFileSync(`/proc/${kiln.pid}/stat`, "utf8").split(") ")[1].split(" "); return [Number(f[11]) / 100, Number(f[12]) / 100]; };
    (await import("node:child_process")).execSync("sync");
    const perf = process.env.PERF ? (await import("node:child_process")).spawn("perf", ["record", "-a", "-g", "-o", "/tmp/prof/perf.data"], { stdio: "ignore" }) : undefined;
    if (perf) await new Promise((r) => setTimeout(r, 300));
    const c0 = cpu();
    const t = performance.now(); console.log('request', Date.now());
    const { ImportTaskId } = await ec2.send(new ImportImageCommand({ DiskContainers: [{ Format: DECL[f], UserBucket: { S3Bucket: "bench", S3Key: f } }] }));
    let task;
    for (;;) { task = (await ec2.send(new DescribeImportImageTasksCommand({ ImportTaskIds: [ImportTaskId] }))).ImportImageTasks[0]; if (task.Status === "completed" || task.Status === "deleted") break; await new Promise((r) => setTimeout(r, 50)); }
    if (perf) { perf.kill("SIGINT"); await new Promise((r) => perf.once("exit", r)); }
    console.log(f, task.Status, ((performance.now() - t) / 1000).toFixed(2), "s", "rss base", base.toFixed(0), "peak", peak().toFixed(0), "cpu user", (cpu()[0] - c0[0]).toFixed(2), "sys", (cpu()[1] - c0[1]).toFixed(2));
  }
}
process.kill(kiln.pid, "SIGINT");
await new Promise((r) => setTimeout(r, 2000));
process.exit(0);
