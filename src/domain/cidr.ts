// IPv4 CIDR blocks as VPCs and subnets use them: parsing, containment, overlap, and the
// addresses a subnet hands out (AWS reserves the first four and the last of every subnet).
export interface Cidr {
  /** The network address as an unsigned 32-bit number. */
  base: number;
  prefix: number;
  /** Addresses in the block. */
  size: number;
}

export function ipToNumber(ip: string): number | undefined {
  const parts = ip.split(".");
  if (parts.length !== 4 || !parts.every((p) => /^(0|[1-9]\d{0,2})$/.test(p) && Number(p) <= 255)) return undefined;
  return parts.reduce((n, p) => n * 256 + Number(p), 0);
}

export const numberToIp = (n: number) => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");

/** A CIDR block, or undefined when `text` is not one (host bits must be zero). */
export function parseCidr(text: string): Cidr | undefined {
  const match = /^([\d.]+)\/(\d{1,2})$/.exec(text);
  if (!match) return undefined;
  const base = ipToNumber(match[1]!);
  const prefix = Number(match[2]);
  if (base === undefined || prefix > 32) return undefined;
  const size = 2 ** (32 - prefix);
  if (base % size !== 0) return undefined;
  return { base, prefix, size };
}

export const formatCidr = (cidr: Cidr) => `${numberToIp(cidr.base)}/${cidr.prefix}`;
export const cidrContains = (outer: Cidr, inner: Cidr) => inner.base >= outer.base && inner.base + inner.size <= outer.base + outer.size;
export const cidrsOverlap = (a: Cidr, b: Cidr) => a.base < b.base + b.size && b.base < a.base + a.size;
export const ipInCidr = (ip: number, cidr: Cidr) => ip >= cidr.base && ip < cidr.base + cidr.size;

/** The addresses of a subnet instances may use: all but the first four and the last. */
export const usableRange = (cidr: Cidr) => ({ first: cidr.base + 4, last: cidr.base + cidr.size - 2 });
