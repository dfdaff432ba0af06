// The fuzzer's parts: requests as bytes on a socket (so nothing a client library would refuse to
// send is out of reach), signed as the SDKs sign them or not at all, and fast-check arbitraries
// that build EC2 Query requests from the official model, S3 and EBS direct API requests, and
// requests to Kiln's own routes, each around a pool of real ids so that they reach past
// validation into the actions.
import { createHash } from "node:crypto";
import { connect } from "node:net";
import { crc32 } from "node:zlib";
import { Hash } from "@smithy/hash-node";
import { SignatureV4 } from "@smithy/signature-v4";
import fc from "fast-check";
import type { Shape, ServiceModel, StructureShape } from "../../src/protocol/model.js";

export type Protocol = "ec2" | "s3" | "ebs" | "ssm" | "admin";

/** A request before it is signed: the query decoded, as a signer reads it. */
export interface FuzzRequest {
  protocol: Protocol;
  method: string;
  path: string;
  query: [string, string][];
  headers: Record<string, string>;
  body: Buffer;
  signing: Signing;
}

/** Who signs, and how: as an SDK does (header), as a presigned URL, or not at all. */
export interface Signing {
  mode: "header" | "presign" | "none";
  accessKeyId: string;
  service: string;
  region: string;
}

export interface Answer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

const sha256Hex = (data: Buffer | string) => createHash("sha256").update(data).digest("hex");
const rfc3986 = (text: string) => encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

/** The bytes of `request` as it goes on the wire to 127.0.0.1:`port`, signed as `request.signing` says. */
export async function wireBytes(request: FuzzRequest, port: number): Promise<Buffer> {
  const host = `127.0.0.1:${port}`;
  let { headers, query } = request;
  headers = { host, ...headers };
  const { signing } = request;
  if (signing.mode !== "none") {
    const signer = new SignatureV4({
      credentials: { accessKeyId: signing.accessKeyId, secretAccessKey: "test" },
      region: signing.region,
      service: signing.service,
      sha256: Hash.bind(null, "sha256"),
      uriEscapePath: signing.service !== "s3",
    });
    const queryObject: Record<string, string | string[]> = {};
    for (const [name, value] of query) {
      const previous = queryObject[name];
      queryObject[name] = previous === undefined ? value : Array.isArray(previous) ? [...previous, value] : [previous, value];
    }
    const unsigned = {
      method: request.method,
      protocol: "http:",
      hostname: "127.0.0.1",
      port,
      path: request.path,
      query: queryObject,
      headers,
      body: request.body,
    };
    if (signing.mode === "header") {
      if (signing.service === "s3" && headers["x-amz-content-sha256"] === undefined) headers["x-amz-content-sha256"] = sha256Hex(request.body);
      headers = (await signer.sign(unsigned)).headers as Record<string, string>;
    } else {
      const presigned = await signer.presign(unsigned, { expiresIn: 300 });
      query = Object.entries(presigned.query ?? {}).flatMap(([name, value]) =>
        (Array.isArray(value) ? value : [value]).map((v): [string, string] => [name, String(v)]),
      );
    }
  }
  const queryString = query.map(([name, value]) => `${rfc3986(name)}=${rfc3986(value)}`).join("&");
  const lines = [`${request.method} ${request.path}${queryString ? `?${queryString}` : ""} HTTP/1.1`];
  for (const [name, value] of Object.entries({ ...headers, "content-length": String(request.body.length), connection: "close" }))
    lines.push(`${name}: ${value}`);
  return Buffer.concat([Buffer.from(`${lines.join("\r\n")}\r\n\r\n`, "utf8"), request.body]);
}

