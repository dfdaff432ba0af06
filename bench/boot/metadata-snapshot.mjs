#!/usr/bin/env node
// The metadata service for qemu by hand, so that the guest by hand does at boot what Kiln's does
// (cloud-init finds EC2, reads its metadata, makes its user and keys): a copy of what Kiln's
// service said of the instance, served at 169.254.169.254:80. run.mjs starts it inside the guest's
// own network namespace (as Kiln's guests have), where it adds that address to the loopback.
//
//   node metadata-snapshot.mjs <snapshot.json>      # { "latest/meta-data/instance-id": "i-…", … }
//
// Token PUTs get a fixed token; any version serves what `latest` does; the rest is 404. It ends
// when the qemu it was started beside (its parent, after the shell's exec) ends.
import { readFileSync } from "node:fs";
import { createServer } from "node:http";

const snapshot = JSON.parse(readFileSync(process.argv[2], "utf8"));

const server = createServer((req, res) => {
  const path = (req.url ?? "/").split("?")[0].replace(/^\/+/, "");
  if (path === "latest/api/token") {
    res.writeHead(req.method === "PUT" ? 200 : 405, { "content-type": "text/plain" });
    res.end(req.method === "PUT" ? "bench-token" : "");
    return;
  }
  // Any version as latest; a directory with or without its slash.
  const [version, ...rest] = path.split("/");
  const key = version ? ["latest", ...rest].join("/") : "";
  const body = snapshot[key] ?? snapshot[`${key}/`] ?? (key.endsWith("/") ? snapshot[key.slice(0, -1)] : undefined);
  if (body === undefined) {
    res.writeHead(404, { "content-type": "text/html" }).end("404 - Not Found");
    return;
  }
  res.writeHead(200, { "content-type": "text/plain" }).end(body);
});
server.listen({ host: "169.254.169.254", port: 80 });

const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) process.exit(0);
}, 500).unref();
