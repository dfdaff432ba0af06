// Key pairs through @aws-sdk/client-ec2, their material checked with ssh-keygen, openssl and
// puttygen: CreateKeyPair (rsa | ed25519, pem | ppk), ImportKeyPair (OpenSSH, RFC 4716, PEM),
// fingerprints as AWS documents them, DescribeKeyPairs, DeleteKeyPair, KeyName on instances.
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  CreateKeyPairCommand,
  DeleteKeyPairCommand,
  DescribeImagesCommand,
  DescribeInstancesCommand,
  DescribeKeyPairsCommand,
  ImportKeyPairCommand,
  RunInstancesCommand,
} from "@aws-sdk/client-ec2";
import { errorName } from "./helpers/data.js";
import { startTestKiln, type TestKiln } from "./helpers/kiln.js";
import { run, scratch } from "./helpers/tools.js";

let kiln: TestKiln;
let dir: string;
before(async () => {
  kiln = await startTestKiln();
  dir = scratch("kiln-keys-");
});
after(() => kiln.close());

const colonHex = (hex: string) => hex.match(/../g)!.join(":");
/** `openssl dgst` of a DER file as AWS prints fingerprints. */
const digestOf = async (algorithm: "sha1" | "md5", file: string) => colonHex((await run("openssl", ["dgst", `-${algorithm}`, "-r", file])).split(" ")[0]!);
const save = (name: string, text: string, mode = 0o600) => {
  const path = join(dir, name);
  writeFileSync(path, text.endsWith("\n") ? text : `${text}\n`, { mode });
  return path;
};
/** The `type base64` of an OpenSSH public key line. */
const keyPart = (line: string) => line.trim().split(/\s+/).slice(0, 2).join(" ");

