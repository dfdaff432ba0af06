#!/usr/bin/env node
// bench/lookups: the ways infrastructure code finds an AMI, against Kiln and moto_server side by
// side: DescribeImages with an owner and a name filter (Terraform's aws_ami, Packer's
// source_ami_filter), and SSM Parameter Store (the public AMI parameters, an account's own).
// Prints requests/s, p50/p99 latency, what each server found, and the ratios.
//
//   npm run bench:lookups               # 5 s a phase
//   node bench/lookups/run.mjs --quick  # 2 s a phase
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { PutParameterCommand, SSMClient } from "@aws-sdk/client-ssm";
import { check, count, measureReplay, signedJson, signedPost } from "../lib/load.mjs";
import { onExit, startKiln, startMoto } from "../lib/servers.mjs";

const { values: args } = parseArgs({ options: { duration: { type: "string", default: "5" }, quick: { type: "boolean", default: false } } });
const DURATION = args.quick ? 2 : Number(args.duration);
const CONCURRENCY = [1, 8];
const AL = "/aws/service/ami-amazon-linux-latest";

const query = (params) => new URLSearchParams({ Version: "2016-11-15", ...params }).toString();
const images = (text) => count(text, "imageId");
const parameters = (text) => JSON.parse(text).Parameters?.length ?? (JSON.parse(text).Parameter ? 1 : 0);

const WORKLOADS = [
  {
    name: "DescribeImages Ubuntu 22.04 (aws_instance example)",
    request: (port) =>
      signedPost(
        port,
        query({
          Action: "DescribeImages",
          "Owner.1": "099720109477",
          "Filter.1.Name": "name",
          "Filter.1.Value.1": "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*",
          "Filter.2.Name": "virtualization-type",
          "Filter.2.Value.1": "hvm",
        }),
      ),
    found: images,
  },
  {
    name: "DescribeImages amazon al2023-ami-2023.*-x86_64",
    request: (port) =>
      signedPost(port, query({ Action: "DescribeImages", "Owner.1": "amazon", "Filter.1.Name": "name", "Filter.1.Value.1": "al2023-ami-2023.*-x86_64" })),
    found: images,
  },
  {
    name: "SSM GetParameter al2023 kernel-default",
    request: (port) => signedJson(port, "ssm", "AmazonSSM.GetParameter", { Name: `${AL}/al2023-ami-kernel-default-x86_64` }),
    found: parameters,
  },
  {
    name: "SSM GetParametersByPath ami-amazon-linux-latest",
    request: (port) => signedJson(port, "ssm", "AmazonSSM.GetParametersByPath", { Path: AL, MaxResults: 10 }),
    found: parameters,
  },
  {
    name: "SSM GetParameter account's own",
    request: (port) => signedJson(port, "ssm", "AmazonSSM.GetParameter", { Name: "/bench/golden-ami" }),
    found: parameters,
  },
];

async function main() {
  const dataDir = mkdtempSync(join(tmpdir(), "kiln-bench-"));
  onExit(() => rmSync(dataDir, { recursive: true, force: true }));
  const servers = [await startKiln(dataDir)];
  const moto = await startMoto();
  if (moto) servers.push(moto);
  for (const server of servers) {
    const ssm = new SSMClient({
      endpoint: `http://127.0.0.1:${server.port}`,
      region: "us-east-1",
      credentials: { accessKeyId: "test", secretAccessKey: "test" },
    });
    await ssm.send(new PutParameterCommand({ Name: "/bench/golden-ami", Type: "String", Value: "ami-0123456789abcdef0" }));
    ssm.destroy();
  }

  console.log(`bench/lookups: ${DURATION} s a phase after 1 s of warm-up, one server loaded at a time, the raw-socket replay client\n`);
  const results = [];
  for (const workload of WORKLOADS) {
    for (const server of servers) {
      const first = await check(server.port, await workload.request(server.port), () => true, `${server.name} ${workload.name}`);
      const found = workload.found(first);
      for (const connections of CONCURRENCY) {
        const figures = await measureReplay(server.port, await workload.request(server.port), connections, DURATION);
        results.push({ workload: workload.name, server: server.name, connections, found, ...figures });
        console.log(
          `${workload.name.padEnd(52)} ${server.name.padEnd(5)} c=${String(connections).padEnd(2)} found ${String(found).padStart(2)}` +
            ` ${figures.rps.toFixed(0).padStart(6)} req/s  p50 ${String(figures.p50).padStart(6)} ms  p99 ${String(figures.p99).padStart(6)} ms` +
            (figures.non2xx ? `  (${figures.non2xx} failed)` : ""),
        );
      }
    }
  }

  if (moto) {
    console.log("\nKiln / moto_server (requests/s)");
    for (const workload of WORKLOADS) {
      for (const connections of CONCURRENCY) {
        const [kiln, other] = ["kiln", "moto"].map((name) =>
          results.find((r) => r.workload === workload.name && r.server === name && r.connections === connections),
        );
        const note = kiln.found !== other.found ? `  (Kiln finds ${kiln.found}, moto ${other.found})` : "";
        console.log(`${workload.name.padEnd(52)} c=${String(connections).padEnd(2)} ${(kiln.rps / other.rps).toFixed(1)}x${note}`);
      }
    }
  }
  if (results.some((r) => r.non2xx > 0)) console.log("\nsome requests failed: these figures are not comparable");
}

main()
  .then(() => process.exit(0))
  .catch((error) => {
    console.error(`bench/lookups: ${error.message}`);
    process.exit(1);
  });
