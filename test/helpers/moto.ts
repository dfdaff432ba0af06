// moto_server, an S3 implementation Kiln did not write, as the object store of a test Kiln.
import { spawn } from "node:child_process";
import { createServer } from "node:net";

export interface MotoServer {
  endpoint: string;
  stop(): Promise<void>;
}

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });

/** Starts moto_server (KILN_TEST_MOTO_SERVER names another binary) on a free loopback port. */
export async function startMotoServer(): Promise<MotoServer> {
  const port = await freePort();
  const child = spawn(process.env.KILN_TEST_MOTO_SERVER ?? "moto_server", ["-H", "127.0.0.1", "-p", String(port)], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (chunk) => (stderr = (stderr + chunk).slice(-4000)));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const spawned = new Promise<void>((resolve, reject) => {
    child.once("error", (error) => reject(new Error(`moto_server did not start (the tests need it on PATH): ${error.message}`)));
    child.once("spawn", () => resolve());
  });
  await spawned;
  const endpoint = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`moto_server exited with ${child.exitCode}: ${stderr}`);
    const answered = await fetch(`${endpoint}/`).then(
      () => true,
      () => false,
    );
    if (answered) break;
    if (Date.now() > deadline) throw new Error(`moto_server did not answer in 30 s: ${stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    endpoint,
    async stop() {
      if (child.exitCode === null) child.kill("SIGTERM");
      await exited;
    },
  };
}