describe("CreateKeyPair", () => {
  it("makes an RSA key in PEM whose fingerprint is the SHA-1 of its DER private key", async () => {
    const ec2 = kiln.ec2();
    const created = await ec2.send(
      new CreateKeyPairCommand({ KeyName: "rsa-pem", TagSpecifications: [{ ResourceType: "key-pair", Tags: [{ Key: "team", Value: "images" }] }] }),
    );
    assert.match(created.KeyPairId!, /^key-[0-9a-f]{17}$/);
    assert.match(created.KeyMaterial!, /^-----BEGIN RSA PRIVATE KEY-----\n/);
    assert.deepEqual(created.Tags, [{ Key: "team", Value: "images" }]);
    const pem = save("rsa.pem", created.KeyMaterial!);
    await run("openssl", ["pkcs8", "-topk8", "-nocrypt", "-in", pem, "-outform", "DER", "-out", join(dir, "rsa.pk8")]);
    assert.equal(created.KeyFingerprint, await digestOf("sha1", join(dir, "rsa.pk8")));
    assert.match(await run("openssl", ["rsa", "-in", pem, "-noout", "-text"]), /Private-Key: \(2048 bit/);

    const [info] = (await ec2.send(new DescribeKeyPairsCommand({ KeyNames: ["rsa-pem"], IncludePublicKey: true }))).KeyPairs!;
    assert.equal(info!.KeyPairId, created.KeyPairId);
    assert.equal(info!.KeyType, "rsa");
    assert.equal(info!.KeyFingerprint, created.KeyFingerprint);
    assert.deepEqual(info!.Tags, [{ Key: "team", Value: "images" }]);
    assert.ok(info!.CreateTime instanceof Date);
    // The public key Kiln keeps is the private key's own.
    assert.equal(keyPart(info!.PublicKey!), keyPart(await run("ssh-keygen", ["-y", "-f", pem])));
  });

  it("makes an ED25519 key in OpenSSH format whose fingerprint is OpenSSH's SHA-256", async () => {
    const ec2 = kiln.ec2();
    const created = await ec2.send(new CreateKeyPairCommand({ KeyName: "ed-pem", KeyType: "ed25519" }));
    assert.match(created.KeyMaterial!, /^-----BEGIN OPENSSH PRIVATE KEY-----\n/);
    const pem = save("ed.pem", created.KeyMaterial!);
    const publicLine = await run("ssh-keygen", ["-y", "-f", pem]);
    const pub = save("ed.pub", publicLine, 0o644);
    const sshFingerprint = (await run("ssh-keygen", ["-l", "-E", "sha256", "-f", pub])).split(" ")[1]!;
    // ssh-keygen prints `SHA256:` and drops base64's padding; EC2 keeps the padding.
    assert.equal(`SHA256:${created.KeyFingerprint!.replace(/=+$/, "")}`, sshFingerprint);
    const [info] = (await ec2.send(new DescribeKeyPairsCommand({ KeyPairIds: [created.KeyPairId!], IncludePublicKey: true }))).KeyPairs!;
    assert.equal(info!.KeyType, "ed25519");
    assert.equal(keyPart(info!.PublicKey!), keyPart(publicLine));
  });

  for (const keyType of ["rsa", "ed25519"] as const) {
    it(`makes a ${keyType} key as a PuTTY PPK file that puttygen reads`, async () => {
      const ec2 = kiln.ec2();
      const created = await ec2.send(new CreateKeyPairCommand({ KeyName: `${keyType}-ppk`, KeyType: keyType, KeyFormat: "ppk" }));
      assert.match(created.KeyMaterial!, new RegExp(`^PuTTY-User-Key-File-2: ssh-${keyType}\\n`));
      const ppk = save(`${keyType}.ppk`, created.KeyMaterial!);
      // puttygen checks the file's MAC, so a wrong private half or MAC fails here.
      const openssh = join(dir, `${keyType}-from-ppk`);
      await run("puttygen", [ppk, "-O", "private-openssh", "-o", openssh]);
      const fromPrivate = await run("ssh-keygen", ["-y", "-f", openssh]);
      const [info] = (await ec2.send(new DescribeKeyPairsCommand({ KeyNames: [`${keyType}-ppk`], IncludePublicKey: true }))).KeyPairs!;
      assert.equal(keyPart(info!.PublicKey!), keyPart(fromPrivate));
      if (keyType === "rsa") {
        await run("openssl", ["pkcs8", "-topk8", "-nocrypt", "-in", openssh, "-outform", "DER", "-out", join(dir, "ppk.pk8")]).catch(async () => {
          // OpenSSH-format RSA keys: convert to PEM first.
          await run("ssh-keygen", ["-p", "-N", "", "-m", "PEM", "-f", openssh]);
          await run("openssl", ["pkcs8", "-topk8", "-nocrypt", "-in", openssh, "-outform", "DER", "-out", join(dir, "ppk.pk8")]);
        });
        assert.equal(created.KeyFingerprint, await digestOf("sha1", join(dir, "ppk.pk8")));
      }
    });
  }

  it("refuses a name already taken, and a bad key type", async () => {
    const ec2 = kiln.ec2();
    await ec2.send(new CreateKeyPairCommand({ KeyName: "taken" }));
    assert.equal(await errorName(ec2.send(new CreateKeyPairCommand({ KeyName: "taken" }))), "InvalidKeyPair.Duplicate");
    assert.equal(await errorName(ec2.send(new CreateKeyPairCommand({ KeyName: "dsa", KeyType: "dsa" as "rsa" }))), "InvalidParameterValue");
    // Names are per region: the same name is free in another region.
    const west = await kiln.ec2({ region: "us-west-2" }).send(new CreateKeyPairCommand({ KeyName: "taken" }));
    assert.ok(west.KeyPairId);
  });
});

describe("ImportKeyPair", () => {
  it("imports an OpenSSH RSA public key; the fingerprint is the MD5 of its DER public key", async () => {
    const key = join(dir, "import-rsa");
    await run("ssh-keygen", ["-q", "-t", "rsa", "-b", "4096", "-N", "", "-m", "PEM", "-f", key]);
    const ec2 = kiln.ec2();
    const imported = await ec2.send(new ImportKeyPairCommand({ KeyName: "imported-rsa", PublicKeyMaterial: readFileSync(`${key}.pub`) }));
    await run("openssl", ["rsa", "-in", key, "-pubout", "-outform", "DER", "-out", join(dir, "import-rsa.der")]);
    assert.equal(imported.KeyFingerprint, await digestOf("md5", join(dir, "import-rsa.der")));
    const [info] = (await ec2.send(new DescribeKeyPairsCommand({ KeyNames: ["imported-rsa"], IncludePublicKey: true }))).KeyPairs!;
    assert.equal(keyPart(info!.PublicKey!), keyPart(readFileSync(`${key}.pub`, "utf8")));
  });

  it("imports ED25519 keys as an OpenSSH line and as an RFC 4716 block, with the same fingerprint", async () => {
    const key = join(dir, "import-ed");
    await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", key]);
    const rfc4716 = await run("ssh-keygen", ["-e", "-m", "RFC4716", "-f", `${key}.pub`]);
    assert.match(rfc4716, /^---- BEGIN SSH2 PUBLIC KEY ----/);
    const ec2 = kiln.ec2();
    const fromLine = await ec2.send(new ImportKeyPairCommand({ KeyName: "ed-line", PublicKeyMaterial: readFileSync(`${key}.pub`) }));
    const fromBlock = await ec2.send(new ImportKeyPairCommand({ KeyName: "ed-block", PublicKeyMaterial: Buffer.from(rfc4716) }));
    const sshFingerprint = (await run("ssh-keygen", ["-l", "-E", "sha256", "-f", `${key}.pub`])).split(" ")[1]!;
    assert.equal(`SHA256:${fromLine.KeyFingerprint!.replace(/=+$/, "")}`, sshFingerprint);
    assert.equal(fromBlock.KeyFingerprint, fromLine.KeyFingerprint);
  });

  it("refuses what is not an RSA or ED25519 public key", async () => {
    const ec2 = kiln.ec2();
    const ecdsa = join(dir, "import-ecdsa");
    await run("ssh-keygen", ["-q", "-t", "ecdsa", "-N", "", "-f", ecdsa]);
    assert.equal(
      await errorName(ec2.send(new ImportKeyPairCommand({ KeyName: "ecdsa", PublicKeyMaterial: readFileSync(`${ecdsa}.pub`) }))),
      "InvalidKey.Format",
    );
    assert.equal(
      await errorName(ec2.send(new ImportKeyPairCommand({ KeyName: "junk", PublicKeyMaterial: Buffer.from("ssh-rsa not-base64!") }))),
      "InvalidKey.Format",
    );
    const small = join(dir, "import-small");
    await run("ssh-keygen", ["-q", "-t", "rsa", "-b", "3072", "-N", "", "-f", small]);
    assert.equal(
      await errorName(ec2.send(new ImportKeyPairCommand({ KeyName: "odd-size", PublicKeyMaterial: readFileSync(`${small}.pub`) }))),
      "InvalidKey.Format",
    );
    // Nothing half-made: none of them is listed.
    const names = (await ec2.send(new DescribeKeyPairsCommand({}))).KeyPairs!.map((k) => k.KeyName);
    assert.ok(!names.includes("ecdsa") && !names.includes("junk") && !names.includes("odd-size"));
  });
});

describe("DescribeKeyPairs and DeleteKeyPair", () => {
  it("filters, reports missing names and ids, and deletes by name or id", async () => {
    const ec2 = kiln.ec2({ accessKeyId: "222233334444" });
    const a = await ec2.send(new CreateKeyPairCommand({ KeyName: "deploy-a", KeyType: "ed25519" }));
    const b = await ec2.send(
      new CreateKeyPairCommand({ KeyName: "deploy-b", TagSpecifications: [{ ResourceType: "key-pair", Tags: [{ Key: "env", Value: "ci" }] }] }),
    );
    const named = async (filters: { Name: string; Values: string[] }[]) =>
      (await ec2.send(new DescribeKeyPairsCommand({ Filters: filters }))).KeyPairs!.map((k) => k.KeyName);
    assert.deepEqual(await named([{ Name: "key-name", Values: ["deploy-*"] }]), ["deploy-a", "deploy-b"]);
    assert.deepEqual(await named([{ Name: "key-type", Values: ["ed25519"] }]), ["deploy-a"]);
    assert.deepEqual(await named([{ Name: "tag:env", Values: ["ci"] }]), ["deploy-b"]);
    assert.deepEqual(await named([{ Name: "fingerprint", Values: [b.KeyFingerprint!] }]), ["deploy-b"]);
    // Another account sees none of them.
    assert.deepEqual((await kiln.ec2().send(new DescribeKeyPairsCommand({ Filters: [{ Name: "key-name", Values: ["deploy-*"] }] }))).KeyPairs, []);
    assert.equal(await errorName(ec2.send(new DescribeKeyPairsCommand({ KeyNames: ["absent"] }))), "InvalidKeyPair.NotFound");
    assert.equal(await errorName(ec2.send(new DescribeKeyPairsCommand({ KeyPairIds: ["key-0123456789abcdef0"] }))), "InvalidKeyPair.NotFound");

    assert.equal((await ec2.send(new DeleteKeyPairCommand({ KeyName: "deploy-a" }))).KeyPairId, a.KeyPairId);
    assert.equal((await ec2.send(new DeleteKeyPairCommand({ KeyPairId: b.KeyPairId }))).Return, true);
    // A name EC2 does not know deletes quietly; an id it does not know is an error.
    assert.equal((await ec2.send(new DeleteKeyPairCommand({ KeyName: "deploy-a" }))).Return, true);
    assert.equal(await errorName(ec2.send(new DeleteKeyPairCommand({ KeyPairId: b.KeyPairId }))), "InvalidKeyPair.NotFound");
    assert.deepEqual(await named([{ Name: "key-name", Values: ["deploy-*"] }]), []);
  });

  it("records the key name on instances launched with it, and refuses an unknown one", async () => {
    const ec2 = kiln.ec2();
    await ec2.send(new CreateKeyPairCommand({ KeyName: "launcher" }));
    const launched = await ec2.send(
      new RunInstancesCommand({ ImageId: await catalogueImage(), MinCount: 1, MaxCount: 1, InstanceType: "t3.micro", KeyName: "launcher" }),
    );
    const id = launched.Instances![0]!.InstanceId!;
    assert.equal(launched.Instances![0]!.KeyName, "launcher");
    const described = await ec2.send(new DescribeInstancesCommand({ Filters: [{ Name: "key-name", Values: ["launcher"] }] }));
    assert.deepEqual(
      described.Reservations!.flatMap((r) => r.Instances!.map((i) => i.InstanceId)),
      [id],
    );
    assert.equal(
      await errorName(
        ec2.send(new RunInstancesCommand({ ImageId: await catalogueImage(), MinCount: 1, MaxCount: 1, InstanceType: "t3.micro", KeyName: "nobody" })),
      ),
      "InvalidKeyPair.NotFound",
    );
  });
});

async function catalogueImage(): Promise<string> {
  const images = await kiln.ec2().send(new DescribeImagesCommand({ Owners: ["amazon"], Filters: [{ Name: "architecture", Values: ["x86_64"] }] }));
  return images.Images![0]!.ImageId!;
}
