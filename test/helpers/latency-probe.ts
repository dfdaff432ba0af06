// How long a server takes to answer a cheap GET (Kiln's health) while something else runs: one
// request after another, a few milliseconds apart, from a worker thread of its own, so that the
// caller's own work (signing requests, reading large answers) never delays a probe. Used by the
// stall test and by bench/stall.
import { Agent, get } from "node:http";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";

export interface LatencyReport {
  /** Probes answered (or, for the last, cut off when the probe stopped). */
  count: number;
  /** The longest wait for an answer, in milliseconds. */
  worstMs: number;
  /** Answers with a status other than 200. */
  failures: number;
  /** The waits, in milliseconds, in the order they were sent. */
  latencies: number[];
}

/** The gap between one answer and the next probe. */
const GAP_MS = 5;

/** Probes `url` until stopped; `stop()` answers with what was seen (a probe still waiting counts as waited so far). */
export function startLatencyProbe(url: string): { stop(): Promise<LatencyReport> } {
  const worker = new Worker(new URL(import.meta.url), { workerData: { url } });
  const started = new Promise<void>((resolve, reject) => {
    worker.once("message", () => resolve());
    worker.once("error", reject);
  });
  return {
    async stop() {
      await started;
      const report = new Promise<LatencyReport>((resolve, reject) => {
        worker.once("message", resolve);
        worker.once("error", reject);
      });
      worker.postMessage("stop");
      const result = await report;
      await worker.terminate();
      return result;
    },
  };
}

async function probe(url: string): Promise<void> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const latencies: number[] = [];
  let failures = 0;
  let stopping = false;
  let inFlight: number | undefined;
  const report = () => {
    if (inFlight !== undefined) latencies.push(performance.now() - inFlight);
    parentPort!.postMessage({ count: latencies.length, worstMs: Math.max(0, ...latencies), failures, latencies } satisfies LatencyReport);
  };
  parentPort!.on("message", () => {
    stopping = true;
    // An answer still awaited is reported as waited so far: the caller stops when its work is done.
    if (inFlight !== undefined) report();
  });
  parentPort!.postMessage("started");
  while (!stopping) {
    inFlight = performance.now();
    const status = await new Promise<number>((resolve) => {
      get(url, { agent }, (res) => {
        res.resume();
        res.once("end", () => resolve(res.statusCode ?? 0));
      }).once("error", () => resolve(0));
    });
    if (stopping) return;
    latencies.push(performance.now() - inFlight);
    inFlight = undefined;
    if (status !== 200) failures++;
    await new Promise((resolve) => setTimeout(resolve, GAP_MS));
  }
  report();
}

if (!isMainThread && (workerData as { url?: string } | undefined)?.url) void probe((workerData as { url: string }).url);
