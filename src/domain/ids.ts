// Resource identifiers: `<prefix>-` and 17 lowercase hex digits (8 for older resources), and the
// tag resource type each prefix names.
import { randomFillSync } from "node:crypto";
import { ApiError } from "../protocol/errors.js";

const RESOURCE_TYPES: Record<string, string> = {
  ami: "image",
  i: "instance",
  vol: "volume",
  snap: "snapshot",
  sg: "security-group",
  sgr: "security-group-rule",
  vpc: "vpc",
  subnet: "subnet",
  igw: "internet-gateway",
  rtb: "route-table",
  eni: "network-interface",
  key: "key-pair",
  acl: "network-acl",
  dopt: "dhcp-options",
  eipalloc: "elastic-ip",
  nat: "natgateway",
  lt: "launch-template",
  "import-ami": "import-image-task",
  "import-snap": "import-snapshot-task",
  "export-ami": "export-image-task",
  fpga: "fpga-image",
  pl: "prefix-list",
  r: "reservation",
};

const ID = /^([a-z]+(?:-[a-z]+)?)-([0-9a-f]{8}|[0-9a-f]{17})$/;

/**
 * Random bytes as hex, drawn from a pool refilled a few KiB at a time: each call into OpenSSL costs
 * microseconds, and a launch of a thousand instances makes thousands of ids. Ids are no secrets.
 */
const pool = Buffer.alloc(4096);
let drawn = pool.length;

export function randomHex(bytes: number): string {
  if (drawn + bytes > pool.length) {
    randomFillSync(pool);
    drawn = 0;
  }
  drawn += bytes;
  return pool.toString("hex", drawn - bytes, drawn);
}

export function newId(prefix: string): string {
  return `${prefix}-${randomHex(9).slice(0, 17)}`;
}

/** The resource type an id names, or InvalidID when it names none Kiln knows. */
export function resourceTypeOf(id: string): string {
  const match = ID.exec(id);
  const type = match && RESOURCE_TYPES[match[1]!];
  if (!type) throw new ApiError("InvalidID", `The ID '${id}' is not valid`);
  return type;
}

/**
 * A request's ids (or names) each once, in the order first given. EC2 takes a repeated id as the
 * id named once: a resource is answered, acted on, reported and named in an error once.
 */
export function uniqueIds<Id extends string>(ids: readonly Id[]): Id[] {
  return [...new Set(ids)];
}

/** An optional id list of a request, each id once; undefined when it names none (which means all). */
export function requestedIds<Id extends string>(ids: readonly Id[] | undefined): Id[] | undefined {
  return ids?.length ? uniqueIds(ids) : undefined;
}
