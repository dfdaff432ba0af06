// Which accelerator guests run under. /dev/kvm may open and still not run a guest (a nested
// host without the CPU features a guest uses: KVM stops it with an "emulation failure"), so
// KVM is probed by really booting one: a boot sector that uses the FPU and SSE, as every
// kernel does, writes "ok" to the serial port and leaves through isa-debug-exit. Else TCG,
// qemu's own translator: slower, but it runs anywhere.
import { spawn } from "node:child_process";
import { constants } from "node:fs";
import { access, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";

export type Accelerator = "kvm" | "tcg";

export interface Hypervisor {
  /** The EC2 architecture of the guests it runs. */
  architecture: keyof typeof QEMU_SYSTEMS;
  /** The qemu-system binary for the guest's architecture. */
  binary: string;
  accelerator: Accelerator;
  /** Why not KVM, when TCG. */
  reason?: string;
}

/** qemu-system's name for each EC2 architecture. */
export const QEMU_SYSTEMS = { x86_64: "qemu-system-x86_64", arm64: "qemu-system-aarch64" } as const;

/** The path of `command` on PATH, or undefined. */
export async function onPath(command: string): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? "").split(delimiter).filter(Boolean)) {
    const file = join(dir, command);
    try {
      await access(file, constants.X_OK);
      return file;
    } catch {}
  }
  return undefined;
}

/** The boot sector: CR4.OSFXSR|OSXMMEXCPT on, fninit, xorps, "ok\n" to COM1, then out 0x10 to port 0xf4 (exit). */
function probeSector(): Buffer {
  const code = [0x0f, 0x20, 0xe0, 0x0d, 0x00, 0x06, 0x0f, 0x22, 0xe0, 0xdb, 0xe3, 0x0f, 0x57, 0xc0];
  code.push(0xba, 0xf8, 0x03, 0xb0, 0x6f, 0xee, 0xb0, 0x6b, 0xee, 0xb0, 0x0a, 0xee);
  code.push(0xba, 0xf4, 0x00, 0xb0, 0x10, 0xee, 0xfa, 0xf4, 0xeb, 0xfd);
  const sector = Buffer.alloc(512);
  Buffer.from(code).copy(sector);
  sector.writeUInt16LE(0xaa55, 510);
  return sector;
}

/** isa-debug-exit's status for the value 0x10 the probe writes: (0x10 << 1) | 1. */
const PROBE_EXIT = 33;
const PROBE_TIMEOUT_MS = 15_000;

/** Boots the probe under `accelerator`; undefined when it ran, else why not. */
async function runProbe(binary: string, accelerator: Accelerator, image: string): Promise<string | undefined> {
  const args = ["-accel", accelerator, "-M", "pc", "-m", "16", "-nodefaults", "-no-user-config", "-display", "none"];
  args.push("-serial", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-drive", `file=${image},format=raw,if=ide`);
  return new Promise((resolve) => {
    const child = spawn(binary, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    const timer = setTimeout(() => child.kill("SIGKILL"), PROBE_TIMEOUT_MS);
    child.stdout.on("data", (d: Buffer) => (out += d.toString("latin1")));
    child.stderr.on("data", (d: Buffer) => {
      err += d.toString("latin1");
      // qemu pauses a guest KVM could not run rather than ending.
      if (/internal error|emulation failure/i.test(err)) child.kill("SIGKILL");
    });
    child.on("error", (error) => {
      clearTimeout(timer);
      resolve(error.message);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      if (code === PROBE_EXIT && out.includes("ok")) return resolve(undefined);
      const said = err
        .split("\n")
        .map((line) => line.trim())
        .filter((line) => line && !/^warning|: warning:/i.test(line) && !/^extra data|^[A-Z]{2,3}=/.test(line));
      resolve(said.slice(0, 2).join("; ") || (code === null ? "the probe guest did not finish" : `qemu exited with ${code}`));
    });
  });
}

/**
 * The hypervisor for `binary`: KVM when `wanted` allows it and a probe guest runs under it,
 * else TCG (when it runs). Throws when no guest runs at all.
 */
export async function probeHypervisor(binary: string, wanted: "auto" | Accelerator = "auto"): Promise<Hypervisor> {
  const dir = await mkdtemp(join(tmpdir(), "kiln-probe-"));
  try {
    const image = join(dir, "probe.img");
    await writeFile(image, probeSector());
    let reason: string | undefined;
    if (wanted !== "tcg") {
      const noKvm = await access("/dev/kvm", constants.R_OK | constants.W_OK).then(
        () => undefined,
        () => "/dev/kvm cannot be opened",
      );
      reason = noKvm ?? (await runProbe(binary, "kvm", image));
      if (!reason) return { architecture: "x86_64", binary, accelerator: "kvm" };
      if (wanted === "kvm") throw new Error(`KVM was asked for and does not run a guest: ${reason}`);
    } else reason = "TCG was asked for (KILN_VM_ACCELERATOR=tcg)";
    const tcg = await runProbe(binary, "tcg", image);
    if (tcg) throw new Error(`qemu runs no guest: ${tcg}`);
    return { architecture: "x86_64", binary, accelerator: "tcg", reason: wanted === "tcg" ? reason : `KVM does not run a guest here (${reason})` };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * arm64 guests, where qemu-system-aarch64 and AAVMF (Debian's qemu-system-arm and
 * qemu-efi-aarch64) are installed: under TCG, since KVM runs only guests of the host's own
 * architecture (and is not probed for arm64 hosts yet). Else why not.
 */
export async function armHypervisor(firmware: string): Promise<Hypervisor | string> {
  const binary = await onPath(QEMU_SYSTEMS.arm64);
  if (!binary) return `${QEMU_SYSTEMS.arm64} is not installed (Debian: apt-get install qemu-system-arm qemu-efi-aarch64)`;
  const hasFirmware = await access(firmware, constants.R_OK).then(
    () => true,
    () => false,
  );
  if (!hasFirmware) return `${firmware} is not installed (Debian: apt-get install qemu-efi-aarch64)`;
  return { architecture: "arm64", binary, accelerator: "tcg", reason: "arm64 guests run under TCG (qemu's translator)" };
}
