// Key pairs' key material: generating RSA and ED25519 keys in the formats CreateKeyPair hands
// out (PEM, or PuTTY's PPK), reading the public keys ImportKeyPair accepts, and the fingerprints
// AWS documents for each (KeyPairInfo.KeyFingerprint):
//   created RSA   SHA-1 of the DER (PKCS#8) private key, hex pairs joined by colons
//   imported RSA  MD5 of the DER public key, likewise
//   ED25519       base64 SHA-256 of the SSH public key blob (OpenSSH's own fingerprint)
//
// node:crypto makes the keys; sshpk reads and writes the SSH encodings (OpenSSH lines, RFC 4716,
// OpenSSH private keys), which node:crypto does not know. Neither writes a PPK private key, so
// that file is written here.
import { createHash, createHmac, createPublicKey, generateKeyPair as generateKeys, type KeyObject } from "node:crypto";
import { promisify } from "node:util";
import sshpk from "sshpk";
import { ApiError } from "../protocol/errors.js";

export type SshKeyType = "rsa" | "ed25519";

export interface NewKeyPair {
  keyType: SshKeyType;
  /** The private key as CreateKeyPair returns it. */
  keyMaterial: string;
  fingerprint: string;
  /** The public key as an OpenSSH line (`ssh-rsa AAAA… name`). */
  publicKey: string;
}

export interface ImportedKey {
  keyType: SshKeyType;
  fingerprint: string;
  publicKey: string;
}

/** RSA sizes ImportKeyPair accepts ("Supported lengths: 1024, 2048, and 4096"). */
const RSA_BITS = [1024, 2048, 4096];

const colonHex = (digest: Buffer) => digest.toString("hex").match(/../g)!.join(":");
const sshLine = (key: sshpk.Key, name: string) => `${key.toString("ssh").split(" ").slice(0, 2).join(" ")} ${name}`;
const ed25519Fingerprint = (key: sshpk.Key) => createHash("sha256").update(key.toBuffer("rfc4253")).digest("base64");

// Keys are made on libuv's thread pool: an RSA key takes tens to hundreds of milliseconds to find,
// which on the event loop would hold up every other request. One RSA key at a time, so that many
// CreateKeyPair at once leave the pool's other threads to file access (health's among it).
let rsaQueue: Promise<unknown> = Promise.resolve();
function generateRsa() {
  const made = rsaQueue.then(() => promisify(generateKeys)("rsa", { modulusLength: 2048 }));
  rsaQueue = made.catch(() => {});
  return made;
}
const generateEd25519 = () => promisify(generateKeys)("ed25519", undefined);

export async function generateKeyPair(keyType: SshKeyType, keyFormat: "pem" | "ppk", name: string): Promise<NewKeyPair> {
  if (keyType === "rsa") {
    const { privateKey, publicKey } = await generateRsa();
    const pkcs8 = privateKey.export({ type: "pkcs8", format: "der" });
    const ssh = sshpk.parseKey(publicKey.export({ type: "spki", format: "pem" }), "pem");
    return {
      keyType,
      keyMaterial: keyFormat === "ppk" ? puttyPrivateKey(privateKey, ssh, name) : (privateKey.export({ type: "pkcs1", format: "pem" }) as string).trimEnd(),
      fingerprint: colonHex(createHash("sha1").update(pkcs8).digest()),
      publicKey: sshLine(ssh, name),
    };
  }
  const { privateKey, publicKey } = await generateEd25519();
  const ssh = sshpk.parseKey(publicKey.export({ type: "spki", format: "pem" }), "pem");
  const openssh = sshpk.parsePrivateKey(privateKey.export({ type: "pkcs8", format: "pem" }), "pkcs8").toString("openssh");
  return {
    keyType,
    keyMaterial: keyFormat === "ppk" ? puttyPrivateKey(privateKey, ssh, name) : openssh.trimEnd(),
    fingerprint: ed25519Fingerprint(ssh),
    publicKey: sshLine(ssh, name),
  };
}

