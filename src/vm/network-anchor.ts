// Run by Kiln inside a guest's own network namespace (`unshare --user --map-root-user --net`),
// with an IPC channel to Kiln; see guest-network.ts. It gives the namespace its loopback and
// the metadata service's addresses, listens on them on port 80 and hands the listening sockets
// to Kiln (whose metadata service then answers the guest's connections directly), and opens
// connections inside the namespace for Kiln on request (SSH to the guest's forwarded port). It
// exits when Kiln goes; the guest's qemu, which entered the namespace by nsenter, is not its
// child and goes on.
import { execFile } from "node:child_process";
import { createServer, connect, type Server, type Socket } from "node:net";
import { promisify } from "node:util";

const run = promisify(execFile);

/** The metadata service's addresses, as EC2 gives them: IPv4 link-local, and the IPv6 one (where the namespace takes it). */
const METADATA_V4 = "169.254.169.254";
const METADATA_V6 = "fd00:ec2::254";

export type AnchorRequest = { kind: "connect"; id: number; port: number };
export type AnchorMessage =
  | { kind: "ready"; pid: number; ipv6: boolean }
  | { kind: "metadata" }
  | { kind: "connected"; id: number }
  | { kind: "failed"; id?: number; error: string };

/** Sends a message (and a socket, whose copy here is then closed: Kiln alone accepts or uses it). */
const send = (message: AnchorMessage, handle?: Server | Socket) =>
  process.send!(message, handle as never, undefined, () => {
    if (handle && "listening" in handle) handle.close();
  });

async function listen(host: string): Promise<Server> {
  const server = createServer({ pauseOnConnect: true });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host, port: 80, exclusive: true }, resolve);
  });
  return server;
}

async function main(): Promise<void> {
  await run("ip", ["link", "set", "lo", "up"]);
  await run("ip", ["addr", "add", `${METADATA_V4}/32`, "dev", "lo"]);
  const ipv6 = await run("ip", ["-6", "addr", "add", `${METADATA_V6}/128`, "dev", "lo", "nodad"]).then(
    () => true,
    () => false,
  );
  for (const host of ipv6 ? [METADATA_V4, METADATA_V6] : [METADATA_V4]) send({ kind: "metadata" }, await listen(host));
  process.on("message", (request: AnchorRequest) => {
    if (request.kind !== "connect") return;
    const socket = connect({ host: "127.0.0.1", port: request.port });
    socket.once("connect", () => {
      socket.pause();
      send({ kind: "connected", id: request.id }, socket);
    });
    socket.once("error", (error) => send({ kind: "failed", id: request.id, error: error.message }));
  });
  send({ kind: "ready", pid: process.pid, ipv6 });
}

// Kiln gone (its end of the channel closed): nothing left to do here.
process.on("disconnect", () => process.exit(0));
main().catch((error: unknown) => {
  send({ kind: "failed", error: error instanceof Error ? error.message : String(error) });
  process.exit(1);
});
