// Load: signed EC2 Query (and JSON 1.1) requests, replayed by autocannon or by a reconnecting raw-socket client.
import { connect as netConnect } from "node:net";
import autocannon from "autocannon";
import { Hash } from "@smithy/hash-node";
import { SignatureV4 } from "@smithy/signature-v4";

// The benchmarks run under Node 20 too: the SDK's notice about its releases after January 2027 is not a figure.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";

export const WARMUP_SECONDS = 1;

const signers = new Map();
const signerFor = (service) => {
  if (!signers.has(service)) {
    signers.set(
      service,
      new SignatureV4({ credentials: { accessKeyId: "test", secretAccessKey: "test" }, region: "us-east-1", service, sha256: Hash.bind(null, "sha256") }),
    );
  }
  return signers.get(service);
};

/** A POST / signed now for `service`: replayed for one phase (a signature lives 5 minutes). */
async function signedRequest(port, service, headers, body) {
  const signed = await signerFor(service).sign({
    method: "POST",
    protocol: "http:",
    hostname: "127.0.0.1",
    port,
    path: "/",
    query: {},
    headers: { host: `127.0.0.1:${port}`, ...headers },
    body,
  });
  return { method: "POST", headers: signed.headers, body };
}

/** A signed EC2 Query POST (form-encoded). */
export const signedPost = (port, body) => signedRequest(port, "ec2", { "content-type": "application/x-www-form-urlencoded; charset=utf-8" }, body);

/** A signed JSON 1.1 POST (SSM and its kin): `target` names the action, e.g. AmazonSSM.GetParameter. */
export const signedJson = (port, service, target, input) =>
  signedRequest(port, service, { "content-type": "application/x-amz-json-1.1", "x-amz-target": target }, JSON.stringify(input));

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

/**
 * `connections` raw sockets, each replaying the request as soon as the last answer is whole.
 * autocannon cannot measure servers that close the connection after each answer (moto does);
 * this client reconnects when they do, as the SDKs' pools do, and otherwise keeps the
 * connection alive. It frames answers by Content-Length and does nothing else, so that at
 * concurrency 1 the servers rather than the client are measured.
 */
export async function measureReplay(port, request, connections, seconds) {
  const head = Object.entries({ ...request.headers, host: `127.0.0.1:${port}`, "content-length": Buffer.byteLength(request.body) })
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join("");
  const bytes = Buffer.from(`POST / HTTP/1.1\r\n${head}\r\n${request.body}`);
  const run = async (duration) => {
    const started = Date.now();
    const deadline = started + duration * 1000;
    const latencies = [];
    let failed = 0;
    await Promise.all(Array.from({ length: connections }, () => replayUntil(port, bytes, deadline, latencies, () => failed++)));
    // Answers still in flight at the deadline are waited for: a slow server's phase runs long.
    return { latencies, failed, seconds: (Date.now() - started) / 1000 };
  };
  await run(WARMUP_SECONDS);
  const { latencies, failed, seconds: elapsed } = await run(seconds);
  latencies.sort((a, b) => a - b);
  const at = (q) => (latencies.length ? Number(latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))].toFixed(1)) : NaN);
  return { rps: latencies.length / elapsed, p50: at(0.5), p99: at(0.99), non2xx: failed };
}

/** One connection's loop: send, read one answer, record it, again until the deadline. */
function replayUntil(port, bytes, deadline, latencies, onFailure) {
  return new Promise((resolve) => {
    let socket;
    let started = 0n;
    // One answer at a time: its head is buffered until whole, its body only counted.
    let head = Buffer.alloc(0);
    let answer; // { ok, closeAfter, remaining } once the head is read
    const send = () => {
      if (Date.now() >= deadline) {
        socket.destroy();
        return resolve();
      }
      started = process.hrtime.bigint();
      socket.write(bytes);
    };
    const connect = () => {
      head = Buffer.alloc(0);
      answer = undefined;
      socket = netConnect({ host: "127.0.0.1", port, noDelay: true }, send);
      socket.on("data", onData);
      socket.on("error", () => {});
      socket.on("close", () => {
        if (Date.now() >= deadline) return resolve();
        if (started !== 0n) onFailure(); // closed before the answer was whole
        started = 0n;
        connect();
      });
    };
    const onData = (chunk) => {
      if (!answer) {
        head = head.length ? Buffer.concat([head, chunk]) : chunk;
        const end = head.indexOf("\r\n\r\n");
        if (end < 0) return;
        const headText = head.subarray(0, end).toString("latin1");
        const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(headText)?.[1]);
        if (!Number.isFinite(length)) throw new Error(`answer without Content-Length: ${headText.slice(0, 200)}`);
        answer = {
          ok: headText.startsWith("HTTP/1.1 200") || headText.startsWith("HTTP/1.0 200"),
          closeAfter: /\r\nconnection:\s*close/i.test(headText) || headText.startsWith("HTTP/1.0"),
          remaining: length - (head.length - end - 4),
        };
        head = Buffer.alloc(0);
      } else {
        answer.remaining -= chunk.length;
      }
      if (answer.remaining > 0) return;
      if (answer.ok) latencies.push(Number(process.hrtime.bigint() - started) / 1e6);
      else onFailure();
      started = 0n;
      const { closeAfter } = answer;
      answer = undefined;
      if (closeAfter)
        socket.destroy(); // the close handler reconnects
      else send();
    };
    connect();
  });
}

export const count = (text, element) => text.split(`<${element}>`).length - 1;
