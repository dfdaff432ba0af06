// What runs an instance. The actions decide what may happen (checks, errors, the answer's
// states); a backend makes it happen: `scheduled` moves the states on a timer and runs no guest,
// vm/qemu-backend.ts boots a qemu guest whose disks are the instance's volumes.
import type { Logger } from "../log.js";
import type { ChunkStore } from "../store/blocks/chunks.js";
import type { MetadataAnswer, MetadataRequest } from "./metadata-service.js";
import { probeGuestNetworks } from "./guest-network.js";
import { totalmem } from "node:os";
import type { KilnConfig } from "../config.js";
import { schedule, type Schedule } from "../domain/transitions.js";
import type { MetaDb } from "../store/meta/database.js";
import { releaseInstanceResources, setSchedule, type InstanceRecord, type InstanceState } from "../store/meta/instances.js";
import type { Scope } from "../store/meta/tags.js";
import { QEMU_SYSTEMS, armHypervisor, onPath, probeHypervisor, type Hypervisor } from "./accelerator.js";
import { AAVMF } from "./uefi-vars.js";

/** What health reports of the backend. */
export interface BackendInfo {
  backend: "qemu" | "none";
  /** The accelerator guests run under (qemu). */
  accelerator?: "kvm" | "tcg";
  /** Why this backend: why not qemu, or why not KVM. */
  reason?: string;
  /** Guests running now, and the most that may (qemu). */
  running?: number;
  maxRunning?: number;
  /** arm64 guests (qemu): the accelerator they run under, or why none runs. */
  arm64?: { accelerator: "kvm" | "tcg" } | { reason: string };
  /** What network guests get (qemu). */
  network?: string;
}

/** What a guest's console said, for GetConsoleOutput. */
export interface ConsoleOutput {
  output: Buffer;
  at?: Date;
}

/** An instance's health for DescribeInstanceStatus: the reachability check of a running instance. */
/** A guest's instance status check: impaired since its boot timeout ran out without a login prompt. */
export type GuestHealth = { status: "initializing" } | { status: "ok" } | { status: "impaired"; since: Date };

/** What a backend that runs guests works with. */
export interface BackendDeps {
  db: MetaDb;
  chunks: ChunkStore;
  logger: Logger;
  nodeId: string;
  /** Answers a request a guest sends its metadata service (vm/metadata-service.ts). */
  metadata: (instanceId: string, request: MetadataRequest) => Promise<MetadataAnswer>;
}

export interface InstanceBackend {
  readonly info: () => BackendInfo;
  /**
   * A public address for a new instance where its guest can be reached from this host (SSH): a
   * loopback address of its own. Undefined otherwise (EC2's public ranges are used).
   */
  reachableAddress?(): string | undefined;
  /** The schedule a launched (or started) instance begins on. */
  launchSchedule(now?: number): Schedule<InstanceState>;
  /** How many more guests of `memoryMiB` the host has room for (Infinity when no guest runs). */
  room(memoryMiB: number): number;
  /** Boots instances just written as pending (launched, or started from stopped). */
  boot(instanceIds: readonly string[]): void;
  stop(records: readonly InstanceRecord[], reason: string, force: boolean): Promise<void>;
  reboot(records: readonly InstanceRecord[]): Promise<void>;
  /** Ends instances; their DeleteOnTermination volumes and interfaces go once the guest is off. */
  terminate(scope: Scope, records: readonly InstanceRecord[], reason: string): Promise<void>;
  /** True when a guest runs for the instance now (CreateImage then powers it off around the capture). */
  runsGuest(instanceId: string): boolean;
  /** The guest's UEFI variables as EC2's UEFI data, when this node keeps a store for it. */
  uefiData(instanceId: string): Promise<string | undefined>;
  /**
   * CreateImage without NoReboot: powers the guest off (ACPI, forced after the timeout), runs
   * `capture` once it is off and its disks are durable, then boots it again.
   */
  rebootAround(record: InstanceRecord, reason: string, capture: () => Promise<void>): Promise<void>;
  /** A volume just attached to the instance: a running guest gets it as a new disk. */
  plug(instanceId: string, volumeId: string): Promise<void>;
  /** A volume being detached: a running guest lets go of it (and it is durable) before this resolves. */
  unplug(instanceId: string, volumeId: string, force: boolean): Promise<void>;
  /** Makes what guests wrote to these volumes durable (before a snapshot of them). */
  flushVolumes(volumeIds: readonly string[]): Promise<void>;
  consoleOutput(instanceId: string): Promise<ConsoleOutput | undefined>;
  /** A PNG of the guest's display, or undefined when no guest runs. */
  screenshot(instanceId: string): Promise<Buffer | undefined>;
  health(instanceId: string): GuestHealth | undefined;
  /** Ends every guest at once, changing no instance (POST /_kiln/reset, which then empties the store). */
  forgetAll(): Promise<void>;
  /** Kiln stopping: guests end as on a power loss, and boot again at the next start. */
  close(): Promise<void>;
}