/**
 * An ImportKeyPair public key: an OpenSSH line, an RFC 4716 block, or PEM/DER (SPKI or PKCS#1).
 * Only RSA (of a supported size) and ED25519 keys are accepted, as EC2 accepts.
 */
export function importPublicKey(material: Buffer, name: string): ImportedKey {
  let key: sshpk.Key;
  try {
    key = sshpk.parseKey(material, "auto");
  } catch {
    throw new ApiError("InvalidKey.Format", "Key is not in valid OpenSSH public key format");
  }
  if (key.type === "rsa") {
    if (!RSA_BITS.includes(key.size))
      throw new ApiError("InvalidKey.Format", `Invalid RSA key length ${key.size}: supported lengths are 1024, 2048, and 4096.`);
    const der = createPublicKey(key.toString("pkcs8")).export({ type: "spki", format: "der" });
    return { keyType: "rsa", fingerprint: colonHex(createHash("md5").update(der).digest()), publicKey: sshLine(key, name) };
  }
  if (key.type === "ed25519") return { keyType: "ed25519", fingerprint: ed25519Fingerprint(key), publicKey: sshLine(key, name) };
  throw new ApiError("InvalidKey.Format", `Key type ${key.type} is not supported: import an RSA or ED25519 key.`);
}

// --- PuTTY private key file, version 2, unencrypted (readable by every PuTTY since 0.52) ---

const sshString = (bytes: Buffer | string) => {
  const body = typeof bytes === "string" ? Buffer.from(bytes) : bytes;
  const length = Buffer.alloc(4);
  length.writeUInt32BE(body.length);
  return Buffer.concat([length, body]);
};

/** An SSH mpint from an unsigned big-endian integer (a leading zero byte when the top bit is set). */
const mpint = (unsigned: Buffer) => {
  let start = 0;
  while (start < unsigned.length - 1 && unsigned[start] === 0) start++;
  const trimmed = unsigned.subarray(start);
  return sshString(trimmed[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), trimmed]) : trimmed);
};

const fromBase64Url = (value: string | undefined) => Buffer.from(value!, "base64url");

function puttyPrivateKey(privateKey: KeyObject, publicKey: sshpk.Key, comment: string): string {
  const jwk = privateKey.export({ format: "jwk" });
  const algorithm = publicKey.type === "rsa" ? "ssh-rsa" : "ssh-ed25519";
  const publicBlob = publicKey.toBuffer("rfc4253");
  let privateBlob: Buffer;
  if (publicKey.type === "rsa") {
    privateBlob = Buffer.concat([mpint(fromBase64Url(jwk.d)), mpint(fromBase64Url(jwk.p)), mpint(fromBase64Url(jwk.q)), mpint(fromBase64Url(jwk.qi))]);
  } else {
    // PuTTY keeps an EdDSA private key as a little-endian integer: the seed, high zero bytes dropped.
    const seed = fromBase64Url(jwk.d);
    let length = seed.length;
    while (length > 0 && seed[length - 1] === 0) length--;
    privateBlob = sshString(seed.subarray(0, length));
  }
  const macKey = createHash("sha1").update("putty-private-key-file-mac-key").digest();
  const mac = createHmac("sha1", macKey)
    .update(Buffer.concat([sshString(algorithm), sshString("none"), sshString(comment), sshString(publicBlob), sshString(privateBlob)]))
    .digest("hex");
  const lines = (blob: Buffer) => blob.toString("base64").match(/.{1,64}/g)!;
  const publicLines = lines(publicBlob);
  const privateLines = lines(privateBlob);
  return [
    `PuTTY-User-Key-File-2: ${algorithm}`,
    "Encryption: none",
    `Comment: ${comment}`,
    `Public-Lines: ${publicLines.length}`,
    ...publicLines,
    `Private-Lines: ${privateLines.length}`,
    ...privateLines,
    `Private-MAC: ${mac}`,
  ].join("\n");
}
