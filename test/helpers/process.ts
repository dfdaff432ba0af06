// Runs `kiln serve` as its own process, as a user would, and reads its JSON log lines.
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";

export const KILN_BIN = fileURLToPath(new URL("../../src/cli/main.js", import.meta.url));

export interface KilnProcess {
  child: ChildProcess;
  url: string;
  /** Every JSON log line so far. */
  logs: Record<string, unknown>[];
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export function spawnKiln(args: string[], env: NodeJS.ProcessEnv = {}): Promise<KilnProcess> {
  const child = spawn(process.execPath, [KILN_BIN, ...args], {
    env: { ...process.env, KILN_INSTANCE_BACKEND: "none", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const logs: Record<string, unknown>[] = [];
  let stderr = "";
  let buffered = "";
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`kiln did not start in 10 s: ${stderr}`)), 10_000);
    child.stderr!.on("data", (chunk) => (stderr += chunk));
    child.stdout!.on("data", (chunk) => {
      buffered += chunk;
      for (let newline = buffered.indexOf("\n"); newline >= 0; newline = buffered.indexOf("\n")) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        const entry = JSON.parse(line) as Record<string, unknown>;
        logs.push(entry);
        if (typeof entry.url === "string") {
          clearTimeout(timer);
          resolve({
            child,
            url: entry.url,
            logs,
            stop: (signal = "SIGTERM") => {
              if (child.exitCode === null) child.kill(signal);
              return exited;
            },
          });
        }
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`kiln exited with ${code} before it listened: ${stderr}`));
    });
  });
}

/**
 * Runs `kiln` to completion and returns its exit code and output. A run still going after
 * `timeoutMs` is killed (SIGKILL) and the call rejects, saying what it printed: a hang fails the
 * test rather than holding the suite.
 */
export function runKiln(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 120_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [KILN_BIN, ...args], {
    env: { ...process.env, KILN_INSTANCE_BACKEND: "none", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (c) => (stdout += c));
  child.stderr.on("data", (c) => (stderr += c));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`kiln ${args.join(" ")} did not finish in ${timeoutMs} ms; stdout: ${stdout.slice(-2000)}; stderr: ${stderr.slice(-2000)}`));
    }, timeoutMs);
    child.once("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
