#!/usr/bin/env node
// `npm test`: the suite in two groups run side by side, since they wait on different things.
//  - api: dist/test/*.test.js, one file after another (node --test's default on two cores);
//  - guests: dist/test/guests/*.test.js, the tests that boot qemu guests, which spend their
//    time waiting for guests to come up.
// Each group's TAP output is printed line by line with its group's name in front; the run fails
// when either group does. KILN_TEST_SUITES=api or =guests runs one group (.ci/run runs the
// guests once, beside the first of its passes).
import { spawn } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";

const TIMEOUT_MS = 900_000;
const groups = {
  api: "dist/test",
  guests: "dist/test/guests",
};
const wanted = process.env.KILN_TEST_SUITES ? process.env.KILN_TEST_SUITES.split(",") : Object.keys(groups);
for (const name of wanted) if (!(name in groups)) throw new Error(`KILN_TEST_SUITES names ${name}; the groups are ${Object.keys(groups).join(", ")}`);

const files = (dir) =>
  readdirSync(dir)
    .filter((f) => f.endsWith(".test.js"))
    .sort()
    .map((f) => join(dir, f));

function runGroup(name) {
  const child = spawn(process.execPath, ["--test", `--test-timeout=${TIMEOUT_MS}`, ...files(groups[name])], { stdio: ["ignore", "pipe", "pipe"] });
  const prefix = wanted.length > 1 ? `[${name}] ` : "";
  for (const stream of [child.stdout, child.stderr]) {
    let pending = "";
    stream.setEncoding("utf8");
    stream.on("data", (text) => {
      pending += text;
      const lines = pending.split("\n");
      pending = lines.pop();
      for (const line of lines) (stream === child.stdout ? process.stdout : process.stderr).write(`${prefix}${line}\n`);
    });
    stream.on("end", () => pending && process.stdout.write(`${prefix}${pending}\n`));
  }
  return new Promise((resolve) => child.on("close", (code, signal) => resolve({ name, code: code ?? (signal ? 1 : 0) })));
}

const results = await Promise.all(wanted.map(runGroup));
for (const { name, code } of results) console.log(`# group ${name}: ${code === 0 ? "passed" : `failed (exit ${code})`}`);
process.exit(results.some((r) => r.code !== 0) ? 1 : 0);
