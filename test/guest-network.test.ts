// A guest's network namespace (vm/guest-network.ts), without a guest: a program started with
// the namespace's prefix (as qemu is) reaches 169.254.169.254:80 and gets Kiln's answer, not
// the host's; Kiln reaches a port listening inside the namespace; slirp's options put the guest
// at its private address in its subnet; the SMBIOS identity is one cloud-init takes for EC2; and
// security group rules let a caller in to the guest's SSH as EC2's do.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer } from "node:http";
import { describe, it } from "node:test";
import { ingressAllows, type IngressRule } from "../src/domain/security-rules.js";
import { GUEST_SSH_PORT, openGuestNetwork, probeGuestNetworks, slirpOptions } from "../src/vm/guest-network.js";
import { ec2Identity } from "../src/vm/machine.js";

/** Runs a Node script behind the namespace's prefix; its standard output. */
function inNamespace(prefix: readonly string[], script: string): { output: Promise<string>; stop(): void } {
  const child = spawn(prefix[0]!, [...prefix.slice(1), process.execPath, "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  let output = "";
  child.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")));
  return { output: new Promise((resolve) => child.on("close", () => resolve(output))), stop: () => child.kill() };
}

describe("guest network namespace", () => {
  it("can be made here", async () => {
    assert.deepEqual(await probeGuestNetworks(), { ok: true });
  });

  it("gives the namespace Kiln's metadata service at 169.254.169.254, and Kiln a way in", async () => {
    const http = createServer((req, res) => res.end(`kiln answers ${req.method} ${req.url}`));
    const network = await openGuestNetwork({ subnetCidr: "172.31.16.0/20", privateIp: "172.31.20.7", mac: "02:00:00:00:00:01" }, (socket) => {
      http.emit("connection", socket);
      socket.resume();
    });
    try {
      const fetched = inNamespace(
        network.prefix,
        `fetch("http://169.254.169.254/latest/meta-data/").then((r) => r.text()).then((t) => process.stdout.write(t), (e) => process.stdout.write("failed: " + e.cause?.code))`,
      );
      assert.equal(await fetched.output, "kiln answers GET /latest/meta-data/");

      // A port listening inside (as slirp's forward of the guest's SSH does), reached from Kiln.
      const listener = inNamespace(
        network.prefix,
        `require("node:net").createServer((s) => s.end("inside")).listen(${GUEST_SSH_PORT}, "127.0.0.1", () => process.stdout.write("listening"))`,
      );
      let said = "";
      for (let tries = 0; tries < 100 && said !== "inside"; tries++) {
        said = await network.connect(GUEST_SSH_PORT).then(
          (socket) =>
            new Promise<string>((resolve) => {
              let text = "";
              socket.on("data", (chunk: Buffer) => (text += chunk.toString("utf8")));
              socket.on("end", () => resolve(text));
              socket.resume();
            }),
          () => new Promise<string>((resolve) => setTimeout(() => resolve(""), 50)),
        );
      }
      listener.stop();
      assert.equal(said, "inside");
    } finally {
      network.close();
      http.close();
    }
    await assert.rejects(network.connect(GUEST_SSH_PORT), /gone/);
  });

  it("puts the guest at its private address in its subnet, with the subnet's gateway and DNS", () => {
    assert.equal(
      slirpOptions({ subnetCidr: "172.31.16.0/20", privateIp: "172.31.20.7", mac: "02:00:00:00:00:01" }),
      "net=172.31.16.0/20,host=172.31.16.1,dns=172.31.16.2,dhcpstart=172.31.20.7,hostfwd=tcp:127.0.0.1:22-:22",
    );
  });

  it("tells the guest it is an EC2 instance: a system UUID starting with ec2, the serial the same, stable per instance", () => {
    const identity = ec2Identity("i-0123456789abcdef0");
    const match = /^type=1,manufacturer=Amazon EC2,serial=(ec2[0-9a-f]{5}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}),uuid=(.*)$/.exec(identity);
    assert.ok(match, identity);
    assert.equal(match[1], match[2]);
    assert.equal(ec2Identity("i-0123456789abcdef0"), identity);
    assert.notEqual(ec2Identity("i-0123456789abcdef1"), identity);
  });
});

describe("what a security group lets in to a guest's SSH", () => {
  const rule = (over: Partial<IngressRule>): IngressRule => ({
    is_egress: 0,
    ip_protocol: "tcp",
    from_port: 22,
    to_port: 22,
    cidr_ipv4: "127.0.0.1/32",
    ...over,
  });
  it("a rule of TCP to the port from a block holding the caller, or of all traffic; nothing else", () => {
    assert.equal(ingressAllows([rule({})], "127.0.0.1", 22), true);
    assert.equal(ingressAllows([rule({ cidr_ipv4: "0.0.0.0/0" })], "127.0.0.1", 22), true);
    assert.equal(ingressAllows([rule({ cidr_ipv4: "127.0.0.0/8", from_port: 0, to_port: 1024 })], "127.0.0.1", 22), true);
    assert.equal(ingressAllows([rule({ ip_protocol: "-1", from_port: null, to_port: null, cidr_ipv4: "0.0.0.0/0" })], "127.0.0.1", 22), true);
    assert.equal(ingressAllows([], "127.0.0.1", 22), false, "no rule");
    assert.equal(ingressAllows([rule({ cidr_ipv4: "10.0.0.0/8" })], "127.0.0.1", 22), false, "another block");
    assert.equal(ingressAllows([rule({ from_port: 80, to_port: 80 })], "127.0.0.1", 22), false, "another port");
    assert.equal(ingressAllows([rule({ ip_protocol: "udp" })], "127.0.0.1", 22), false, "another protocol");
    assert.equal(ingressAllows([rule({ is_egress: 1 })], "127.0.0.1", 22), false, "an egress rule");
    assert.equal(ingressAllows([rule({ cidr_ipv4: null })], "127.0.0.1", 22), false, "a rule naming a group");
  });
});
