#!/usr/bin/env node
// `npm test`: the suite in two groups run side by side, since they wait on different things.
//  - api: dist/test/*.test.js, one file after another (node --test's default on two cores);
//  - guests: dist/test/guests/*.test.js, the tests that boot qemu guests, which spend their
//    time waiting for guests to come up.
// Each group's TAP output is printed line by line with its group's name in front; the run fails
// when either group does. KILN_TEST_SUITES=api or =guests runs one group (.ci/run runs the
// guests once, beside its passes over the API tests), KILN_TEST_FILES=a,b only the files
// a.test.js and b.test.js of the groups it runs, and KILN_TEST_SKIP=a,b all but those (a name
// that matches no file is an error, so a renamed file cannot drop out of a run unseen).
import { spawn } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";

// Each file's limit, well above its group's slowest file in CI (an API file about 3 min, a
// guest file about 15): a file that never ends costs the run no more than that.
const groups = {
  api: { dir: "dist/test", timeoutMs: 600_000 },
  guests: { dir: "dist/test/guests", timeoutMs: 1_500_000 },
};
const wanted = process.env.KILN_TEST_SUITES ? process.env.KILN_TEST_SUITES.split(",") : Object.keys(groups);
for (const name of wanted) if (!(name in groups)) throw new Error(`KILN_TEST_SUITES names ${name}; the groups are ${Object.keys(groups).join(", ")}`);

const listed = (variable) => (process.env[variable] ? process.env[variable].split(",") : undefined);
const only = listed("KILN_TEST_FILES");
const skip = listed("KILN_TEST_SKIP") ?? [];
const stem = (file) => file.replace(/\.test\.js$/, "");
const allFiles = (dir) =>
  readdirSync(dir)
    .filter((f) => f.endsWith(".test.js"))
    .sort();
const files = (dir) =>
  allFiles(dir)
    .filter((f) => (!only || only.includes(stem(f))) && !skip.includes(stem(f)))
    .map((f) => join(dir, f));
const known = new Set(wanted.flatMap((name) => allFiles(groups[name].dir).map(stem)));
for (const [variable, names] of [
  ["KILN_TEST_FILES", only ?? []],
  ["KILN_TEST_SKIP", skip],
]) {
  for (const name of names) if (!known.has(name)) throw new Error(`${variable} names ${name}, which is no test file of ${wanted.join(", ")}`);
}

function runGroup(name) {
  const { dir, timeoutMs } = groups[name];
  const child = spawn(process.execPath, ["--test", `--test-timeout=${timeoutMs}`, ...files(dir)], { stdio: ["ignore", "pipe", "pipe"] });
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

const results = await Promise.all(wanted.filter((name) => files(groups[name].dir).length > 0).map(runGroup));
for (const { name, code } of results) console.log(`# group ${name}: ${code === 0 ? "passed" : `failed (exit ${code})`}`);
process.exit(results.some((r) => r.code !== 0) ? 1 : 0);
