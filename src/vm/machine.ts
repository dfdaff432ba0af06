// One running guest: a qemu process whose disks are NBD exports Kiln serves (vm/nbd-server.ts
// over vm/volume-device.ts), whose serial console Kiln keeps (the last 64 KiB, as
// GetConsoleOutput returns it), and whose QMP socket Kiln drives: power-down by ACPI, reset,
// quit, disks plugged and unplugged while it runs.
import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { EventEmitter } from "node:events";
import { mkdir, open, rm } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import type { Hypervisor } from "./accelerator.js";
import type { GuestNetwork } from "./guest-network.js";
import { QmpClient, type QmpEvent } from "./qmp.js";
import { AAVMF, OVMF } from "./uefi-vars.js";

/** What GetConsoleOutput returns at most, as EC2 does. */
export const CONSOLE_BYTES = 64 * 1024;
/** The console file is cut back to its last CONSOLE_BYTES past this. */
const CONSOLE_FILE_MAX = 1024 * 1024;

export interface MachineDisk {
  volumeId: string;
  /** The NBD export's socket. */
  socket: string;
}

export interface MachineSpec {
  instanceId: string;
  /** The instance's own folder: sockets, console log, UEFI variables. */
  dir: string;
  hypervisor: Hypervisor;
  memoryMiB: number;
  vcpus: number;
  /** SeaBIOS, or OVMF (AAVMF for arm64, which always boots UEFI) with this variable store (uefi-vars.ts makes it). */
  firmware: "bios" | { uefiVars: string };
  /** Root first: the guest sees them as virtio disks in this order. */
  disks: readonly MachineDisk[];
  /** The primary interface's MAC address. */
  mac?: string;
  /** The guest's network namespace (guest-network.ts); without one, qemu's plain user network. */
  network?: GuestNetwork;
}

/** Why a guest's qemu ended. */
export interface MachineExit {
  /** The guest powered itself off (or was powered off by ACPI at Kiln's asking: see `requested`). */
  guestShutdown: boolean;
  /** qemu's exit code, or the signal that ended it. */
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The last lines qemu wrote to stderr, when it failed. */
  stderr: string;
}

const nodeName = (volumeId: string) => `disk-${volumeId}`;

/**
 * The SMBIOS system of an EC2 instance, as cloud-init's ds-identify recognises one: a system
 * UUID starting with "ec2" and a serial number equal to it (made from the instance id, so the
 * same at every boot), made by "Amazon EC2". Given only to a guest that reaches a metadata
 * service: identified as EC2, cloud-init waits minutes for one.
 */
export function ec2Identity(instanceId: string): string {
  const hex = `ec2${createHash("sha256").update(instanceId).digest("hex")}`;
  const uuid = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
  return `type=1,manufacturer=Amazon EC2,serial=${uuid},uuid=${uuid}`;
}
/**
 * PCIe root ports, one per disk: the root bus (q35's, virt's) takes no hot-plugged device, a root port does.
 * Disks at boot take the first; the rest wait for AttachVolume (28 volumes in all, as a Nitro
 * instance has at most).
 */
const ROOT_PORTS = 28;
const portName = (i: number) => `port${i}`;
/** A virtio disk's serial is at most 20 characters: the volume id without its dash, as EC2's NVMe serials are. */
const diskSerial = (volumeId: string) => volumeId.replace("-", "").slice(0, 20);

const diskDevice = (volumeId: string, port: string) =>
  `virtio-blk-pci,drive=${nodeName(volumeId)},id=dev-${volumeId},serial=${diskSerial(volumeId)},bus=${port}`;

function blockdev(disk: MachineDisk): string {
  return JSON.stringify({ driver: "nbd", "node-name": nodeName(disk.volumeId), server: { type: "unix", path: disk.socket } });
}

/**
 * A running guest. `events` emits "console" (new bytes), "event" (QMP events) and "exit"
 * (a MachineExit) once qemu ends.
 */
export class Machine {
  readonly events = new EventEmitter();
  readonly exited: Promise<MachineExit>;
  private console = Buffer.alloc(0);
  private consoleFileBytes = 0;
  /** Writes to console.log, one after another: a cut-back and an append must not interleave. */
  private consoleWrites: Promise<void> = Promise.resolve();
  private lastOutputAt?: Date;
  private qmp?: QmpClient;
  private child?: ChildProcess;
  private consoleServer?: Server;
  private resolveExit!: (exit: MachineExit) => void;
  private guestShutdown = false;
  private stderr = "";
  /** Which volume holds each root port. */
  private readonly ports: (string | undefined)[] = new Array(ROOT_PORTS).fill(undefined);

