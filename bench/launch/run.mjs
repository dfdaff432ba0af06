#!/usr/bin/env node
// bench/launch: what an image build or `terraform apply` asks of EC2 around an instance, timed
// as those tools run it (one call after another through @aws-sdk/client-ec2), on Kiln and on
// moto_server side by side in one run. One cycle is: CreateKeyPair, CreateSecurityGroup,
// AuthorizeSecurityGroupIngress, RunInstances, DescribeInstances, DescribeSecurityGroups,
// DescribeSubnets, DescribeInstanceAttribute, TerminateInstances, DeleteSecurityGroup,
// DeleteKeyPair. Prints cycles/s, the median cycle and the ratio.
//
//   npm run bench:launch                   # 200 cycles on each server
//   node bench/launch/run.mjs --cycles 50
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import {
  AuthorizeSecurityGroupIngressCommand,
  CreateKeyPairCommand,
  CreateSecurityGroupCommand,
  DeleteKeyPairCommand,
  DeleteSecurityGroupCommand,
  DescribeImagesCommand,
  DescribeInstanceAttributeCommand,
  DescribeInstancesCommand,
  DescribeSecurityGroupsCommand,
  DescribeSubnetsCommand,
  EC2Client,
  RunInstancesCommand,
  TerminateInstancesCommand,
} from "@aws-sdk/client-ec2";
import { onExit, startKiln, startMoto } from "../lib/servers.mjs";

const { values: args } = parseArgs({ options: { cycles: { type: "string", default: "200" } } });
const CYCLES = Number(args.cycles);
const WARMUP_CYCLES = 10;

async function cycle(ec2, imageId, n) {
  const key = `bench-key-${n}`;
  await ec2.send(new CreateKeyPairCommand({ KeyName: key, KeyType: "ed25519" }));
  const { GroupId } = await ec2.send(new CreateSecurityGroupCommand({ GroupName: `bench-group-${n}`, Description: "bench" }));
  await ec2.send(
    new AuthorizeSecurityGroupIngressCommand({
      GroupId,
      IpPermissions: [{ IpProtocol: "tcp", FromPort: 22, ToPort: 22, IpRanges: [{ CidrIp: "10.0.0.0/8" }] }],
    }),
  );
  const run = await ec2.send(
    new RunInstancesCommand({ ImageId: imageId, MinCount: 1, MaxCount: 1, InstanceType: "t3.micro", KeyName: key, SecurityGroupIds: [GroupId] }),
  );
  const instanceId = run.Instances[0].InstanceId;
  await ec2.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }));
  await ec2.send(new DescribeSecurityGroupsCommand({ GroupIds: [GroupId] }));
  await ec2.send(new DescribeSubnetsCommand({ Filters: [{ Name: "default-for-az", Values: ["true"] }] }));
  await ec2.send(new DescribeInstanceAttributeCommand({ InstanceId: instanceId, Attribute: "userData" }));
  await ec2.send(new TerminateInstancesCommand({ InstanceIds: [instanceId] }));
  await ec2.send(new DeleteSecurityGroupCommand({ GroupId }));
  await ec2.send(new DeleteKeyPairCommand({ KeyName: key }));
}

async function measure(server) {
  const ec2 = new EC2Client({
    endpoint: `http://127.0.0.1:${server.port}`,
    region: "us-east-1",
    credentials: { accessKeyId: "test", secretAccessKey: "test" },
    maxAttempts: 1,
  });
  const images = await ec2.send(new DescribeImagesCommand({ Owners: ["amazon"], Filters: [{ Name: "architecture", Values: ["x86_64"] }] }));
  const imageId = images.Images[0].ImageId;
  for (let i = 0; i < WARMUP_CYCLES; i++) await cycle(ec2, imageId, `warm-${i}`);
  const times = [];
  const start = performance.now();
  for (let i = 0; i < CYCLES; i++) {
    const t = performance.now();
    await cycle(ec2, imageId, i);
    times.push(performance.now() - t);
  }
  const seconds = (performance.now() - start) / 1000;
  ec2.destroy();
  times.sort((a, b) => a - b);
  return { cyclesPerSecond: CYCLES / seconds, medianMs: times[Math.floor(times.length / 2)], p99Ms: times[Math.floor(times.length * 0.99)] };
}

const dataDir = mkdtempSync(join(tmpdir(), "kiln-bench-launch-"));
onExit(() => rmSync(dataDir, { recursive: true, force: true }));
const servers = [await startKiln(dataDir)];
const moto = await startMoto();
if (moto) servers.push(moto);

console.log(`bench/launch: ${CYCLES} cycles of 11 calls each (after ${WARMUP_CYCLES} to warm up), one server at a time\n`);
const results = {};
for (const server of servers) {
  results[server.name] = await measure(server);
  const r = results[server.name];
  console.log(
    `${server.name.padEnd(5)} ${r.cyclesPerSecond.toFixed(1).padStart(7)} cycles/s   median cycle ${r.medianMs.toFixed(1)} ms   p99 ${r.p99Ms.toFixed(1)} ms`,
  );
}
if (results.moto) console.log(`\nKiln / moto_server: ${(results.kiln.cyclesPerSecond / results.moto.cyclesPerSecond).toFixed(1)}x the cycles per second`);
process.exit(0);
