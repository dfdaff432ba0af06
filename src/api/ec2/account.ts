// DescribeAccountAttributes: the account-level facts launch tools read.
import type { AccountAttribute, DescribeAccountAttributesRequest, DescribeAccountAttributesResult } from "@aws-sdk/client-ec2";
import type { ActionTable } from "./action.js";

/** The values a new AWS account reports. Kiln has no default VPC yet, so it reports none. */
const ATTRIBUTES: Record<string, string[]> = {
  "supported-platforms": ["VPC"],
  "vpc-max-security-groups-per-interface": ["5"],
  "max-elastic-ips": ["5"],
  "max-instances": ["20"],
  "vpc-max-elastic-ips": ["5"],
  "default-vpc": ["none"],
};

export const accountActions: ActionTable = {
  DescribeAccountAttributes: {
    run(_ctx, input: DescribeAccountAttributesRequest): DescribeAccountAttributesResult {
      const wanted = input.AttributeNames?.length ? input.AttributeNames : Object.keys(ATTRIBUTES);
      const attributes: AccountAttribute[] = wanted.map((name) => ({
        AttributeName: name,
        AttributeValues: (ATTRIBUTES[name] ?? []).map((value) => ({ AttributeValue: value })),
      }));
      return { AccountAttributes: attributes };
    },
  },
};
