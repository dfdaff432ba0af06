// Load: signed EC2 Query requests, replayed by autocannon or by a reconnecting node:http client.
import { Agent, request as httpRequest } from "node:http";
import autocannon from "autocannon";
import { Hash } from "@smithy/hash-node";
import { SignatureV4 } from "@smithy/signature-v4";

export const WARMUP_SECONDS = 1;

const signer = new SignatureV4({
  credentials: { accessKeyId: "test", secretAccessKey: "test" },
  region: "us-east-1",
  service: "ec2",
  sha256: Hash.bind(null, "sha256"),
});

/** A signed POST, signed now: replayed for one phase (a signature lives 5 minutes). */
export async function signedPost(port, body) {
  const signed = await signer.sign({
    method: "POST",
    protocol: "http:",
    hostname: "127.0.0.1",
    port,
    path: "/",
    query: {},
    headers: { host: `127.0.0.1:${port}`, "content-type": "application/x-www-form-urlencoded; charset=utf-8" },
    body,
  });
  return { method: "POST", headers: signed.headers, body };
}

/** Sends the request once and fails unless the answer is 200 and passes `expect`. */
export async function check(port, request, expect, label) {
  const headers = { ...request.headers };
  delete headers.host;
  const response = await fetch(`http://127.0.0.1:${port}/`, { method: "POST", headers, body: request.body });
  const text = await response.text();
  if (response.status !== 200 || !expect(text)) {
    throw new Error(`${label}: the first answer is not the expected one (HTTP ${response.status}):\n${text.slice(0, 600)}`);
  }
  return text;
}

export async function measureAutocannon(port, request, connections, seconds) {
  const options = { url: `http://127.0.0.1:${port}/`, ...request, connections };
  await autocannon({ ...options, duration: WARMUP_SECONDS });
  const result = await autocannon({ ...options, duration: seconds });
  return { rps: result.requests.average, p50: result.latency.p50, p99: result.latency.p99, non2xx: result.non2xx + result.errors + result.timeouts };
}

/** `connections` workers, each sending the request as soon as the last is answered. */
export async function measureNodeHttp(port, request, connections, seconds) {
  const agent = new Agent({ keepAlive: true, maxSockets: connections });
  const once = () =>
    new Promise((resolve) => {
      const started = process.hrtime.bigint();
      const req = httpRequest({ host: "127.0.0.1", port, path: "/", method: "POST", headers: request.headers, agent }, (res) => {
        res.resume();
        res.on("end", () => resolve({ ok: res.statusCode === 200, ms: Number(process.hrtime.bigint() - started) / 1e6 }));
      });
      req.on("error", () => resolve({ ok: false, ms: Number(process.hrtime.bigint() - started) / 1e6 }));
      req.end(request.body);
    });
  const run = async (duration) => {
    const deadline = Date.now() + duration * 1000;
    const latencies = [];
    let failed = 0;
    await Promise.all(
      Array.from({ length: connections }, async () => {
        while (Date.now() < deadline) {
          const { ok, ms } = await once();
          if (ok) latencies.push(ms);
          else failed++;
        }
      }),
    );
    return { latencies, failed };
  };
  await run(WARMUP_SECONDS);
  const { latencies, failed } = await run(seconds);
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const at = (q) => (latencies.length ? Number(latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))].toFixed(1)) : NaN);
  return { rps: latencies.length / seconds, p50: at(0.5), p99: at(0.99), non2xx: failed };
}

export const count = (text, element) => text.split(`<${element}>`).length - 1;
