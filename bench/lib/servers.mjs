// Servers a benchmark runs side by side: Kiln, a bare node:http server, moto_server. Each is a
// child process on a free loopback port, stopped when the benchmark ends, however it ends.
import { spawn, spawnSync } from "node:child_process";
import { openSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const KILN_BIN = fileURLToPath(new URL("../../dist/src/cli/main.js", import.meta.url));
const children = [];
const cleanups = [];

function stopAll() {
  for (const child of children) if (child.exitCode === null) child.kill("SIGTERM");
  for (const cleanup of cleanups) cleanup();
}
process.on("exit", stopAll);
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => process.exit(130));

/** Runs `cleanup` when the benchmark exits. */
export const onExit = (cleanup) => cleanups.push(cleanup);

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

export function start(command, argv, name, env = {}) {
  // BENCH_LOG_DIR keeps each server's standard output (Kiln's request log) for a look afterwards.
  const stdout = process.env.BENCH_LOG_DIR ? openSync(join(process.env.BENCH_LOG_DIR, `${name}.log`), "a") : "ignore";
  const child = spawn(command, argv, { stdio: ["ignore", stdout, "pipe"], env: { ...process.env, ...env } });
  let stderr = "";
  child.stderr.on("data", (chunk) => (stderr = (stderr + chunk).slice(-4000)));
  child.once("exit", (code) => {
    if (code !== null && code !== 0) console.error(`${name} exited with ${code}: ${stderr}`);
  });
  children.push(child);
  return child;
}

export async function waitUntilUp(url, name) {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    try {
      await fetch(url);
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  throw new Error(`${name} did not answer ${url} within 30 s`);
}

/** Kiln as users run it (request logging on, to /dev/null). */
export async function startKiln(dataDir, env = {}) {
  const port = await freePort();
  // The API benchmarks run no guests; bench/boot asks for qemu.
  const child = start(process.execPath, [KILN_BIN, "serve", "--port", String(port), "--data-dir", dataDir], "kiln", { KILN_INSTANCE_BACKEND: "none", ...env });
  await waitUntilUp(`http://127.0.0.1:${port}/_kiln/health`, "Kiln");
  return { name: "kiln", port, pid: child.pid, stop: () => stopChild(child) };
}

/** Stops a server this benchmark started (SIGKILL if it has not gone 5 s after SIGTERM: one may be stuck in a request). */
function stopChild(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once("exit", () => resolve());
    child.kill("SIGTERM");
    setTimeout(() => child.exitCode === null && child.signalCode === null && child.kill("SIGKILL"), 5000).unref();
  });
}

/** moto_server on a free port, or undefined (with a note) when it is not installed. */
export async function startMoto(env = {}) {
  const moto = spawnSync("sh", ["-c", "command -v moto_server"], { encoding: "utf8" }).stdout.trim();
  if (!moto) {
    console.log("moto_server is not on PATH: measuring Kiln only.");
    return undefined;
  }
  const port = await freePort();
  const child = start(moto, ["-H", "127.0.0.1", "-p", String(port)], "moto_server", env);
  await waitUntilUp(`http://127.0.0.1:${port}/`, "moto_server");
  return { name: "moto", port, pid: child.pid, stop: () => stopChild(child) };
}
