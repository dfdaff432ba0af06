// A guest's network: qemu's user-mode network (slirp) inside a network namespace of the guest's
// own, so that the guest has the private address EC2 reports for it and reaches Kiln's metadata
// service at 169.254.169.254, as on EC2.
//
// Why a namespace: slirp gives the guest an address in the network it is told (the subnet's
// block here: the private IP by DHCP, the gateway at .1 and DNS at .2, as in a VPC), and a
// guest connection to an address outside it is made by qemu on the host. 169.254.169.254 is
// outside any VPC block, and slirp forwards a guest connection to a socket of Kiln's only for
// addresses inside its network. So each guest gets a user and network namespace of its own
// (`unshare`, no privilege needed), whose loopback holds 169.254.169.254 (and fd00:ec2::254):
// qemu runs in it (`nsenter`), and its connections to the metadata address land on sockets
// listening there, which Kiln accepts (network-anchor.ts hands them over). The host's own
// link-local addresses (a cloud's metadata service, when Kiln runs on a cloud VM) are out of
// the guest's reach. SSH to the guest is slirp's forward of port 22 inside the namespace,
// which Kiln connects to through the anchor.
//
// The namespace has no route out: the guest reaches the metadata service, Kiln reaches the
// guest, and nothing else (no Internet from the guest).
import { type ChildProcess, execFile, spawn } from "node:child_process";
import type { Server, Socket } from "node:net";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { ipToNumber, numberToIp } from "../domain/cidr.js";
import type { AnchorMessage, AnchorRequest } from "./network-anchor.js";

const run = promisify(execFile);
const ANCHOR = fileURLToPath(new URL("./network-anchor.js", import.meta.url));
const ANCHOR_START_MS = 10_000;
/** The guest's SSH port as slirp forwards it inside the namespace. */
export const GUEST_SSH_PORT = 22;

export interface GuestAddress {
  /** The subnet's IPv4 block, e.g. 172.31.16.0/20. */
  subnetCidr: string;
  /** The instance's private IPv4 address, in the block. */
  privateIp: string;
  /** The primary interface's MAC address. */
  mac: string;
}

export interface GuestNetwork {
  /** The command qemu runs behind (nsenter into the namespace). */
  readonly prefix: readonly string[];
  /** qemu's -netdev and -device arguments. */
  readonly qemuArgs: readonly string[];
  /** A connection to the guest's TCP `port` (22: SSH), made inside the namespace. */
  connect(port: number): Promise<Socket>;
  /** Lets go of the namespace (qemu, if it still runs, keeps it). */
  close(): void;
}

/** Whether guests get namespaces here; otherwise why not. Asked once, at start. */
export async function probeGuestNetworks(): Promise<{ ok: true } | { ok: false; reason: string }> {
  try {
    await run("unshare", ["--user", "--map-root-user", "--net", "ip", "link", "set", "lo", "up"], { timeout: 5000 });
    await run("nsenter", ["--version"], { timeout: 5000 });
    return { ok: true };
  } catch (error) {
    return {
      ok: false,
      reason: `no network namespace for guests (unshare --user --net, ip and nsenter are needed): ${(error as Error).message.split("\n")[0]}`,
    };
  }
}

/** slirp's options for the guest: the subnet's block, its gateway (.1) and DNS (.2), the private IP first leased. */
export function slirpOptions(address: GuestAddress): string {
  const first = ipToNumber(address.subnetCidr.split("/")[0]!)!;
  return [
    `net=${address.subnetCidr}`,
    `host=${numberToIp(first + 1)}`,
    `dns=${numberToIp(first + 2)}`,
    `dhcpstart=${address.privateIp}`,
    `hostfwd=tcp:127.0.0.1:${GUEST_SSH_PORT}-:22`,
  ].join(",");
}

/**
 * Makes the guest's namespace and network. `accept` is handed each connection the guest opens
 * to the metadata service (paused; the caller serves HTTP on it).
 */
export async function openGuestNetwork(address: GuestAddress, accept: (socket: Socket) => void): Promise<GuestNetwork> {
  const anchor: ChildProcess = spawn("unshare", ["--user", "--map-root-user", "--net", "--", process.execPath, ANCHOR], {
    stdio: ["ignore", "ignore", "pipe", "ipc"],
  });
  let stderr = "";
  anchor.stderr!.on("data", (chunk: Buffer) => (stderr = (stderr + chunk.toString("utf8")).slice(-2000)));
  const listeners: Server[] = [];
  const waiting = new Map<number, { resolve(socket: Socket): void; reject(error: Error): void }>();
  let nextId = 1;

  const ready = new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the guest's network namespace did not start in ${ANCHOR_START_MS} ms`)), ANCHOR_START_MS);
    anchor.on("message", (message: AnchorMessage, handle: unknown) => {
      switch (message.kind) {
        case "metadata": {
          const server = handle as Server;
          server.on("connection", accept);
          listeners.push(server);
          break;
        }
        case "ready":
          clearTimeout(timer);
          resolve(message.pid);
          break;
        case "connected":
          waiting.get(message.id)?.resolve(handle as Socket);
          waiting.delete(message.id);
          break;
        case "failed":
          if (message.id === undefined) {
            clearTimeout(timer);
            reject(new Error(`the guest's network namespace: ${message.error}`));
          } else {
            waiting.get(message.id)?.reject(new Error(message.error));
            waiting.delete(message.id);
          }
          break;
      }
    });
    anchor.once("exit", (code, signal) => {
      clearTimeout(timer);
      const error = new Error(`the guest's network namespace ended (${code ?? signal}): ${stderr.trim().split("\n").at(-1) ?? ""}`);
      reject(error);
      for (const { reject: fail } of waiting.values()) fail(error);
      waiting.clear();
    });
    anchor.once("error", reject);
  });
  let pid: number;
  try {
    pid = await ready;
  } catch (error) {
    anchor.kill("SIGKILL");
    for (const server of listeners) server.close();
    throw error;
  }

  return {
    prefix: ["nsenter", "--target", String(pid), "--user", "--net", "--preserve-credentials", "--"],
    qemuArgs: ["-netdev", `user,id=net0,${slirpOptions(address)}`, "-device", `virtio-net-pci,netdev=net0,mac=${address.mac}`],
    connect(port) {
      if (!anchor.connected) return Promise.reject(new Error("the guest's network namespace is gone"));
      const id = nextId++;
      return new Promise<Socket>((resolve, reject) => {
        waiting.set(id, { resolve, reject });
        anchor.send({ kind: "connect", id, port } satisfies AnchorRequest);
      });
    },
    close() {
      for (const server of listeners) server.close();
      if (anchor.connected) anchor.disconnect();
      anchor.kill();
    },
  };
}
