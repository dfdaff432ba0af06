// The instance metadata service as a guest reaches it at 169.254.169.254: EC2's paths and
// listings (domain/instance-metadata.ts), IMDSv2's session tokens, and the instance's metadata
// options (api/ec2/metadata-options.ts) obeyed on every request.
//
// A token is PUT /latest/api/token with X-aws-ec2-metadata-token-ttl-seconds (1–21600); it is
// sent back as X-aws-ec2-metadata-token, and one expired, forged or another instance's gets 401.
// Tokens are an HMAC of the instance and their expiry under a key of this process: they are
// checked without a store, and a restarted Kiln's guests ask for new ones (as every SDK does
// on a 401). Without a token a request is IMDSv1, refused (401) when tokens are required.
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { lookUp, listing, METADATA_VERSIONS, metadataTree, type InstanceFacts } from "../domain/instance-metadata.js";

export interface MetadataOptions {
  httpTokens: "optional" | "required";
  httpEndpoint: "enabled" | "disabled";
  /** The IPv6 endpoint (fd00:ec2::254) answers only while enabled. */
  httpProtocolIpv6: "enabled" | "disabled";
}

export interface MetadataRequest {
  method: string;
  /** The path, without a query. */
  path: string;
  /** Header names in lower case. */
  headers: Readonly<Record<string, string | string[] | undefined>>;
  /** Asked at the IPv6 endpoint. */
  ipv6?: boolean;
}

export interface MetadataAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export interface InstanceMetadata {
  facts: InstanceFacts;
  options: MetadataOptions;
}

const TOKEN_HEADER = "x-aws-ec2-metadata-token";
const TTL_HEADER = "x-aws-ec2-metadata-token-ttl-seconds";
const MAX_TTL_SECONDS = 21600;

/** EC2's error pages: an XHTML document naming the status. */
function errorPage(status: number, reason: string): MetadataAnswer {
  const title = `${status} - ${reason}`;
  const body =
    '<?xml version="1.0" encoding="iso-8859-1"?>\n' +
    '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN"\n' +
    '\t"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">\n' +
    '<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">\n' +
    ` <head>\n  <title>${title}</title>\n </head>\n <body>\n  <h1>${title}</h1>\n </body>\n</html>\n`;
  return { status, headers: { "content-type": "text/html" }, body };
}

const text = (body: string, headers: Record<string, string> = {}): MetadataAnswer => ({
  status: 200,
  headers: { "content-type": "text/plain", ...headers },
  body,
});
const header = (request: MetadataRequest, name: string) => {
  const value = request.headers[name];
  return Array.isArray(value) ? value[0] : value;
};

export class MetadataService {
  private readonly key = randomBytes(32);

  constructor(private readonly now: () => number = Date.now) {}

  /** Answers one request of `instanceId`'s guest; `load` reads what the service says of it. */
  async answer(instanceId: string, request: MetadataRequest, load: () => Promise<InstanceMetadata | undefined>): Promise<MetadataAnswer> {
    const metadata = await load();
    if (!metadata) return errorPage(404, "Not Found");
    if (metadata.options.httpEndpoint === "disabled") return errorPage(403, "Forbidden");
    if (request.ipv6 && metadata.options.httpProtocolIpv6 !== "enabled") return errorPage(403, "Forbidden");

    const path = request.path.replace(/\/{2,}/g, "/");
    if (path === "/latest/api/token") return this.token(instanceId, request);

    const token = header(request, TOKEN_HEADER);
    let ttlLeft: number | undefined;
    if (token !== undefined) {
      ttlLeft = this.secondsLeft(instanceId, token);
      if (ttlLeft === undefined) return errorPage(401, "Unauthorized");
    } else if (metadata.options.httpTokens === "required") {
      return errorPage(401, "Unauthorized");
    }
    if (request.method !== "GET" && request.method !== "HEAD") return errorPage(405, "Method Not Allowed");
    const answered = this.read(path, metadata.facts);
    if (ttlLeft !== undefined && answered.status === 200) answered.headers[TTL_HEADER] = String(ttlLeft);
    return answered;
  }

  private read(path: string, facts: InstanceFacts): MetadataAnswer {
    const [version, ...rest] = path.split("/").filter(Boolean);
    if (version === undefined) return text(METADATA_VERSIONS.join("\n"));
    if (!METADATA_VERSIONS.includes(version)) return errorPage(404, "Not Found");
    const node = lookUp(metadataTree(facts), rest.join("/"));
    if (node === undefined) return errorPage(404, "Not Found");
    return text(typeof node === "string" ? node : listing(node));
  }

  private token(instanceId: string, request: MetadataRequest): MetadataAnswer {
    if (request.method !== "PUT") return errorPage(405, "Method Not Allowed");
    // A token asked for through a proxy (one that adds X-Forwarded-For) is refused, as on EC2.
    if (header(request, "x-forwarded-for") !== undefined) return errorPage(403, "Forbidden");
    const ttlText = header(request, TTL_HEADER);
    const ttl = ttlText !== undefined && /^\d+$/.test(ttlText) ? Number(ttlText) : Number.NaN;
    if (!(ttl >= 1 && ttl <= MAX_TTL_SECONDS)) return errorPage(400, "Bad Request");
    const expires = Math.floor(this.now() / 1000) + ttl;
    const token = `${expires}.${this.mac(instanceId, expires)}`;
    return text(Buffer.from(token).toString("base64url"), { [TTL_HEADER]: String(ttl) });
  }

  /** Seconds a token of this instance has left, or undefined for one expired or not ours. */
  private secondsLeft(instanceId: string, token: string): number | undefined {
    const bytes = Buffer.from(token, "base64url");
    // Only the one spelling a token was given in (base64url ignores some trailing bits).
    if (bytes.toString("base64url") !== token) return undefined;
    const decoded = bytes.toString("latin1");
    const match = /^(\d{1,12})\.([A-Za-z0-9_-]{43})$/.exec(decoded);
    if (!match) return undefined;
    const expires = Number(match[1]);
    const expected = Buffer.from(this.mac(instanceId, expires));
    const given = Buffer.from(match[2]!);
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) return undefined;
    const left = expires - Math.floor(this.now() / 1000);
    return left > 0 ? left : undefined;
  }

  private mac(instanceId: string, expires: number): string {
    return createHmac("sha256", this.key).update(`${instanceId}\n${expires}`).digest("base64url");
  }
}