  private constructor(readonly spec: MachineSpec) {
    this.exited = new Promise((resolve) => (this.resolveExit = resolve));
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** The console's last CONSOLE_BYTES, and when it last changed. */
  consoleOutput(): { output: Buffer; at?: Date } {
    return { output: this.console, at: this.lastOutputAt };
  }

  /** Starts qemu paused, connects to its console and QMP, then lets the guest run. */
  static async start(spec: MachineSpec): Promise<Machine> {
    const machine = new Machine(spec);
    await machine.launch();
    return machine;
  }

  private async launch(): Promise<void> {
    const { dir, hypervisor, instanceId } = this.spec;
    await mkdir(dir, { recursive: true });
    const consoleSocket = join(dir, "console.sock");
    const qmpSocket = join(dir, "qmp.sock");
    await rm(consoleSocket, { force: true });
    await rm(qmpSocket, { force: true });
    const consoleFile = await open(join(dir, "console.log"), "a");
    this.consoleFileBytes = (await consoleFile.stat()).size;
    // Kiln listens and qemu connects, so nothing the guest writes before Kiln is ready is lost.
    this.consoleServer = createServer((socket: Socket) => {
      socket.on("data", (data: Buffer) => {
        this.heard(data);
        this.consoleWrites = this.consoleWrites.then(() => this.keep(consoleFile, data));
      });
      socket.on("error", () => {});
    });
    await new Promise<void>((resolve, reject) => {
      this.consoleServer!.once("error", reject);
      this.consoleServer!.listen(consoleSocket, resolve);
    });

    const arm = hypervisor.architecture === "arm64";
    // q35 for x86_64 guests, with RDRAND as EC2's CPUs have it: without it the guest's kernel
    // seeds its random numbers from timer jitter, which under TCG took minutes (once, in CI, a
    // guest's cloud-init waited on it for good). For arm64, qemu's virt board with every CPU
    // feature TCG has.
    const board = arm ? ["-machine", "virt", "-cpu", hypervisor.accelerator === "kvm" ? "host" : "max"] : ["-machine", "q35", "-cpu", "qemu64,+rdrand"];
    const args = ["-name", `${instanceId},debug-threads=on`, "-accel", hypervisor.accelerator, ...board];
    args.push("-m", String(this.spec.memoryMiB), "-smp", String(this.spec.vcpus));
    // A screen for GetConsoleScreenshot: virt has no VGA; AAVMF drives a virtio GPU.
    args.push("-nodefaults", "-no-user-config", "-display", "none", ...(arm ? ["-device", "virtio-gpu-pci"] : ["-vga", "std"]), "-S");
    args.push("-chardev", `socket,id=console,path=${consoleSocket}`, "-serial", "chardev:console");
    args.push("-qmp", `unix:${qmpSocket},server=on,wait=off`);
    if (this.spec.firmware !== "bios") {
      const { uefiVars } = this.spec.firmware;
      const code = arm ? AAVMF.code : OVMF.code;
      args.push("-drive", `if=pflash,format=raw,unit=0,readonly=on,file=${code}`, "-drive", `if=pflash,format=raw,unit=1,file=${uefiVars}`);
    }
    for (let i = 0; i < ROOT_PORTS; i++) args.push("-device", `pcie-root-port,id=${portName(i)},bus=pcie.0,chassis=${i + 1}`);
    for (const [i, disk] of this.spec.disks.entries()) {
      this.ports[i] = disk.volumeId;
      args.push("-blockdev", blockdev(disk));
      args.push("-device", `${diskDevice(disk.volumeId, portName(i))}${i === 0 ? ",bootindex=0" : ""}`);
    }
    args.push("-pidfile", join(dir, "qemu.pid"));
    const network = this.spec.network;
    if (network) args.push(...network.qemuArgs, "-smbios", ec2Identity(instanceId));
    else args.push("-nic", `user,model=virtio-net-pci${this.spec.mac ? `,mac=${this.spec.mac}` : ""}`);

    // In the guest's namespace, qemu is started by nsenter, which becomes it (the same process).
    const [command, ...argv] = network ? [...network.prefix, hypervisor.binary, ...args] : [hypervisor.binary, ...args];
    const child = spawn(command!, argv, { stdio: ["ignore", "ignore", "pipe"] });
    this.child = child;
    child.stderr!.on("data", (data: Buffer) => {
      this.stderr = (this.stderr + data.toString("utf8")).slice(-4096);
    });
    child.on("error", (error) => {
      this.stderr += error.message;
    });
    child.on("close", (code, signal) => {
      this.qmp?.close();
      this.consoleServer?.close();
      const stderr = this.stderr
        .split("\n")
        .filter((line) => line.trim() && !/warning:/.test(line))
        .slice(-3)
        .join("; ");
      const exit = { guestShutdown: this.guestShutdown, code, signal, stderr };
      // The guest's last words are in console.log before its end is told.
      void this.consoleWrites
        .then(() => consoleFile.close())
        .catch(() => {})
        .finally(() => {
          this.resolveExit(exit);
          this.events.emit("exit", exit);
        });
    });
    try {
      const qmp = await Promise.race([
        QmpClient.connect(qmpSocket),
        this.exited.then((exit) => {
          throw new Error(`qemu ended as it started: ${exit.stderr || `exit ${exit.code ?? exit.signal}`}`);
        }),
      ]);
      this.qmp = qmp;
      qmp.events.on("event", (event: QmpEvent) => {
        if (event.event === "SHUTDOWN" && event.data?.guest === true) this.guestShutdown = true;
        this.events.emit("event", event);
      });
      await qmp.execute("cont");
    } catch (error) {
      child.kill("SIGKILL");
      throw error;
    }
  }

  private heard(data: Buffer): void {
    this.lastOutputAt = new Date();
    const joined = Buffer.concat([this.console, data]);
    this.console = joined.length > CONSOLE_BYTES ? Buffer.from(joined.subarray(joined.length - CONSOLE_BYTES)) : joined;
    this.events.emit("console", data);
  }

  /** Appends to console.log, cutting it back to the console's last bytes when it grows past its bound. */
  private async keep(file: import("node:fs/promises").FileHandle, data: Buffer): Promise<void> {
    try {
      if (this.consoleFileBytes + data.length > CONSOLE_FILE_MAX) {
        await file.truncate(0);
        this.consoleFileBytes = 0;
        await file.write(this.console);
        this.consoleFileBytes = this.console.length;
        return;
      }
      this.consoleFileBytes += data.length;
      await file.write(data);
    } catch {
      // The console log is a convenience: the guest goes on without it.
    }
  }

  /** ACPI power button: the guest shuts down if it listens. */
  async powerButton(): Promise<void> {
    await this.qmp?.execute("system_powerdown").catch(() => {});
  }

  /** Ctrl+Alt+Del on the guest's keyboard: an orderly reboot where the guest honours it. */
  async ctrlAltDelete(): Promise<void> {
    await this.qmp?.execute("send-key", { keys: ["ctrl", "alt", "delete"].map((key) => ({ type: "qcode", data: key })) }).catch(() => {});
  }

  /** The reset line: a hard reboot. */
  async reset(): Promise<void> {
    await this.qmp?.execute("system_reset").catch(() => {});
  }

  /** Ends qemu now (the power cord); resolves when it has ended. */
  async kill(): Promise<MachineExit> {
    if (this.qmp) await Promise.race([this.qmp.execute("quit").catch(() => {}), new Promise((r) => setTimeout(r, 2000))]);
    const timer = setTimeout(() => this.child?.kill("SIGKILL"), 3000);
    const exit = await this.exited;
    clearTimeout(timer);
    return exit;
  }

  /** Presses the power button and waits up to `timeoutMs` for the guest to power off, then pulls the cord. */
  async powerDown(timeoutMs: number): Promise<MachineExit> {
    await this.powerButton();
    const timer = setTimeout(() => void this.kill(), timeoutMs);
    const exit = await this.exited;
    clearTimeout(timer);
    return exit;
  }

  /** Plugs an NBD export in as a virtio disk while the guest runs. */
  async plug(disk: MachineDisk): Promise<void> {
    if (!this.qmp) throw new Error("the guest is not running");
    const port = this.ports.indexOf(undefined);
    if (port < 0) throw new Error(`the guest has no free slot for ${disk.volumeId}`);
    this.ports[port] = disk.volumeId;
    try {
      await this.qmp.execute("blockdev-add", JSON.parse(blockdev(disk)));
      await this.qmp.execute("device_add", {
        driver: "virtio-blk-pci",
        drive: nodeName(disk.volumeId),
        id: `dev-${disk.volumeId}`,
        serial: diskSerial(disk.volumeId),
        bus: portName(port),
      });
    } catch (error) {
      this.ports[port] = undefined;
      await this.qmp.execute("blockdev-del", { "node-name": nodeName(disk.volumeId) }).catch(() => {});
      throw error;
    }
  }

  /** Unplugs a disk: the guest lets go of the device (DEVICE_DELETED), then its NBD connection closes. */
  async unplug(volumeId: string, timeoutMs = 30_000): Promise<void> {
    if (!this.qmp) return;
    const qmp = this.qmp;
    const deleted = new Promise<void>((resolve) => {
      const heard = (event: QmpEvent) => {
        if (event.event === "DEVICE_DELETED" && event.data?.device === `dev-${volumeId}`) {
          qmp.events.off("event", heard);
          resolve();
        }
      };
      qmp.events.on("event", heard);
      setTimeout(resolve, timeoutMs);
    });
    await qmp.execute("device_del", { id: `dev-${volumeId}` });
    await deleted;
    await qmp.execute("blockdev-del", { "node-name": nodeName(volumeId) }).catch(() => {});
    const port = this.ports.indexOf(volumeId);
    if (port >= 0) this.ports[port] = undefined;
  }

  /** A PNG screenshot of the guest's display, written to `file`. */
  async screendump(file: string): Promise<void> {
    if (!this.qmp) throw new Error("the guest is not running");
    await this.qmp.execute("screendump", { filename: file, format: "png" });
  }
}
