// DescribeAccountAttributes: the account-level facts launch tools read.
import type { AccountAttribute, DescribeAccountAttributesRequest, DescribeAccountAttributesResult } from "@aws-sdk/client-ec2";
import { uniqueIds } from "../../domain/ids.js";
import { defaultVpc } from "../../store/meta/network.js";
import type { ActionTable } from "./action.js";
import { network } from "./lookups.js";

/** The values a new AWS account reports; `default-vpc` is read from the account's network. */
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
    async run(ctx, input: DescribeAccountAttributesRequest): Promise<DescribeAccountAttributesResult> {
      await network(ctx);
      const values: Record<string, string[]> = { ...ATTRIBUTES, "default-vpc": [(await defaultVpc(ctx.meta.db, ctx))?.vpc_id ?? "none"] };
      const wanted = input.AttributeNames?.length ? uniqueIds(input.AttributeNames) : Object.keys(values);
      const attributes: AccountAttribute[] = wanted.map((name) => ({
        AttributeName: name,
        AttributeValues: (values[name] ?? []).map((value) => ({ AttributeValue: value })),
      }));
      return { AccountAttributes: attributes };
    },
  },
};
