// An instance's metadata options: whether its instance metadata service answers, whether it
// requires IMDSv2 tokens, how far a token's response may travel and whether the instance's tags
// are in its metadata. Set at RunInstances (MetadataOptions), changed by
// ModifyInstanceMetadataOptions (instance-info.ts), shown by DescribeInstances, and obeyed by the
// metadata service of a guest that runs (vm/metadata-service.ts).
import type { InstanceMetadataOptionsRequest, InstanceMetadataOptionsResponse, ModifyInstanceMetadataOptionsRequest } from "@aws-sdk/client-ec2";
import { ApiError } from "../../protocol/errors.js";
import type { ImageRow } from "../../store/meta/images.js";
import type { InstanceRow } from "../../store/meta/instances.js";

export type MetadataColumns = Pick<
  InstanceRow,
  "http_tokens" | "http_endpoint" | "http_put_response_hop_limit" | "http_protocol_ipv6" | "instance_metadata_tags"
>;

const CHOICES = {
  HttpTokens: ["optional", "required"],
  HttpEndpoint: ["enabled", "disabled"],
  HttpProtocolIpv6: ["enabled", "disabled"],
  InstanceMetadataTags: ["enabled", "disabled"],
} as const;

/** The request's options, checked as EC2 checks them; what it leaves out stays undefined. */
export function checkedOptions(options: InstanceMetadataOptionsRequest | ModifyInstanceMetadataOptionsRequest): Partial<MetadataColumns> {
  for (const [name, allowed] of Object.entries(CHOICES)) {
    const value = options[name as keyof typeof CHOICES];
    if (value !== undefined && !(allowed as readonly string[]).includes(value)) {
      throw new ApiError("InvalidParameterValue", `Value (${value}) for parameter ${name} is invalid. Valid values are: ${allowed.join(", ")}.`);
    }
  }
  const hops = options.HttpPutResponseHopLimit;
  if (hops !== undefined && (!Number.isInteger(hops) || hops < 1 || hops > 64)) {
    throw new ApiError("InvalidParameterValue", `Value (${hops}) for parameter HttpPutResponseHopLimit is invalid. The value must be between 1 and 64.`);
  }
  return {
    http_tokens: options.HttpTokens,
    http_endpoint: options.HttpEndpoint,
    http_put_response_hop_limit: hops,
    http_protocol_ipv6: options.HttpProtocolIpv6,
    instance_metadata_tags: options.InstanceMetadataTags,
  };
}

export const defined = <T extends object>(values: T): Partial<T> => Object.fromEntries(Object.entries(values).filter(([, v]) => v !== undefined)) as Partial<T>;

/**
 * A launch's options: what it asks for, over EC2's defaults for its image. An image that says
 * it supports IMDSv2 only (ImdsSupport v2.0) launches with tokens required and a hop limit of 2
 * (for containers on the instance); any other with IMDSv1 allowed and a hop limit of 1.
 */
export function launchMetadataOptions(requested: InstanceMetadataOptionsRequest | undefined, image: Pick<ImageRow, "imds_support">): MetadataColumns {
  const v2Only = image.imds_support === "v2.0";
  return {
    http_tokens: v2Only ? "required" : "optional",
    http_endpoint: "enabled",
    http_put_response_hop_limit: v2Only ? 2 : 1,
    http_protocol_ipv6: "disabled",
    instance_metadata_tags: "disabled",
    ...defined(checkedOptions(requested ?? {})),
  };
}

export function toMetadataOptions(row: MetadataColumns, state: "pending" | "applied"): InstanceMetadataOptionsResponse {
  return {
    State: state,
    HttpTokens: row.http_tokens as InstanceMetadataOptionsResponse["HttpTokens"],
    HttpPutResponseHopLimit: row.http_put_response_hop_limit,
    HttpEndpoint: row.http_endpoint as InstanceMetadataOptionsResponse["HttpEndpoint"],
    HttpProtocolIpv6: row.http_protocol_ipv6 as InstanceMetadataOptionsResponse["HttpProtocolIpv6"],
    InstanceMetadataTags: row.instance_metadata_tags as InstanceMetadataOptionsResponse["InstanceMetadataTags"],
  };
}
