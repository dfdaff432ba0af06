// Fixtures made by real tools (qemu-img, mkfs.*, sfdisk, tar): run a command, and a scratch
// folder that is removed when the suite ends.
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after } from "node:test";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

/** Runs a command; its stdout, or an error carrying its stderr. */
export async function run(command: string, args: readonly string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<string> {
  if (options.input !== undefined) {
    return new Promise((resolve, reject) => {
      const child = execFile(command, args, { cwd: options.cwd, env: { ...process.env, ...options.env }, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) =>
        error ? reject(new Error(`${command} ${args.join(" ")}: ${stderr || error.message}`)) : resolve(stdout),
      );
      child.stdin!.end(options.input);
    });
  }
  try {
    const { stdout } = await execFileAsync(command, args, { cwd: options.cwd, env: { ...process.env, ...options.env }, maxBuffer: 64 * 1024 * 1024 });
    return stdout;
  } catch (error) {
    const failed = error as Error & { stderr?: string };
    throw new Error(`${command} ${args.join(" ")}: ${failed.stderr || failed.message}`);
  }
}

/** A fresh folder under the system's temporary folder, removed after the suite. */
export function scratch(prefix = "kiln-fixture-"): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