/** No guest: states move on the configured delay (KILN_STATE_DELAY_MS), as they always have. */
export function scheduledBackend(db: MetaDb, delayMs: () => number, reason?: string): InstanceBackend {
  const move = async (records: readonly InstanceRecord[], steps: InstanceState[], reason: string) => {
    for (const record of records) await setSchedule(db, record.row.instance_id, schedule(steps, delayMs()), reason);
  };
  return {
    info: () => ({ backend: "none", reason }),
    launchSchedule: (now = Date.now()) => schedule<InstanceState>(["pending", "running"], delayMs(), now),
    room: () => Number.POSITIVE_INFINITY,
    boot() {},
    stop: (records, reason) => move(records, ["stopping", "stopped"], reason),
    async reboot() {},
    runsGuest: () => false,
    async uefiData() {
      return undefined;
    },
    async rebootAround(_record, _reason, capture) {
      await capture();
    },
    async terminate(scope, records, reason) {
      for (const record of records) await releaseInstanceResources(db, scope, record.row.instance_id);
      await move(records, ["shutting-down", "terminated"], reason);
    },
    async plug() {},
    async unplug() {},
    async flushVolumes() {},
    async consoleOutput() {
      return undefined;
    },
    async screenshot() {
      return undefined;
    },
    health: () => undefined,
    async forgetAll() {},
    async close() {},
  };
}

/**
 * The backend KILN_INSTANCE_BACKEND asks for: qemu needs qemu-system-x86_64 and a guest that
 * runs under KVM or TCG; auto takes qemu when both are there and says why not otherwise.
 */
export async function openInstanceBackend(config: KilnConfig, deps: BackendDeps): Promise<InstanceBackend> {
  const delay = () => config.stateDelayMs;
  if (config.instanceBackend === "none") return scheduledBackend(deps.db, delay, "KILN_INSTANCE_BACKEND=none");
  const binary = await onPath(QEMU_SYSTEMS.x86_64);
  let hypervisor: Hypervisor | undefined;
  let reason = `${QEMU_SYSTEMS.x86_64} is not installed (Debian: apt-get install qemu-system-x86)`;
  if (binary) {
    try {
      hypervisor = await probeHypervisor(binary, config.vm.accelerator);
    } catch (error) {
      reason = (error as Error).message;
    }
  }
  if (!hypervisor) {
    if (config.instanceBackend === "qemu") throw new Error(`KILN_INSTANCE_BACKEND=qemu, but no guest can run: ${reason}`);
    deps.logger.warn({ reason }, "instances run no guest");
    return scheduledBackend(deps.db, delay, reason);
  }
  const { QemuBackend } = await import("./qemu-backend.js");
  const memoryMaxMiB = config.vm.memoryMaxMiB;
  const arm64 = await armHypervisor(AAVMF.code);
  const backend = new QemuBackend(
    deps,
    { x86_64: hypervisor, arm64 },
    {
      dataDir: config.dataDir,
      memoryMaxMiB,
      maxRunning: config.vm.maxRunning ?? Math.max(1, Math.floor(totalmem() / 2 / 1024 / 1024 / memoryMaxMiB)),
      stopTimeoutMs: config.vm.stopTimeoutMs,
      bootTimeoutMs: config.vm.bootTimeoutMs,
      leaseMs: config.taskLeaseMs,
      sshPort: config.vm.sshPort,
      networks: await probeGuestNetworks(),
    },
  );
  deps.logger.info(
    { accelerator: hypervisor.accelerator, reason: hypervisor.reason, arm64: typeof arm64 === "string" ? arm64 : arm64.accelerator },
    "instances run as qemu guests",
  );
  await backend.resume();
  return backend;
}
