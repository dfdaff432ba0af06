// The least a server meeting Kiln's contract can do per request, for bench/api to measure as a
// second reference: read the body, verify the SigV4 signature (with Kiln's own verifier), answer
// a constant body carrying a fresh request id, and log one line (with Kiln's own logger). No
// parameters, no actions, no store. What separates it from the bare server is the price of the
// contract; what separates Kiln from it is Kiln's own work.
//
//   node bench/api/minimal-server.mjs <port> <answer file>
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { defaultAccounts } from "../../dist/src/auth/accounts.js";
import { SignatureVerifier } from "../../dist/src/auth/sigv4.js";
import { createLogger } from "../../dist/src/log.js";

const [port, answerFile] = process.argv.slice(2);
const [before, after] = readFileSync(answerFile, "utf8").split(/<requestId>[^<]*<\/requestId>/);
const verifier = new SignatureVerifier(defaultAccounts());
const logger = createLogger("info");

createServer((req, res) => {
  const chunks = [];
  req.on("data", (chunk) => chunks.push(chunk));
  req.on("end", async () => {
    const started = process.hrtime.bigint();
    const requestId = randomUUID();
    let status = 200;
    try {
      await verifier.verify({ method: req.method, path: "/", query: {}, headers: req.headers, body: Buffer.concat(chunks) });
    } catch {
      status = 403;
    }
    const body = `${before}<requestId>${requestId}</requestId>${after}`;
    res.writeHead(status, { "content-type": "text/xml;charset=UTF-8", "content-length": Buffer.byteLength(body), "x-amzn-requestid": requestId });
    res.end(body);
    logger.info({ requestId, method: req.method, path: "/", status, durationMs: Number(process.hrtime.bigint() - started) / 1e6 }, "request");
  });
}).listen(Number(port), "127.0.0.1");
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => process.exit(0));
