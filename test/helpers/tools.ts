// Fixtures made by real tools (qemu-img, mkfs.*, sfdisk, tar): run a command, and a scratch
// folder that is removed when the test process ends.
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

/** Runs a command; its stdout, or an error carrying its stderr. */
export async function run(command: string, args: readonly string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<string> {
  if (options.input !== undefined) {
    return new Promise((resolve, reject) => {
      const child = execFile(
        command,
        args,
        { cwd: options.cwd, env: { ...process.env, ...options.env }, maxBuffer: 64 * 1024 * 1024 },
        (error, stdout, stderr) => (error ? reject(new Error(`${command} ${args.join(" ")}: ${stderr || error.message}`)) : resolve(stdout)),
      );
      child.stdin!.end(options.input);
    });
  }
  try {
    const { stdout } = await execFileAsync(command, args, { cwd: options.cwd, env: { ...process.env, ...options.env }, maxBuffer: 64 * 1024 * 1024 });
    return stdout;
  } catch (error) {
    const failed = error as Error & { stderr?: string; stdout?: string };
    // Some tools (Packer's machine-readable output) say why on stdout.
    const said = failed.stdout ? `\n${failed.stdout.slice(-4000)}` : "";
    throw new Error(`${command} ${args.join(" ")}: ${failed.stderr || failed.message}${said}`);
  }
}

/**
 * The environment the AWS CLI and boto3 run in against a test Kiln: the default keys and region,
 * and nothing read from the user's own configuration or the instance metadata service.
 */
export const AWS_CLIENT_ENV: Readonly<Record<string, string>> = {
  AWS_ACCESS_KEY_ID: "test",
  AWS_SECRET_ACCESS_KEY: "test",
  AWS_DEFAULT_REGION: "us-east-1",
  AWS_CONFIG_FILE: "/dev/null",
  AWS_SHARED_CREDENTIALS_FILE: "/dev/null",
  AWS_EC2_METADATA_DISABLED: "true",
  AWS_PAGER: "",
};

const scratchDirs: string[] = [];
process.once("exit", () => {
  for (const dir of scratchDirs) rmSync(dir, { recursive: true, force: true });
});

/**
 * A fresh folder under the system's temporary folder, removed when the test process exits (not
 * by a test hook: one made inside a `before` hook would be gone before the tests ran).
 */
export function scratch(prefix = "kiln-fixture-"): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  scratchDirs.push(dir);
  return dir;
}
