// What the guest tests share: waiting as a user of the SDK waits (generous for TCG on two shared
// cores, where a boot takes about a minute), and reading a guest's serial console.
import assert from "node:assert/strict";
import { join } from "node:path";
import { type EC2Client, GetConsoleOutputCommand } from "@aws-sdk/client-ec2";

export const BOOT_SECONDS = 300;

/** SSH on a guest's public address: 22 as Kiln's default when it runs as root, as the suite does in CI; else 2222. */
export const SSH_PORT = process.getuid?.() === 0 ? 22 : 2222;

/** A file Kiln keeps for an instance's guest in its data folder (qemu.pid, console.log, uefi-vars.fd). */
export const instanceFile = (dataDir: string, instanceId: string, name: string) => join(dataDir, "instances", instanceId, name);

/** The SDK waiters' settings for a guest's states. */
export const waiting = (client: EC2Client) => ({ client, maxWaitTime: BOOT_SECONDS, minDelay: 1, maxDelay: 2 });

/** The instance's console so far, decoded. */
export async function consoleOf(ec2: EC2Client, instanceId: string): Promise<string> {
  const { Output } = await ec2.send(new GetConsoleOutputCommand({ InstanceId: instanceId, Latest: true }));
  return Buffer.from(Output ?? "", "base64").toString("latin1");
}

/** Waits until the console matches `pattern`; what it said then. */
export async function consoleShows(ec2: EC2Client, instanceId: string, pattern: RegExp, seconds = BOOT_SECONDS): Promise<string> {
  const deadline = Date.now() + seconds * 1000;
  let said = "";
  while (Date.now() < deadline) {
    said = await consoleOf(ec2, instanceId);
    if (pattern.test(said)) return said;
    await new Promise((r) => setTimeout(r, 500));
  }
  assert.fail(`the console of ${instanceId} never showed ${pattern}; its last lines:\n${said.slice(-2000)}`);
}
