// moto_server, an S3 implementation Kiln did not write, as the object store of a test Kiln.
import { spawn } from "node:child_process";

export interface MotoServer {
  endpoint: string;
  stop(): Promise<void>;
}

/**
 * Starts moto_server (KILN_TEST_MOTO_SERVER names another binary) on a loopback port the system
 * picks (-p 0), read from its "Running on http://…" line: no port is found free, let go and asked
 * for again, which another process may take in between.
 */
export async function startMotoServer(): Promise<MotoServer> {
  const child = spawn(process.env.KILN_TEST_MOTO_SERVER ?? "moto_server", ["-H", "127.0.0.1", "-p", "0"], { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const stopChild = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    await exited;
  };
  let endpoint: string;
  try {
    endpoint = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`moto_server did not say where it listens in 30 s: ${output}`)), 30_000);
      const read = (chunk: Buffer) => {
        output = (output + chunk).slice(-4000);
        const running = /Running on (http:\/\/127\.0\.0\.1:(\d+))/.exec(output);
        if (running && Number(running[2]) > 0) {
          clearTimeout(timer);
          resolve(running[1]!);
        }
      };
      child.stdout!.on("data", read);
      child.stderr!.on("data", read);
      child.once("error", (error) => {
        clearTimeout(timer);
        reject(new Error(`moto_server did not start (the tests need it on PATH): ${error.message}`));
      });
      void exited.then(() => {
        clearTimeout(timer);
        reject(new Error(`moto_server exited with ${child.exitCode}: ${output}`));
      });
    });
    const deadline = Date.now() + 30_000;
    for (;;) {
      const answered = await fetch(`${endpoint}/`).then(
        () => true,
        () => false,
      );
      if (answered) break;
      if (child.exitCode !== null) throw new Error(`moto_server exited with ${child.exitCode}: ${output}`);
      if (Date.now() > deadline) throw new Error(`moto_server did not answer in 30 s: ${output}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } catch (error) {
    await stopChild();
    throw error;
  }
  // Keep reading its output so a full pipe never stalls it.
  child.stdout!.resume();
  child.stderr!.resume();
  return { endpoint, stop: stopChild };
}
