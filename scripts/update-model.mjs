#!/usr/bin/env node
// Refreshes model/ec2-2016-11-15.json.gz from the botocore installed with python3 (boto3/awscli).
// Why botocore: it is the only local copy of the EC2 model that keeps what a server needs to
// validate input (required members, enum values, string bounds) next to the wire names.
// Documentation is stripped to keep the pinned file small; MODEL.json records the source version.
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { gunzipSync, gzipSync } from "node:zlib";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const [botocoreDir, botocoreVersion] = execFileSync("python3", [
  "-c",
  "import botocore, os; print(os.path.dirname(botocore.__file__)); print(botocore.__version__)",
])
  .toString()
  .trim()
  .split("\n");
const source = join(botocoreDir, "data/ec2/2016-11-15/service-2.json.gz");
const model = JSON.parse(gunzipSync(readFileSync(source)).toString("utf8"));

const dropped = new Set(["documentation", "documentationUrl", "examples"]);
const strip = (node) => {
  if (Array.isArray(node)) return node.map(strip);
  if (node && typeof node === "object") {
    return Object.fromEntries(
      Object.entries(node)
        .filter(([k]) => !dropped.has(k))
        .map(([k, v]) => [k, strip(v)]),
    );
  }
  return node;
};

const out = join(here, "..", "model");
writeFileSync(join(out, "ec2-2016-11-15.json.gz"), gzipSync(JSON.stringify(strip(model)), { level: 9 }));
writeFileSync(
  join(out, "MODEL.json"),
  `${JSON.stringify(
    {
      source: "botocore data/ec2/2016-11-15/service-2.json.gz",
      botocoreVersion,
      operations: Object.keys(model.operations).length,
      shapes: Object.keys(model.shapes).length,
    },
    null,
    2,
  )}\n`,
);
console.log(`model: botocore ${botocoreVersion}, ${Object.keys(model.operations).length} operations`);
