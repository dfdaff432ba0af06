// What a security group's rules let in: EC2's rule of any match (rules only allow; with no rule
// that matches, nothing gets in).
import { ipToNumber } from "./cidr.js";

export interface IngressRule {
  is_egress: number;
  ip_protocol: string;
  from_port: number | null;
  to_port: number | null;
  cidr_ipv4: string | null;
}

/** True when one of `rules` lets a TCP connection from `sourceIp` (IPv4) reach `port`. */
export function ingressAllows(rules: readonly IngressRule[], sourceIp: string, port: number): boolean {
  const source = ipToNumber(sourceIp);
  if (source === undefined) return false;
  return rules.some((rule) => {
    if (rule.is_egress || !rule.cidr_ipv4) return false;
    const anyProtocol = rule.ip_protocol === "-1";
    if (!anyProtocol && rule.ip_protocol !== "tcp" && rule.ip_protocol !== "6") return false;
    if (!anyProtocol && rule.from_port !== null && rule.to_port !== null && (port < rule.from_port || port > rule.to_port)) return false;
    const [base, bits] = rule.cidr_ipv4.split("/");
    const network = ipToNumber(base!);
    const prefix = Number(bits ?? 32);
    if (network === undefined || !(prefix >= 0 && prefix <= 32)) return false;
    const size = 2 ** (32 - prefix);
    return Math.floor(source / size) === Math.floor(network / size);
  });
}