/** Sends `bytes` on a new connection and reads the answer, or fails past the deadline. */
export function exchange(port: number, bytes: Buffer, deadlineMs: number): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = connect(port, "127.0.0.1", () => socket.write(bytes));
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within ${deadlineMs} ms`));
    }, deadlineMs);
    const done = (error?: Error) => {
      clearTimeout(timer);
      const answer = parseAnswer(Buffer.concat(chunks));
      if (answer) resolve(answer);
      else reject(error ?? new Error(`the connection closed with no HTTP answer (${chunks.length} chunks)`));
    };
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    socket.on("end", () => done());
    // Kiln may answer and close before it has read the whole body: the answer is what counts.
    socket.on("error", (error) => done(error));
  });
}

function parseAnswer(raw: Buffer): Answer | undefined {
  const split = raw.indexOf("\r\n\r\n");
  if (split < 0) return undefined;
  const [statusLine, ...headerLines] = raw.subarray(0, split).toString("latin1").split("\r\n");
  const status = /^HTTP\/1\.1 (\d{3})/.exec(statusLine ?? "");
  if (!status) return undefined;
  const headers: Record<string, string> = {};
  for (const line of headerLines) {
    const colon = line.indexOf(":");
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  let body = raw.subarray(split + 4);
  if (headers["transfer-encoding"] === "chunked") body = unchunked(body);
  return { status: Number(status[1]), headers, body: body.toString("utf8") };
}

function unchunked(body: Buffer): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const end = body.indexOf("\r\n", at);
    if (end < 0) break;
    const size = parseInt(body.subarray(at, end).toString("latin1"), 16);
    if (!(size > 0)) break;
    parts.push(body.subarray(end + 2, end + 2 + size));
    at = end + 2 + size + 2;
  }
  return Buffer.concat(parts);
}

/** Ids and names of real resources, so that requests reach past "does not exist". */
export interface Pools {
  ids: readonly string[];
  buckets: readonly string[];
  keys: readonly string[];
  instanceIds: readonly string[];
  snapshotIds: readonly string[];
  parameterNames: readonly string[];
}

/**
 * How a fuzzed request is signed: mostly as an SDK signs it (by `accessKeyId`, for `service`, in
 * us-east-1 where the pools' resources are), else with one thing wrong: another service, an
 * invented or empty region, an unknown key, or no signature at all.
 */
export function signingArb(accessKeyId: string, service: string, modes: Signing["mode"][] = ["header", "header", "header", "presign"]): fc.Arbitrary<Signing> {
  const good = fc.record({
    mode: fc.constantFrom(...modes),
    accessKeyId: fc.constant(accessKeyId),
    service: fc.constant(service),
    region: fc.constantFrom("us-east-1", "us-east-1", "eu-west-1"),
  });
  const flawed = good.chain((signing) =>
    fc.oneof(
      fc.constantFrom("iam", "s3", "ec2", "ebs").map((other) => ({ ...signing, service: other })),
      fc.constantFrom("mars-north-1", "", "af-south-1").map((region) => ({ ...signing, region })),
      fc.constant({ ...signing, accessKeyId: "AKIDUNKNOWN0000000000" }),
      fc.constant({ ...signing, mode: "none" as const }),
    ),
  );
  return fc.oneof({ weight: 7, arbitrary: good }, { weight: 3, arbitrary: flawed });
}

const WEIRD_TEXT = [
  "",
  " ",
  "a",
  "%",
  "%ZZ",
  "%C3%28",
  "%E2%82",
  "\u0000",
  "\r\n",
  "\u00e9",
  "caf\u00e9 \u{1F600}",
  "\u202e",
  "../../etc/passwd",
  "*",
  "?",
  "\\",
  "*a*a*a*a*a*a*a*a*a*a*a*a*a*b",
  "?".repeat(200),
  "x".repeat(300),
  "x".repeat(70_000),
  "<a>&amp;</a>",
  "]]>",
  "=?UTF-8?B?w6k=?=",
  "null",
  "undefined",
  "__proto__",
  "constructor",
  "true",
  "-1",
  "0",
  "1e309",
  "NaN",
  "9".repeat(40),
  "2026-01-01T00:00:00Z",
  "ami-",
  "i-0",
  "vol-zzzzzzzzzzzzzzzzz",
];

/** A string: one of the pool's ids, a well-known troublemaker, or random text (ASCII or any script). */
export function textArb(pools: Pools): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(...pools.ids) },
    { weight: 3, arbitrary: fc.constantFrom(...WEIRD_TEXT) },
    { weight: 2, arbitrary: fc.string({ maxLength: 40 }) },
    { weight: 1, arbitrary: fc.string({ unit: "grapheme", maxLength: 20 }) },
  );
}

const INTEGERS = [
  "0",
  "1",
  "-1",
  "2",
  "5",
  "8",
  "20",
  "100",
  "1000",
  "1001",
  "100000",
  "2147483648",
  "9007199254740993",
  "1.5",
  "1e3",
  "0x10",
  "NaN",
  "",
  " 7",
  "99999999999999999999",
];
const BOOLEANS = ["true", "false", "TRUE", "1", "0", "yes", ""];
const TIMESTAMPS = ["2026-12-06T00:00:00Z", "2000-01-01T00:00:00.000Z", "1700000000", "not a date", "9999-99-99T99:99:99Z", ""];
const LIST_INDEXES = ["1", "1", "1", "2", "3", "0", "-1", "01", "4294967296", "a", ""];
const FILTER_NAMES = [
  "tag:Name",
  "tag-key",
  "tag-value",
  "state",
  "owner-id",
  "image-id",
  "name",
  "volume-id",
  "instance-state-name",
  "resource-id",
  "is-public",
  "no-such-filter",
];

/** Query parameters (wire names, with EC2's flattened `Name.N` lists) for a value of `shape`. */
function paramsArb(shape: Shape, prefix: string, pools: Pools, depth: number): fc.Arbitrary<[string, string][]> {
  const text = textArb(pools);
  switch (shape.type) {
    case "structure":
      return structureArb(shape, prefix, pools, depth);
    case "list": {
      if (depth > 4) return fc.constant([]);
      const item = (index: string) => paramsArb(shape.member.shape, `${prefix}.${index}`, pools, depth + 1);
      return fc
        .array(fc.constantFrom(...LIST_INDEXES), { maxLength: 3 })
        .chain((indexes) => (indexes.length === 0 ? fc.constant([]) : fc.tuple(...indexes.map(item)).map((lists) => lists.flat())));
    }
    case "map":
      return fc.constant([]);
    case "integer":
    case "long":
    case "float":
    case "double":
      return fc.oneof(fc.constantFrom(...INTEGERS), text).map((v) => [[prefix, v]]);
    case "boolean":
      return fc.constantFrom(...BOOLEANS).map((v) => [[prefix, v]]);
    case "timestamp":
      return fc.constantFrom(...TIMESTAMPS).map((v) => [[prefix, v]]);
    default: {
      const values = shape.enum ? fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...shape.enum) }, { weight: 1, arbitrary: text }) : text;
      return values.map((v) => [[prefix, v]]);
    }
  }
}

function structureArb(shape: StructureShape, prefix: string, pools: Pools, depth: number): fc.Arbitrary<[string, string][]> {
  if (depth > 4 || shape.members.length === 0) return fc.constant([]);
  if (shape.name === "Filter") {
    return fc
      .tuple(fc.constantFrom(...FILTER_NAMES), fc.array(textArb(pools), { maxLength: 3 }))
      .map(([name, values]) => [[`${prefix}.Name`, name], ...values.map((v, i): [string, string] => [`${prefix}.Value.${i + 1}`, v])]);
  }
  const join = (name: string) => (prefix ? `${prefix}.${name}` : name);
  const members = shape.members.map((member) => {
    // Member names as the API reference prints them resolve too.
    const given = fc.constantFrom(member.wireName, member.wireName, member.name).chain((name) => paramsArb(member.shape, join(name), pools, depth + 1));
    // Required members mostly there, others now and then: most requests get past the shape to the action.
    const [absent, present] = shape.required.has(member.name) ? [1, 8] : [6, 1];
    return fc.oneof({ weight: absent, arbitrary: fc.constant([] as [string, string][]) }, { weight: present, arbitrary: given });
  });
  return fc.tuple(...members).map((parts) => parts.flat());
}

/** Parameter names no model has: empty parts, huge indexes, prototype names, repeats. */
const oddParams: fc.Arbitrary<[string, string][]> = fc.oneof(
  { weight: 4, arbitrary: fc.constant([] as [string, string][]) },
  {
    weight: 1,
    arbitrary: fc.array(
      fc.tuple(
        fc.constantFrom(
          "Foo",
          "ImageId..1",
          ".",
          "Filter.1.Value.1.x",
          "__proto__.polluted",
          "constructor.prototype.x",
          "ImageId.99999999999999999999",
          "a".repeat(300),
          "Version",
          "Action",
          "DryRun",
        ),
        fc.string({ maxLength: 10 }),
      ),
      { maxLength: 2 },
    ),
  },
);

/** `Filter.1.Value.1` pairs as a tree whose numbered levels are lists, for XML and JSON bodies. */
function treeOf(pairs: [string, string][]): unknown {
  const root: Record<string, unknown> = {};
  for (const [name, value] of pairs) {
    const path = name.split(".");
    let node = root;
    for (const part of path.slice(0, -1)) {
      const next = node[part];
      if (typeof next !== "object" || next === null) node[part] = {};
      node = node[part] as Record<string, unknown>;
    }
    node[path[path.length - 1]!] = value;
  }
  const lists = (value: unknown): unknown => {
    if (typeof value !== "object" || value === null) return value;
    const entries = Object.entries(value);
    if (entries.length > 0 && entries.every(([k]) => /^\d+$/.test(k))) return entries.sort(([a], [b]) => Number(a) - Number(b)).map(([, v]) => lists(v));
    return Object.fromEntries(entries.map(([k, v]) => [k, lists(v)]));
  };
  return lists(root);
}

const xmlEscape = (text: string) => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
function xmlOf(name: string, value: unknown): string {
  if (Array.isArray(value)) return `<${name}>${value.map((v) => xmlOf("item", v)).join("")}</${name}>`;
  if (typeof value === "object" && value !== null)
    return `<${name}>${Object.entries(value)
      .map(([k, v]) => xmlOf(k, v))
      .join("")}</${name}>`;
  return `<${name}>${xmlEscape(String(value))}</${name}>`;
}

const deep = (open: string, close: string, depth: number) => `${open.repeat(depth)}${close.repeat(depth)}`;
const HOSTILE_BODIES: [string, string][] = [
  ["text/xml", deep("<a>", "</a>", 5000)],
  ["text/xml", '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xxxxxxxx">]><DescribeImages>&x;</DescribeImages>'],
  ["text/xml", "<DescribeImages><ImageId><item>ami-1</item>"],
  ["text/xml", "<a/><b/>"],
  ["application/json", deep("[", "]", 100_000)],
  ["application/json", deep('{"a":', "}", 20_000).replace(/}$/, "1}")],
  ["application/json", '{"Action":"DescribeImages","ImageId":{"__proto__":{"x":1}}}'],
  ["application/json", "[1,2,3]"],
  ["application/x-www-form-urlencoded", "Action=DescribeRegions&%ZZ=1&Version=2016-11-15"],
  ["application/octet-stream", "\u0000\u0001"],
];

/**
 * An EC2 Query request: an action Kiln serves (or one it does not, or none), parameters from its
 * input shape in the model, sent as a form POST, a GET query, an XML or a JSON body.
 */
export function ec2RequestArb(model: ServiceModel, actions: readonly string[], pools: Pools, accessKeyId: string): fc.Arbitrary<FuzzRequest> {
  const action = fc.oneof(
    { weight: 12, arbitrary: fc.constantFrom(...actions) },
    { weight: 1, arbitrary: fc.constantFrom("RunScheduledInstances", "NoSuchAction", "", "describeimages") },
  );
  const params = action.chain((name) => {
    const input = model.operations.get(name)?.input;
    const members = input ? structureArb(input, "", pools, 0) : fc.constant([] as [string, string][]);
    return fc.tuple(fc.constant(name), members, oddParams);
  });
  const encoding = fc.constantFrom("form", "form", "form", "query", "xml", "json", "hostile");
  return fc
    .tuple(params, encoding, fc.constantFrom(...HOSTILE_BODIES), fc.boolean(), signingArb(accessKeyId, "ec2"))
    .map(([[name, members, odd], how, hostile, wantJson, signing]): FuzzRequest => {
      const pairs: [string, string][] = [["Action", name], ["Version", "2016-11-15"], ...members, ...odd];
      const headers: Record<string, string> = wantJson ? { accept: "application/json" } : {};
      const request = (method: string, query: [string, string][], type: string | undefined, body: string): FuzzRequest => ({
        protocol: "ec2",
        method,
        path: "/",
        query,
        headers: type ? { ...headers, "content-type": type } : headers,
        body: Buffer.from(body, "utf8"),
        signing,
      });
      switch (how) {
        case "query":
          return request("GET", pairs, undefined, "");
        case "xml":
          return request("POST", [], "text/xml", xmlOf(name, treeOf(members)));
        case "json":
          return request("POST", [], "application/json", JSON.stringify({ Action: name, ...(treeOf(members) as object) }));
        case "hostile":
          return request("POST", [], hostile[0], hostile[1]);
        default:
          return request("POST", [], "application/x-www-form-urlencoded; charset=utf-8", pairs.map(([k, v]) => `${rfc3986(k)}=${rfc3986(v)}`).join("&"));
      }
    });
}

const S3_SUBRESOURCES = [
  "uploads",
  "uploadId",
  "partNumber",
  "tagging",
  "delete",
  "location",
  "acl",
  "versioning",
  "list-type",
  "prefix",
  "delimiter",
  "max-keys",
  "continuation-token",
  "start-after",
  "marker",
  "encoding-type",
  "fetch-owner",
  "max-parts",
  "part-number-marker",
  "response-content-type",
  "response-content-disposition",
  "response-expires",
  "x-id",
];
const S3_HEADERS = [
  "x-amz-copy-source",
  "range",
  "if-match",
  "if-none-match",
  "if-modified-since",
  "if-unmodified-since",
  "x-amz-meta-name",
  "x-amz-tagging",
  "content-md5",
  "x-amz-checksum-crc32",
  "x-amz-checksum-sha256",
  "x-amz-sdk-checksum-algorithm",
  "x-amz-metadata-directive",
  "x-amz-tagging-directive",
  "content-type",
  "content-encoding",
  "x-amz-checksum-mode",
  "x-amz-copy-source-if-match",
  "cache-control",
  "expires",
];

/** An aws-chunked body as the SDKs stream one (STREAMING-UNSIGNED-PAYLOAD-TRAILER), or a damaged one. */
const awsChunked = fc
  .tuple(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 3 }), fc.nat(), fc.integer({ min: 0, max: 4 }))
  .map(([chunks, at, damage]) => {
    const data = Buffer.concat(chunks.map((c) => Buffer.from(c)));
    const checksum = Buffer.alloc(4);
    checksum.writeUInt32BE(crc32(data));
    let framed = Buffer.concat([
      ...chunks.map((c) => Buffer.concat([Buffer.from(`${c.length.toString(16)}\r\n`), Buffer.from(c), Buffer.from("\r\n")])),
      Buffer.from(`0\r\nx-amz-checksum-crc32:${checksum.toString("base64")}\r\n\r\n`),
    ]);
    if (damage === 1 && framed.length > 0) framed[at % framed.length] = framed[at % framed.length]! ^ 0x55;
    if (damage === 2) framed = framed.subarray(0, at % (framed.length + 1));
    if (damage === 3) framed = Buffer.from(`fffffffffffffffff\r\n${framed.toString("latin1")}`, "latin1");
    const headers = {
      "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
      "content-encoding": "aws-chunked",
      "x-amz-trailer": "x-amz-checksum-crc32",
      "x-amz-decoded-content-length": String(damage === 4 ? data.length + 1 : data.length),
    };
    return { headers, body: framed };
  });

const xmlDocuments = (pools: Pools) =>
  fc
    .tuple(textArb(pools), textArb(pools))
    .chain(([a, b]) =>
      fc.constantFrom(
        `<Delete><Object><Key>${xmlEscape(a)}</Key></Object><Quiet>true</Quiet></Delete>`,
        `<Delete>${"<Object><Key>k</Key></Object>".repeat(1001)}</Delete>`,
        `<Tagging><TagSet><Tag><Key>${xmlEscape(a)}</Key><Value>${xmlEscape(b)}</Value></Tag></TagSet></Tagging>`,
        `<CompleteMultipartUpload><Part><PartNumber>${xmlEscape(a)}</PartNumber><ETag>${xmlEscape(b)}</ETag></Part></CompleteMultipartUpload>`,
        `<CreateBucketConfiguration><LocationConstraint>${xmlEscape(a)}</LocationConstraint></CreateBucketConfiguration>`,
        deep("<a>", "</a>", 5000),
        "<Delete><Object>",
      ),
    );

/** An S3 request: any method on the service, a bucket or an object, with subresources, headers and bodies S3 clients send, and some they do not. */
export function s3RequestArb(pools: Pools, accessKeyId: string): fc.Arbitrary<FuzzRequest> {
  const text = textArb(pools);
  const segment = fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...pools.buckets, ...pools.keys) },
    { weight: 2, arbitrary: fc.constantFrom("%ZZ", "%C3%28", "a%2Fb", "%F0%9F%98%80", "..", ".", "", "%00", "a".repeat(1100)) },
    { weight: 1, arbitrary: text.map(rfc3986) },
  );
  // Mostly a bucket of the pools and a key in it, as clients address objects.
  const objectPath = fc.tuple(fc.constantFrom(...pools.buckets), fc.oneof(fc.constantFrom(...pools.keys), segment)).map(([bucket, key]) => `/${bucket}/${key}`);
  const path = fc.oneof(
    { weight: 3, arbitrary: objectPath },
    { weight: 2, arbitrary: fc.array(segment, { minLength: 0, maxLength: 3 }).map((parts) => `/${parts.join("/")}`) },
  );
  const query = fc.oneof(
    { weight: 2, arbitrary: fc.constant([] as [string, string][]) },
    {
      weight: 3,
      arbitrary: fc.array(fc.tuple(fc.constantFrom(...S3_SUBRESOURCES), fc.oneof(fc.constantFrom("", "1", "2", "10000", "-1", "url"), text)), { maxLength: 3 }),
    },
  );
  const headerValue = fc.oneof(
    fc.constantFrom(
      ...pools.buckets.flatMap((b) => pools.keys.map((k) => `${b}/${k}`)),
      "bytes=0-0",
      "bytes=-5",
      "bytes=5-1",
      "bytes=0-99999999999",
      "*",
      "REPLACE",
      "COPY",
      "AAAAAA==",
    ),
    text,
  );
  const headers = fc.array(fc.tuple(fc.constantFrom(...S3_HEADERS), headerValue), { maxLength: 4 });
  const body = fc.oneof(
    { weight: 3, arbitrary: fc.constant({ headers: {}, body: Buffer.alloc(0) }) },
    { weight: 2, arbitrary: fc.uint8Array({ maxLength: 2048 }).map((b) => ({ headers: {}, body: Buffer.from(b) })) },
    { weight: 2, arbitrary: xmlDocuments(pools).map((xml) => ({ headers: {}, body: Buffer.from(xml) })) },
    { weight: 2, arbitrary: awsChunked },
  );
  const payloadClaim = fc.constantFrom(undefined, "UNSIGNED-PAYLOAD", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "0".repeat(64));
  return fc
    .tuple(
      fc.constantFrom("GET", "GET", "PUT", "PUT", "POST", "DELETE", "HEAD", "PATCH"),
      path,
      query,
      headers,
      body,
      payloadClaim,
      signingArb(accessKeyId, "s3"),
    )
    .map(([method, p, q, h, b, claim, signing]): FuzzRequest => {
      const all: Record<string, string> = {};
      for (const [name, value] of h) all[name] = value;
      Object.assign(all, b.headers);
      if (claim !== undefined && all["x-amz-content-sha256"] === undefined) all["x-amz-content-sha256"] = claim;
      return { protocol: "s3", method, path: p, query: q, headers: all, body: b.body, signing };
    });
}

/** An EBS direct APIs request: the six routes and their neighbours, JSON bodies, block bodies and their headers. */
export function ebsRequestArb(pools: Pools, accessKeyId: string): fc.Arbitrary<FuzzRequest> {
  const text = textArb(pools);
  const snapshot = fc.oneof(fc.constantFrom(...pools.snapshotIds), fc.constantFrom("snap-%ZZ", "snap-0", "%C3%28"), text.map(rfc3986));
  const index = fc.constantFrom("0", "1", "-1", "16383", "99999999999", "1.5", "x", "%ZZ");
  const route = fc.oneof(
    fc.constant(["POST", "/snapshots"] as const),
    snapshot.map((s) => ["POST", `/snapshots/completion/${s}`] as const),
    fc.tuple(snapshot, index).map(([s, i]) => ["PUT", `/snapshots/${s}/blocks/${i}`] as const),
    fc.tuple(snapshot, index).map(([s, i]) => ["GET", `/snapshots/${s}/blocks/${i}`] as const),
    snapshot.map((s) => ["GET", `/snapshots/${s}/blocks`] as const),
    snapshot.map((s) => ["GET", `/snapshots/${s}/changedblocks`] as const),
    fc.constantFrom(["DELETE", "/snapshots"] as const, ["GET", "/snapshots/"] as const, ["POST", "/snapshots/a/b/c/d"] as const),
  );
  const query = fc.array(
    fc.tuple(
      fc.constantFrom("maxResults", "pageToken", "startingBlockIndex", "firstSnapshotId", "secondSnapshotId", "blockToken"),
      fc.oneof(fc.constantFrom(...INTEGERS), snapshot, text),
    ),
    { maxLength: 3 },
  );
  const json = fc
    .record(
      {
        VolumeSize: fc.constantFrom(...INTEGERS.map(Number), 1, 8, 65536, "8"),
        ParentSnapshotId: snapshot,
        ClientToken: text,
        Description: text,
        Timeout: fc.integer(),
        Encrypted: fc.boolean(),
        Tags: fc.array(fc.record({ Key: text, Value: text }), { maxLength: 2 }),
      },
      { requiredKeys: [] },
    )
    .map((o) => Buffer.from(JSON.stringify(o)));
  const block = fc.oneof(
    fc.constant(Buffer.alloc(512 * 1024, 1)),
    fc.uint8Array({ maxLength: 1024 }).map((b) => Buffer.from(b)),
  );
  const body = fc.oneof(json, block, fc.constantFrom(Buffer.from("{"), Buffer.from(deep("[", "]", 50_000)), Buffer.alloc(0)));
  const headers = fc.record(
    {
      "x-amz-data-length": fc.constantFrom("524288", "0", "-1", "x", "1024"),
      "x-amz-checksum": fc.constantFrom("", "AAAA", "x"),
      "x-amz-checksum-algorithm": fc.constantFrom("SHA256", "MD5", ""),
      "x-amz-changedblockscount": fc.constantFrom(...INTEGERS),
      "x-amz-checksum-aggregation-method": fc.constantFrom("LINEAR", "x"),
      "content-type": fc.constantFrom("application/json", "application/octet-stream", "text/plain"),
    },
    { requiredKeys: [] },
  );
  return fc
    .tuple(route, query, body, headers, fc.boolean(), signingArb(accessKeyId, "ebs"))
    .map(([[method, path], q, b, h, checksummed, signing]): FuzzRequest => {
      const all: Record<string, string> = { ...h };
      if (checksummed)
        Object.assign(all, {
          "x-amz-checksum": createHash("sha256").update(b).digest("base64"),
          "x-amz-data-length": String(b.length),
          "x-amz-checksum-algorithm": "SHA256",
        });
      return { protocol: "ebs", method, path, query: q, headers: all, body: b, signing };
    });
}

/** An SSM request: Parameter Store actions and others, JSON bodies of the members they read (and of wrong types), broken JSON. */
export function ssmRequestArb(pools: Pools, accessKeyId: string): fc.Arbitrary<FuzzRequest> {
  const text = textArb(pools);
  const name = fc.oneof(
    fc.constantFrom(
      ...pools.parameterNames,
      "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64",
      "/aws/service/",
      "/",
      "//",
      "name:1",
      "name:label",
      "arn:aws:ssm:us-east-1:000000000000:parameter/fuzz/owner/plain",
    ),
    fc.constantFrom(...pools.parameterNames).map((n) => `${n}:1`),
    text,
  );
  const action = fc.constantFrom(
    "GetParameter",
    "GetParameters",
    "GetParametersByPath",
    "PutParameter",
    "DeleteParameter",
    "DeleteParameters",
    "DescribeParameters",
    "AddTagsToResource",
    "RemoveTagsFromResource",
    "ListTagsForResource",
    "ListCommands",
    "SendCommand",
    "",
    "getparameter",
  );
  const anything = fc.oneof(text, fc.integer(), fc.boolean(), fc.constant(null), fc.constant([]), fc.constant({}));
  const filter = fc.record(
    {
      Key: fc.oneof(fc.constantFrom("Name", "Type", "KeyId", "Path", "Tier", "DataType", "Label", "tag:Owner", "tag:"), text),
      Option: fc.oneof(fc.constantFrom("Equals", "BeginsWith", "Recursive", "OneLevel"), text),
      Values: fc.array(fc.oneof(name, text), { maxLength: 3 }),
    },
    { requiredKeys: [] },
  );
  const tags = fc.array(fc.record({ Key: fc.oneof(text, fc.constantFrom("Owner", "aws:x")), Value: text }, { requiredKeys: [] }), { maxLength: 3 });
  const members = fc
    .record(
      {
        Name: fc.oneof({ weight: 5, arbitrary: name }, anything),
        Names: fc.oneof(fc.array(name, { maxLength: 12 }), anything),
        Path: fc.oneof(name, fc.constantFrom("/aws/service/canonical", "/fuzz", "/fuzz/owner", "/aws"), anything),
        Value: fc.oneof(text, fc.constantFrom("ami-12345678", "a,b,c"), anything),
        Type: fc.oneof(fc.constantFrom("String", "StringList", "SecureString", "Binary"), anything),
        Overwrite: fc.oneof(fc.boolean(), anything),
        Recursive: fc.oneof(fc.boolean(), anything),
        WithDecryption: fc.oneof(fc.boolean(), anything),
        MaxResults: fc.oneof(fc.constantFrom(...INTEGERS.map(Number), 10, 50), anything),
        NextToken: fc.oneof(text, anything),
        ParameterFilters: fc.oneof(fc.array(filter, { maxLength: 3 }), anything),
        Filters: fc.oneof(fc.array(filter, { maxLength: 2 }), anything),
        Tags: fc.oneof(tags, anything),
        TagKeys: fc.oneof(fc.array(text, { maxLength: 3 }), anything),
        ResourceType: fc.oneof(fc.constantFrom("Parameter", "Document"), anything),
        ResourceId: fc.oneof(name, anything),
        AllowedPattern: fc.oneof(fc.constantFrom("^(a+)+$", "([", "^[0-9]+$", ".*"), text),
        DataType: fc.oneof(fc.constantFrom("text", "aws:ec2:image", "aws:ssm:integration"), text),
        Tier: fc.oneof(fc.constantFrom("Standard", "Advanced", "Intelligent-Tiering"), text),
        Description: text,
        KeyId: text,
      },
      { requiredKeys: [] },
    )
    .map((o) => Buffer.from(JSON.stringify(o)));
  const body = fc.oneof(
    { weight: 8, arbitrary: members },
    { weight: 1, arbitrary: fc.constantFrom(Buffer.from("{"), Buffer.from("[]"), Buffer.from("null"), Buffer.from(deep("[", "]", 50_000)), Buffer.alloc(0)) },
  );
  return fc
    .tuple(
      action,
      body,
      fc.constantFrom("POST", "POST", "POST", "POST", "POST", "POST", "POST", "GET"),
      fc.constantFrom("/", "/", "/", "/", "/", "/", "/", "/x"),
      signingArb(accessKeyId, "ssm", ["header"]),
    )
    .map(
      ([target, b, method, path, signing]): FuzzRequest => ({
        protocol: "ssm",
        method,
        path,
        query: [],
        headers: { "x-amz-target": `AmazonSSM.${target}`, "content-type": "application/x-amz-json-1.1" },
        body: b,
        signing,
      }),
    );
}

/**
 * A request to Kiln's own routes that must not change state: unsigned, from a web page, with a
 * form's content type or a wrong admin token, or signed by `stranger` for another's instance.
 */
export function adminRequestArb(pools: Pools, owner: string, stranger: string): fc.Arbitrary<FuzzRequest> {
  const path = fc.oneof(
    fc.constantFrom("/_kiln/reset", "/_kiln/collect", "/_kiln/health", "/_kiln/", "/_kiln/nope", "/_kiln/instances/i-0/shutdown"),
    fc.constantFrom(...pools.instanceIds).map((id) => `/_kiln/instances/${id}/shutdown`),
  );
  const pageHeaders = fc.oneof(
    fc.constant({ origin: "http://evil.example" }),
    fc.constant({ origin: "null" }),
    fc.constantFrom("cross-site", "same-site", "same-origin").map((site) => ({ "sec-fetch-site": site })),
  );
  const formType = fc.constantFrom("application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain", "TEXT/PLAIN; charset=utf-8");
  // Each way in that must be refused; an owner's signature only ever comes with a page's or a form's marks.
  const refusable = fc.oneof(
    fc.tuple(pageHeaders, signingArb(owner, "ec2", ["header", "none"])).map(([h, s]) => ({ headers: h as Record<string, string>, signing: s })),
    fc.tuple(formType, signingArb(owner, "ec2", ["header", "none"])).map(([type, s]) => ({ headers: { "content-type": type }, signing: s })),
    fc
      .constantFrom("", "guess", "a-long-operator-secreT")
      .map((token) => ({ headers: { "x-kiln-admin-token": token }, signing: { mode: "none", accessKeyId: "", service: "", region: "" } as Signing })),
    signingArb(owner, "ec2", ["none"]).map((s) => ({ headers: {}, signing: s })),
  );
  const strangerShutdown = fc
    .constantFrom(...pools.instanceIds)
    .chain((id) => signingArb(stranger, "ec2", ["header", "presign"]).map((s) => ({ path: `/_kiln/instances/${id}/shutdown`, headers: {}, signing: s })));
  return fc
    .oneof({ weight: 4, arbitrary: fc.tuple(path, refusable).map(([p, r]) => ({ path: p, ...r })) }, { weight: 1, arbitrary: strangerShutdown })
    .chain((r) =>
      fc.tuple(fc.constantFrom("POST", "POST", "POST", "GET", "PUT", "DELETE"), fc.uint8Array({ maxLength: 64 })).map(
        ([method, body]): FuzzRequest => ({
          protocol: "admin",
          method,
          path: r.path,
          query: [],
          headers: r.headers,
          body: Buffer.from(body),
          signing: r.signing,
        }),
      ),
    );
}

/** The protocol Kiln routes a request to: its own routes by path, S3 by the signature's service, SSM by its target, EBS by path, else EC2. */
export function routedProtocol(request: FuzzRequest): Protocol {
  if (request.path.startsWith("/_kiln/")) return "admin";
  if (request.signing.mode !== "none" && request.signing.service === "s3" && request.signing.region !== "") return "s3";
  if (request.headers["x-amz-target"]?.startsWith("AmazonSSM.")) return "ssm";
  return request.path === "/snapshots" || request.path.startsWith("/snapshots/") ? "ebs" : request.path === "/" ? "ec2" : "s3";
}

/**
 * True when a refusal carries the protocol's own error (a code a client can read), not a bare
 * status. A request too large or too broken for node:http to parse is answered before its
 * signature can be read, so in the form its path suggests.
 */
export function hasProtocolError(request: FuzzRequest, answer: Answer): boolean {
  if (answer.status < 400 || request.method === "HEAD") return true;
  if (/larger than the \d+ bytes Kiln reads|not well-formed HTTP/.test(answer.body)) {
    return (["ec2", "s3", "ebs", "ssm"] as const).some((protocol) => errorFormOf(protocol, answer));
  }
  return errorFormOf(routedProtocol(request), answer);
}

function errorFormOf(protocol: Protocol, answer: Answer): boolean {
  switch (protocol) {
    case "ec2":
      return /<Code>[^<]+<\/Code>/.test(answer.body) || /"Code"\s*:/.test(answer.body);
    case "s3":
      return /<Error><Code>[^<]+<\/Code>/.test(answer.body);
    case "ebs":
      return answer.headers["x-amzn-errortype"] !== undefined;
    case "ssm":
      return /"__type"\s*:/.test(answer.body) && answer.headers["x-amzn-errortype"] !== undefined;
    case "admin":
      return /"error"\s*:/.test(answer.body);
  }
}
