// A TCP proxy between Kiln and a store it depends on, for outage tests.
import { createServer, connect, type Socket } from "node:net";

/**
 * A TCP proxy to `target` on a loopback port the system picks, that can be cut (every
 * connection reset, new ones reset as soon as they arrive) and restored. It keeps its port
 * throughout: closing and listening again would free the port for anyone to take meanwhile.
 */
export async function cuttableProxy(target: { host: string; port: number }) {
  const sockets = new Set<Socket>();
  let isCut = false;
  // A reset while the socket's shutdown is pending (its writable side ended, by pipe() when the
  // other side ended) fails with EINVAL in Node, and the handle is then never closed: the test
  // process spins at exit, waiting for it, until its timeout. Such a socket is destroyed instead.
  const reset = (socket: Socket) => (socket.writableEnded ? socket.destroy() : socket.resetAndDestroy());
  const server = createServer((client) => {
    client.on("error", () => {});
    if (isCut) {
      reset(client);
      return;
    }
    const upstream = connect(target.port, target.host);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      socket.on("error", () => {});
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  server.unref();
  const port = (server.address() as { port: number }).port;
  return {
    port,
    async cut() {
      isCut = true;
      for (const socket of sockets) reset(socket);
    },
    async restore() {
      isCut = false;
    },
    /** Resets every connection and stops listening, for good. */
    async close() {
      isCut = true;
      for (const socket of sockets) reset(socket);
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
