// Instances that really run: each is a qemu guest (vm/machine.ts) whose disks are its volumes,
// served over NBD by this process. States follow the guest: pending until qemu runs, running,
// stopping until the guest is off, and so on; a guest that powers itself off stops or
// terminates as its InstanceInitiatedShutdownBehavior says.
import { createServer as createNetServer, type Server as NetServer } from "node:net";
import { randomInt } from "node:crypto";
import { createServer as createHttpServer, type Server as HttpServer } from "node:http";
import type { Scope } from "../store/meta/tags.js";
import { GUEST_SSH_PORT, openGuestNetwork, type GuestNetwork } from "./guest-network.js";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { availableParallelism, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { instanceType } from "../domain/instance-types.js";
import {
  GUEST_SHUTDOWN,
  attachmentsOf,
  instanceById,
  claimInstance,
  instancesOnNode,
  lapsedInstances,
  renewInstanceLeases,
  setInstanceNode,
  releaseInstanceResources,
  setSchedule,
  updateInstance,
  requestOfGuest,
  openGuestRequests,
  answerGuestRequest,
  guestRequestAnswered,
  dropGuestRequests,
  type InstanceRecord,
  type InstanceState,
} from "../store/meta/instances.js";
import { interfaceGroups, listNetworkInterfaces, listSubnets, type NetworkInterfaceRow } from "../store/meta/network.js";
import { listRules } from "../store/meta/security-groups.js";
import { ingressAllows } from "../domain/security-rules.js";
import { getVolume } from "../store/meta/volumes.js";
import { schedule } from "../domain/transitions.js";
import type { Hypervisor } from "./accelerator.js";
import type { GuestRequestTable } from "../store/meta/schema.js";
import type { BackendDeps, BackendInfo, ConsoleOutput, GuestHealth, InstanceBackend } from "./backend.js";
import { CONSOLE_BYTES, Machine, type MachineExit, type MachineSpec } from "./machine.js";
import { serveNbd, type NbdExport } from "./nbd-server.js";
import { AAVMF, OVMF, seedVarStore, varStoreAsUefiData } from "./uefi-vars.js";
import { openVolumeDevice, type VolumeDevice } from "./volume-device.js";

export interface QemuSettings {
  /** Where each instance keeps its console log and UEFI variables: <dataDir>/instances/<id>/. */
  dataDir: string;
  /** A guest's memory is its type's, at most this. */
  memoryMaxMiB: number;
  /** Most guests running at once. */
  maxRunning: number;
  /** How long a guest has to power off by ACPI before it is forced (stop, terminate, reboot). */
  stopTimeoutMs: number;
  /** How long a guest may take to come up before its reachability check fails. */
  bootTimeoutMs: number;
  /** How long this node's hold on its instances lasts unrenewed: how soon another node boots them after it dies. */
  leaseMs: number;
  /** The port of a guest's SSH on its public address. */
  sshPort: number;
  /** Whether guests get network namespaces of their own (guest-network.ts), or why not. */
  networks: { ok: true } | { ok: false; reason: string };
}

/** What the console shows once a guest is up: its login prompt. */
// getty's prompt, `<hostname> login: ` at the start of a line. Messages may follow it on the
// same line (cloud-init's last stage writes to the console after getty has started).
export const LOGIN_PROMPT = /^\S+ login: ?/m;

interface Disk {
  volumeId: string;
  device: VolumeDevice;
  nbd: NbdExport;
}

interface Guest {
  machine?: Machine;
  disks: Disk[];
  /** Its network namespace, and the metadata service's HTTP on the connections it opens there. */
  network?: GuestNetwork;
  metadataHttp?: HttpServer;
  /** Its SSH, on port `sshPort` of its public address (a loopback address), gated by its security groups. */
  ssh?: NetServer;
  /** What Kiln asked of it: its exit then means stopped or terminated, not a guest's own shutdown. */
  ending?: {
    to: "stopped" | "terminated";
    scope?: { accountId: string; region: string };
    reason: string;
    /** Run once the guest is off, before it boots again (CreateImage's capture). */
    thenBoot?: () => Promise<void>;
    /** Its end changes nothing (the instance is another node's now). */
    quiet?: boolean;
  };
  bootedAt: number;
  up: boolean;
  /** The console since this boot, for the login prompt (bounded). */
  heard: string;
}

/** How often a node asking another for a detach or a settle looks for its answer. */
const ASK_POLL_MS = 250;

/** The instance's OVMF variable store, in its folder. */
const UEFI_VARS = "uefi-vars.fd";

/** How often a node looks for stops and terminations another node asked of its guests (and renews its holds). */
const WATCH_MS = 1000;

/** EC2's StateTransitionReason for an instance that failed as it started. */
const LAUNCH_FAILED = "Server.InternalError: Internal error on launch";

export class QemuBackend implements InstanceBackend {
  private readonly guests = new Map<string, Guest>();
  /** Volumes being plugged in; volumes unplugged (or not pluggable) whose attachment is not gone yet. */
  private readonly plugging = new Set<string>();
  private readonly letGo = new Set<string>();
  /** Requests of other nodes being carried out. */
  private readonly carryingOut = new Set<string>();
  private socketsDir?: string;
  private closing = false;
  private watcher?: NodeJS.Timeout;
  private renewAt = 0;

  constructor(
    private readonly deps: BackendDeps,
    /** Per architecture; for arm64, why no guest runs when none does. */
    private readonly hypervisors: { x86_64: Hypervisor; arm64: Hypervisor | string },
    private readonly settings: QemuSettings,
  ) {}

  info = (): BackendInfo => ({
    backend: "qemu",
    accelerator: this.hypervisors.x86_64.accelerator,
    reason: this.hypervisors.x86_64.reason,
    arm64: typeof this.hypervisors.arm64 === "string" ? { reason: this.hypervisors.arm64 } : { accelerator: this.hypervisors.arm64.accelerator },
    running: this.guests.size,
    maxRunning: this.settings.maxRunning,
    network: this.settings.networks.ok
      ? "a namespace of its own per guest: its private address, the metadata service at 169.254.169.254, no route out"
      : `qemu's user network, no metadata service (${this.settings.networks.reason})`,
  });

  /**
   * With guests in namespaces, a public address is one of 127.0.0.0/8 (127.128.0.1 and up, clear
   * of the usual 127.0.0.x): every address there reaches this host, so each instance's SSH can
   * listen on port 22 of an address of its own, as each EC2 instance has its own address.
   */
  reachableAddress(): string | undefined {
    return this.settings.networks.ok ? `127.${128 + randomInt(127)}.${randomInt(256)}.${1 + randomInt(254)}` : undefined;
  }

  launchSchedule(now = Date.now()) {
    return schedule<InstanceState>(["pending"], 0, now);
  }

  room(memoryMiB: number): number {
    const memory = Math.min(memoryMiB, this.settings.memoryMaxMiB);
    const byMemory = Math.floor(totalmem() / 1024 / 1024 / memory) - this.guests.size;
    return Math.max(0, Math.min(this.settings.maxRunning - this.guests.size, byMemory));
  }

  boot(instanceIds: readonly string[]): void {
    for (const id of instanceIds) {
      if (this.guests.has(id)) continue;
      const guest: Guest = { disks: [], bootedAt: Date.now(), up: false, heard: "" };
      this.guests.set(id, guest);
      this.start(id, guest).catch((error: unknown) => this.failed(id, guest, error));
    }
  }

  private async socketDir(): Promise<string> {
    // Unix socket paths are short (108 bytes): they live in a folder of their own under tmp.
    this.socketsDir ??= await mkdtemp(join(tmpdir(), "kiln-vm-"));
    return this.socketsDir;
  }

  private async start(instanceId: string, guest: Guest): Promise<void> {
    const record = await instanceById(this.deps.db, instanceId);
    if (!record) throw new Error(`instance ${instanceId} is gone`);
    const { row } = record;
    const scope = { accountId: row.account_id, region: row.region };
    await setInstanceNode(this.deps.db, instanceId, this.deps.nodeId, Date.now() + this.settings.leaseMs);
    const hypervisor = row.architecture === "x86_64" ? this.hypervisors.x86_64 : row.architecture === "arm64" ? this.hypervisors.arm64 : undefined;
    if (typeof hypervisor !== "object") {
      // No guest for it here: it runs as an instance with no guest does, on no node, and says why.
      this.guests.delete(instanceId);
      await setInstanceNode(this.deps.db, instanceId, null);
      const reason = `Kiln runs no ${row.architecture} guest on this host${hypervisor ? `: ${hypervisor}` : ""}`;
      await setSchedule(this.deps.db, instanceId, schedule<InstanceState>(["running"], 0), reason);
      return;
    }
    const type = instanceType(row.instance_type);
    const attachments = await attachmentsOf(this.deps.db, { instanceIds: [instanceId] });
    // The root first, then the rest in device-name order: virtio disks appear in this order.
    attachments.sort((a, b) => Number(b.device === row.root_device_name) - Number(a.device === row.root_device_name) || a.device.localeCompare(b.device));
    await this.endLeftover(instanceId);
    const sockets = await this.socketDir();
    for (const attachment of attachments) {
      const volume = await getVolume(this.deps.db, scope, attachment.volume_id);
      if (!volume) continue;
      guest.disks.push(await this.serve(volume.volume_id, volume.size, sockets));
    }
    const [primary] = await listNetworkInterfaces(this.deps.db, scope, { instanceIds: [instanceId] });
    if (primary && this.settings.networks.ok) await this.openNetwork(instanceId, guest, scope, primary);
    const dir = this.instanceDir(instanceId);
    let firmware: MachineSpec["firmware"] = "bios";
    // arm64 boots UEFI only.
    if (hypervisor.architecture === "arm64" || row.boot_mode === "uefi" || row.boot_mode === "uefi-preferred") {
      await mkdir(dir, { recursive: true });
      firmware = { uefiVars: join(dir, UEFI_VARS) };
      await seedVarStore(firmware.uefiVars, row.uefi_data, hypervisor.architecture === "arm64" ? AAVMF : OVMF);
    }
    const machine = await Machine.start({
      instanceId,
      dir,
      hypervisor,
      memoryMiB: Math.min(type?.memoryMiB ?? 512, this.settings.memoryMaxMiB),
      vcpus: Math.max(1, Math.min(type?.vcpus ?? 1, availableParallelism())),
      firmware,
      disks: guest.disks.map((d) => ({ volumeId: d.volumeId, socket: d.nbd.socketPath })),
      mac: primary?.mac_address,
      network: guest.network,
    });
    guest.machine = machine;
    // Stopped or terminated while it was starting: off at once.
    if (guest.ending) void machine.kill();
    machine.events.on("console", (data: Buffer) => {
      if (guest.up) return;
      guest.heard = (guest.heard + data.toString("latin1")).slice(-4096);
      if (LOGIN_PROMPT.test(guest.heard)) guest.up = true;
    });
    machine.events.on("event", (event: { event: string }) => {
      // A reboot: the guest comes up again.
      if (event.event === "RESET") {
        guest.up = false;
        guest.heard = "";
        guest.bootedAt = Date.now();
      }
    });
    void machine.exited.then((exit) => this.ended(instanceId, guest, exit));
    this.deps.logger.info({ instanceId, pid: machine.pid, accelerator: hypervisor.accelerator, architecture: hypervisor.architecture }, "guest started");
    if (!guest.ending) await setSchedule(this.deps.db, instanceId, schedule<InstanceState>(["running"], 0), "");
  }

  /**
   * The guest's network namespace (guest-network.ts), with the instance's private address, and
   * the metadata service answering the connections the guest opens to 169.254.169.254.
   */
  private async openNetwork(instanceId: string, guest: Guest, scope: Scope, primary: NetworkInterfaceRow): Promise<void> {
    const [subnet] = await listSubnets(this.deps.db, scope, { ids: [primary.subnet_id] });
    if (!subnet) return;
    const http = createHttpServer((req, res) => {
      const [path] = (req.url ?? "/").split("?");
      this.deps
        .metadata(instanceId, { method: req.method ?? "GET", path: path!, headers: req.headers, ipv6: (req.socket.localAddress ?? "").includes(":") })
        .then((answer) => {
          res.writeHead(answer.status, { ...answer.headers, "content-length": Buffer.byteLength(answer.body), server: "EC2ws" });
          res.end(req.method === "HEAD" ? undefined : answer.body);
        })
        .catch((error: unknown) => {
          this.deps.logger.error({ instanceId, err: error }, "metadata service failed");
          res.writeHead(500, { "content-type": "text/plain" }).end();
        });
    });
    guest.metadataHttp = http;
    const network = await openGuestNetwork({ subnetCidr: subnet.cidr_block, privateIp: primary.private_ip, mac: primary.mac_address }, (socket) => {
      http.emit("connection", socket);
      socket.resume();
    });
    guest.network = network;
    if (primary.public_ip?.startsWith("127.")) {
      // A port taken (an sshd of the host's on every address) costs the guest its SSH, not its boot.
      guest.ssh = await this.listenSsh(instanceId, scope, primary, network).catch((error: unknown) => {
        this.deps.logger.warn({ instanceId, address: primary.public_ip, port: this.settings.sshPort, err: error }, "the guest's SSH is not served");
        return undefined;
      });
    }
  }

  /**
   * The guest's SSH from the host: port `sshPort` of the instance's public address, open to a
   * caller whose address a rule of the instance's security groups lets reach TCP port 22 (or
   * `sshPort`), as on EC2; any other connection is closed at once. A connection let in goes to slirp's
   * forward of the guest's port 22, inside its namespace.
   */
  private async listenSsh(instanceId: string, scope: Scope, primary: NetworkInterfaceRow, network: GuestNetwork): Promise<NetServer> {
    const server = createNetServer({ pauseOnConnect: true }, (client) => {
      client.on("error", () => {});
      const source = (client.remoteAddress ?? "").replace(/^::ffff:/, "");
      void (async () => {
        const groupIds = (await interfaceGroups(this.deps.db, [primary.network_interface_id])).get(primary.network_interface_id) ?? [];
        const rules = groupIds.length ? await listRules(this.deps.db, scope, { groupIds }) : [];
        // The guest's port 22, as on EC2; or the port Kiln listens on, where that is another
        // (a tool that opens the port it connects to, as Packer's temporary group does for ssh_port).
        if (!ingressAllows(rules, source, GUEST_SSH_PORT) && !ingressAllows(rules, source, this.settings.sshPort)) {
          this.deps.logger.info({ instanceId, source }, "ssh refused by the instance's security groups");
          client.destroy();
          return;
        }
        const guest = await network.connect(GUEST_SSH_PORT);
        guest.on("error", () => client.destroy());
        client.on("close", () => guest.destroy());
        guest.on("close", () => client.destroy());
        client.pipe(guest);
        guest.pipe(client);
        client.resume();
        guest.resume();
      })().catch((error: unknown) => {
        this.deps.logger.debug({ instanceId, err: error }, "ssh connection failed");
        client.destroy();
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host: primary.public_ip!, port: this.settings.sshPort }, resolve);
    });
    server.on("error", (error) => this.deps.logger.error({ instanceId, err: error }, "ssh listener failed"));
    return server;
  }

  /**
   * A qemu left running for the instance by a Kiln that died (kill -9): it would write to the
   * volumes under the new guest's feet, so it ends first. Its pid file names it; its command
   * line must name the instance (a pid may have been reused).
   */
  private async endLeftover(instanceId: string): Promise<void> {
    const pidFile = join(this.instanceDir(instanceId), "qemu.pid");
    const pid = Number((await readFile(pidFile, "utf8").catch(() => "")).trim());
    if (!Number.isInteger(pid) || pid <= 0) return;
    const command = await readFile(`/proc/${pid}/cmdline`, "latin1").catch(() => "");
    if (!command.split("\0").some((arg) => arg.startsWith(`${instanceId},`))) return;
    this.deps.logger.warn({ instanceId, pid }, "ending a guest left by an earlier Kiln");
    process.kill(pid, "SIGKILL");
    for (let i = 0; i < 100 && (await readFile(`/proc/${pid}/cmdline`).catch(() => undefined)); i++) await new Promise((r) => setTimeout(r, 50));
  }

  private async serve(volumeId: string, sizeGiB: number, sockets: string): Promise<Disk> {
    const device = openVolumeDevice(this.deps, volumeId, sizeGiB * 1024 ** 3);
    const nbd = await serveNbd(device, join(sockets, `${volumeId}.sock`), {
      log: (event: string, detail?: object) => this.deps.logger.debug({ volumeId, ...detail }, `nbd ${event}`),
    });
    return { volumeId, device, nbd };
  }

  /** A guest that could not start: its disks let go, and the instance ends as EC2 ends one. */
  private async failed(instanceId: string, guest: Guest, error: unknown): Promise<void> {
    this.deps.logger.error({ instanceId, err: error }, "guest did not start");
    await this.release(guest);
    if (this.guests.get(instanceId) === guest) this.guests.delete(instanceId);
    const record = await instanceById(this.deps.db, instanceId);
    if (!record) return;
    await setSchedule(this.deps.db, instanceId, schedule<InstanceState>(["stopped"], 0), LAUNCH_FAILED);
  }

  /** Lets go of a guest's disks (what it wrote is made durable, the exports close) and its network. */
  private async release(guest: Guest): Promise<void> {
    guest.network?.close();
    guest.network = undefined;
    guest.metadataHttp?.close();
    guest.metadataHttp = undefined;
    guest.ssh?.close();
    guest.ssh = undefined;
    for (const disk of guest.disks.splice(0)) {
      await disk.nbd.close().catch(() => {});
      // A guest another node took over leaves its volumes to that node as they are.
      if (guest.ending?.quiet) disk.device.abandon();
      else await disk.device.close().catch((error: unknown) => this.deps.logger.error({ volumeId: disk.volumeId, err: error }, "volume write-back failed"));
    }
  }

  /**
   * Folds the journals a guest of this instance left in its volumes, when no guest will open
   * them again soon (it was on its way off when its Kiln died): the volumes' blocks then hold
   * what the guest wrote, for snapshots and the EBS direct APIs.
   */
  private async settleVolumesOf(scope: { accountId: string; region: string }, instanceId: string): Promise<void> {
    for (const attachment of await attachmentsOf(this.deps.db, { instanceIds: [instanceId] })) {
      const volume = await getVolume(this.deps.db, scope, attachment.volume_id);
      if (volume) await openVolumeDevice(this.deps, volume.volume_id, volume.size * 1024 ** 3).close();
    }
  }

  /** qemu ended: the instance becomes what Kiln asked, or what the guest's own shutdown means. */
  private async ended(instanceId: string, guest: Guest, exit: MachineExit): Promise<void> {
    await this.release(guest);
    if (this.guests.get(instanceId) === guest) this.guests.delete(instanceId);
    if (this.closing || guest.ending?.quiet) return;
    // What other nodes asked of this guest is moot now.
    await dropGuestRequests(this.deps.db, { instance_id: instanceId });
    const record = await instanceById(this.deps.db, instanceId);
    if (!record) return;
    this.deps.logger.info({ instanceId, ...exit, asked: guest.ending?.to }, "guest ended");
    // The variables the guest left go with the instance, for the node that boots it next.
    const uefiData = await this.uefiData(instanceId);
    if (uefiData !== undefined) await updateInstance(this.deps.db, instanceId, { uefi_data: uefiData });
    const scope = { accountId: record.row.account_id, region: record.row.region };
    let to = guest.ending?.to;
    let reason = guest.ending?.reason ?? record.row.state_transition_reason;
    if (!to) {
      to = exit.guestShutdown && record.row.shutdown_behavior === "terminate" ? "terminated" : "stopped";
      reason = exit.guestShutdown ? GUEST_SHUTDOWN : `Server.InternalError: the guest ended (${exit.stderr || exit.signal || exit.code})`;
    }
    if (to === "terminated") await releaseInstanceResources(this.deps.db, scope, instanceId);
    await setSchedule(this.deps.db, instanceId, schedule<InstanceState>([to], 0), reason);
    const thenBoot = guest.ending?.thenBoot;
    if (thenBoot) {
      await thenBoot().catch((error: unknown) => this.deps.logger.error({ instanceId, err: error }, "capture with the guest off failed"));
      await setSchedule(this.deps.db, instanceId, this.launchSchedule(), reason);
      this.boot([instanceId]);
    }
  }

  async uefiData(instanceId: string): Promise<string | undefined> {
    // AAVMF's store (arm64) is not read yet (uefi-vars.ts).
    if ((await instanceById(this.deps.db, instanceId))?.row.architecture === "arm64") return undefined;
    try {
      return await varStoreAsUefiData(join(this.instanceDir(instanceId), UEFI_VARS));
    } catch (error) {
      // A store OVMF left that Kiln cannot read: the instance keeps the UEFI data it had.
      this.deps.logger.warn({ instanceId, err: error }, "the guest's UEFI variable store cannot be read");
      return undefined;
    }
  }

  private instanceDir(instanceId: string): string {
    return join(this.settings.dataDir, "instances", instanceId);
  }

  runsGuest(instanceId: string): boolean {
    return this.guests.get(instanceId)?.machine !== undefined;
  }

  async rebootAround(record: InstanceRecord, reason: string, capture: () => Promise<void>): Promise<void> {
    const guest = this.guests.get(record.row.instance_id);
    if (!guest?.machine || guest.ending) return capture();
    guest.ending = { to: "stopped", reason, thenBoot: capture };
    await setSchedule(this.deps.db, record.row.instance_id, schedule<InstanceState>(["stopping"], 0), reason);
    void guest.machine.powerDown(this.settings.stopTimeoutMs);
  }

  /**
   * At start: this node's guests ended with the process that ran them (a crash, a host reboot).
   * Those that were running boot again, as after a host reboot; those on their way off are off.
   */
  async resume(): Promise<void> {
    this.watcher = setInterval(() => {
      this.watchOthers().catch((error: unknown) => this.deps.logger.error({ err: error }, "watching for other nodes' requests failed"));
    }, WATCH_MS);
    this.watcher.unref();
    for (const record of await instancesOnNode(this.deps.db, this.deps.nodeId)) {
      const id = record.row.instance_id;
      const scope = { accountId: record.row.account_id, region: record.row.region };
      if (record.state === "pending" || record.state === "running") {
        await setSchedule(this.deps.db, id, this.launchSchedule(), record.row.state_transition_reason);
        this.boot([id]);
      } else if (record.state === "stopping") {
        await this.settleVolumesOf(scope, id);
        await setSchedule(this.deps.db, id, schedule<InstanceState>(["stopped"], 0), record.row.state_transition_reason);
      } else if (record.state === "shutting-down") {
        await this.settleVolumesOf(scope, id);
        await releaseInstanceResources(this.deps.db, scope, id);
        await setSchedule(this.deps.db, id, schedule<InstanceState>(["terminated"], 0), record.row.state_transition_reason);
      }
    }
  }

  async stop(records: readonly InstanceRecord[], reason: string, force: boolean): Promise<void> {
    for (const record of records) await this.end(record, "stopped", reason, force);
  }

  async terminate(scope: { accountId: string; region: string }, records: readonly InstanceRecord[], reason: string): Promise<void> {
    for (const record of records) await this.end(record, "terminated", reason, false, scope);
  }

  private async end(record: InstanceRecord, to: "stopped" | "terminated", reason: string, force: boolean, scope?: { accountId: string; region: string }) {
    const id = record.row.instance_id;
    const guest = this.guests.get(id);
    const passing: InstanceState = to === "stopped" ? "stopping" : "shutting-down";
    const elsewhere = record.row.node_id !== null && record.row.node_id !== this.deps.nodeId;
    if (!guest && elsewhere && (record.state === "running" || record.state === "pending")) {
      // Another node runs its guest: it sees the state and powers the guest off (watchOthers).
      await setSchedule(this.deps.db, id, schedule<InstanceState>([passing], 0), reason);
      return;
    }
    if (!guest) {
      // No guest runs (a stopped instance, or one whose start failed): nothing to power off.
      if (to === "terminated" && scope) await releaseInstanceResources(this.deps.db, scope, id);
      await setSchedule(this.deps.db, id, schedule<InstanceState>([passing, to], 0), reason);
      return;
    }
    await setSchedule(this.deps.db, id, schedule<InstanceState>([passing], 0), reason);
    if (guest.ending?.to === "terminated") return;
    guest.ending = { to, scope, reason };
    // A guest still starting is powered off once it has started.
    const machine = guest.machine;
    if (!machine) return;
    if (force) void machine.kill();
    else void machine.powerDown(this.settings.stopTimeoutMs);
  }

  /**
   * Stops and terminations asked of another node (which wrote `stopping` or `shutting-down` on
   * an instance whose guest runs here): this node powers the guest off, as if asked itself.
   */
  private async watchOthers(): Promise<void> {
    const now = Date.now();
    if (now >= this.renewAt) {
      // Renewed every third of the lease, so a slow statement or two does not lose it.
      this.renewAt = now + this.settings.leaseMs / 3;
      const mine = [...this.guests.keys()];
      const held = await renewInstanceLeases(this.deps.db, this.deps.nodeId, mine, now + this.settings.leaseMs);
      for (const id of mine) if (!held.has(id)) await this.lost(id);
      for (const record of await lapsedInstances(this.deps.db, this.deps.nodeId, now)) {
        if (!(await claimInstance(this.deps.db, record.row.instance_id, this.deps.nodeId, now, now + this.settings.leaseMs))) continue;
        // Its node died (or was cut off): its guest boots here, as after a host failure.
        this.deps.logger.warn({ instanceId: record.row.instance_id, from: record.row.node_id }, "taking over a guest whose node is gone");
        await setSchedule(this.deps.db, record.row.instance_id, this.launchSchedule(), record.row.state_transition_reason);
        this.boot([record.row.instance_id]);
      }
    }
    for (const [id, guest] of this.guests) {
      if (guest.ending || !guest.machine) continue;
      const record = await instanceById(this.deps.db, id);
      if (!record || (record.state !== "stopping" && record.state !== "shutting-down")) continue;
      const scope = { accountId: record.row.account_id, region: record.row.region };
      await this.end(record, record.state === "stopping" ? "stopped" : "terminated", record.row.state_transition_reason, false, scope);
    }
    const running = [...this.guests].filter(([, guest]) => guest.machine && !guest.ending).map(([id]) => id);
    for (const request of await openGuestRequests(this.deps.db, running)) this.carryOut(request);
    // Volumes attached through another node are plugged in here; a volume let go stays out
    // until its attachment is gone.
    const attached = await attachmentsOf(this.deps.db, { instanceIds: running });
    const stillAttached = new Set(attached.map((a) => a.volume_id));
    for (const volumeId of this.letGo) if (!stillAttached.has(volumeId)) this.letGo.delete(volumeId);
    for (const { instance_id, volume_id } of attached) {
      if (!this.letGo.has(volume_id)) void this.plug(instance_id, volume_id).catch(() => {});
    }
  }

  /** A request from another node for a guest of this one's, once (it is answered or dropped when done). */
  private carryOut(request: GuestRequestTable): void {
    const key = `${request.instance_id}/${request.kind}/${request.volume_id}`;
    if (this.carryingOut.has(key)) return;
    this.carryingOut.add(key);
    void (async () => {
      const record = await instanceById(this.deps.db, request.instance_id);
      if (!record) return;
      if (request.kind === "reboot") {
        await dropGuestRequests(this.deps.db, request);
        await this.reboot([record]);
        return;
      }
      if (request.kind === "detach") await this.unplug(request.instance_id, request.volume_id, false);
      else await this.flushVolumes([request.volume_id]);
      await answerGuestRequest(this.deps.db, request);
    })()
      .catch((error: unknown) => this.deps.logger.error({ ...request, err: error }, "carrying out another node's request failed"))
      .finally(() => this.carryingOut.delete(key));
  }

  /**
   * Another node took the instance over (this one missed renewing its hold): its guest here
   * ends at once, changing nothing, so that two guests never write one volume.
   */
  private async lost(instanceId: string): Promise<void> {
    const guest = this.guests.get(instanceId);
    if (!guest) return;
    this.deps.logger.error({ instanceId }, "another node took this guest over; ending it here");
    this.guests.delete(instanceId);
    guest.ending = { to: "stopped", reason: "", quiet: true };
    await guest.machine?.kill();
    await this.release(guest);
  }

  async reboot(records: readonly InstanceRecord[]): Promise<void> {
    for (const record of records) {
      const machine = this.guests.get(record.row.instance_id)?.machine;
      if (!machine) {
        // Another node runs its guest: that node reboots it (watchOthers).
        if (this.elsewhere(record)) await requestOfGuest(this.deps.db, record.row.instance_id, "reboot");
        continue;
      }
      // An orderly reboot by the guest's keyboard; past the timeout, the reset line.
      let reset = false;
      const heard = (event: { event: string }) => {
        if (event.event === "RESET") reset = true;
      };
      machine.events.on("event", heard);
      await machine.ctrlAltDelete();
      setTimeout(() => {
        machine.events.off("event", heard);
        if (!reset) void machine.reset();
      }, this.settings.stopTimeoutMs).unref();
    }
  }

  async plug(instanceId: string, volumeId: string): Promise<void> {
    // A guest on another node is plugged by that node when it sees the attachment (watchOthers).
    const guest = this.guests.get(instanceId);
    this.letGo.delete(volumeId);
    if (!guest?.machine || guest.ending || guest.disks.some((d) => d.volumeId === volumeId) || this.plugging.has(volumeId)) return;
    this.plugging.add(volumeId);
    let disk: Disk;
    try {
      const record = await instanceById(this.deps.db, instanceId);
      const volume = record && (await getVolume(this.deps.db, { accountId: record.row.account_id, region: record.row.region }, volumeId));
      if (!volume) return;
      disk = await this.serve(volumeId, volume.size, await this.socketDir());
      guest.disks.push(disk);
    } finally {
      this.plugging.delete(volumeId);
    }
    try {
      await guest.machine.plug({ volumeId, socket: disk.nbd.socketPath });
    } catch (error) {
      // Not plugged now: the guest finds it at its next boot (the watcher does not try again).
      this.deps.logger.error({ instanceId, volumeId, err: error }, "hot-plug failed");
      this.letGo.add(volumeId);
      guest.disks.splice(guest.disks.indexOf(disk), 1);
      await disk.nbd.close();
      await disk.device.close();
    }
  }

  async unplug(instanceId: string, volumeId: string, force: boolean): Promise<void> {
    const guest = this.guests.get(instanceId);
    // Without Force the guest has the stop timeout to let go; with it, a few seconds.
    const timeoutMs = force ? 5_000 : this.settings.stopTimeoutMs;
    if (!guest) {
      const record = await instanceById(this.deps.db, instanceId);
      if (record && this.elsewhere(record)) await this.askGuestNode(record, "detach", volumeId, timeoutMs);
      return;
    }
    const disk = guest.disks.find((d) => d.volumeId === volumeId);
    if (!disk) return;
    // Not plugged in again by the watcher while the attachment is still there.
    this.letGo.add(volumeId);
    await guest.machine?.unplug(volumeId, timeoutMs);
    guest.disks.splice(guest.disks.indexOf(disk), 1);
    await disk.nbd.close();
    await disk.device.close();
  }

  async flushVolumes(volumeIds: readonly string[]): Promise<void> {
    const wanted = new Set(volumeIds);
    for (const guest of this.guests.values()) {
      for (const disk of guest.disks) {
        if (!wanted.has(disk.volumeId)) continue;
        await disk.device.settle();
        wanted.delete(disk.volumeId);
      }
    }
    // Volumes of guests another node runs: that node settles them.
    if (wanted.size === 0) return;
    for (const attachment of await attachmentsOf(this.deps.db, { volumeIds: [...wanted] })) {
      const record = await instanceById(this.deps.db, attachment.instance_id);
      if (record && this.elsewhere(record)) await this.askGuestNode(record, "settle", attachment.volume_id, this.settings.stopTimeoutMs);
    }
  }

  /** True when another node runs the instance's guest, and holds it still. */
  private elsewhere(record: InstanceRecord): boolean {
    const { node_id, node_lease_until } = record.row;
    return (
      node_id !== null &&
      node_id !== this.deps.nodeId &&
      Number(node_lease_until ?? 0) > Date.now() &&
      (record.state === "running" || record.state === "pending")
    );
  }

  /**
   * Asks the node running the guest to let go of a volume or to settle it, and waits for its
   * answer, at most `timeoutMs` (or until that node's hold lapses: then no guest writes it).
   */
  private async askGuestNode(record: InstanceRecord, kind: "detach" | "settle", volumeId: string, timeoutMs: number): Promise<void> {
    const request = { instance_id: record.row.instance_id, kind, volume_id: volumeId } as const;
    await requestOfGuest(this.deps.db, request.instance_id, kind, volumeId);
    try {
      for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await new Promise((r) => setTimeout(r, ASK_POLL_MS))) {
        if (await guestRequestAnswered(this.deps.db, request)) return;
        const now = await instanceById(this.deps.db, request.instance_id);
        if (!now || !this.elsewhere(now)) return;
      }
      this.deps.logger.warn({ instanceId: request.instance_id, volumeId, kind }, "the guest's node did not answer in time");
    } finally {
      await dropGuestRequests(this.deps.db, request);
    }
  }

  async consoleOutput(instanceId: string): Promise<ConsoleOutput | undefined> {
    const machine = this.guests.get(instanceId)?.machine;
    if (machine) return machine.consoleOutput();
    // A guest that is off: what its console said last, as EC2 keeps it.
    const saved = await readFile(join(this.instanceDir(instanceId), "console.log")).catch(() => undefined);
    if (!saved) return undefined;
    return { output: saved.subarray(Math.max(0, saved.length - CONSOLE_BYTES)) };
  }

  async screenshot(instanceId: string): Promise<Buffer | undefined> {
    const machine = this.guests.get(instanceId)?.machine;
    if (!machine) return undefined;
    const file = join(await this.socketDir(), `${instanceId}-${Date.now()}.png`);
    try {
      await machine.screendump(file);
      return await readFile(file);
    } finally {
      await rm(file, { force: true });
    }
  }

  health(instanceId: string): GuestHealth | undefined {
    const guest = this.guests.get(instanceId);
    if (!guest?.machine) return undefined;
    if (guest.up) return { status: "ok" };
    const timedOut = guest.bootedAt + this.settings.bootTimeoutMs;
    return Date.now() > timedOut ? { status: "impaired", since: new Date(timedOut) } : { status: "initializing" };
  }

  async forgetAll(): Promise<void> {
    this.closing = true;
    try {
      await Promise.all([...this.guests.values()].map((guest) => guest.machine?.kill()));
      for (const guest of this.guests.values()) await this.release(guest);
      this.guests.clear();
    } finally {
      this.closing = false;
    }
  }

  async close(): Promise<void> {
    clearInterval(this.watcher);
    await this.forgetAll();
    this.closing = true;
    if (this.socketsDir) await rm(this.socketsDir, { recursive: true, force: true });
  }
}
