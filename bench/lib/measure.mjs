// What the benchmarks measure with: seconds since a start, a server's peak RSS, and the AWS CLI.
import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { promisify } from "node:util";

const run = promisify(execFile);

export const seconds = (start) => (performance.now() - start) / 1000;

/** Peak RSS since the last reset, in MiB (VmHWM; writing 5 to clear_refs resets it). */
export const peakRss = (pid) => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))[1]) / 1024;
export const currentRss = (pid) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))[1]) / 1024;
/** Resets the peak to the current RSS. */
export const resetPeak = (pid) => writeFileSync(`/proc/${pid}/clear_refs`, "5");

/**
 * Runs the AWS CLI against a loopback server, signed as `test`, without blocking: the servers'
 * stderr pipes are read by this process's event loop, and a server whose pipe fills (moto logs
 * every request there) stops answering.
 */
export async function awsCli(port, argv) {
  const env = {
    ...process.env,
    AWS_ACCESS_KEY_ID: "test",
    AWS_SECRET_ACCESS_KEY: "test",
    AWS_DEFAULT_REGION: "us-east-1",
    AWS_CONFIG_FILE: "/dev/null",
    AWS_SHARED_CREDENTIALS_FILE: "/dev/null",
  };
  await run("aws", ["--endpoint-url", `http://127.0.0.1:${port}`, ...argv], { env }).catch((error) => {
    throw new Error(`aws ${argv.join(" ")}: ${error.stderr ?? error.message}`);
  });
}
