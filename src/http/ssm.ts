// SSM on the same port: the JSON 1.1 protocol (POST /, the action in X-Amz-Target as
// AmazonSSM.<Action>, a JSON body of member names), signed for `ssm`. Answers are JSON with
// timestamps in epoch seconds; errors carry their type in `__type`.
import type { IncomingMessage, ServerResponse } from "node:http";
import { SSM_ACTIONS } from "../api/ssm/parameters.js";
import type { SignatureVerifier } from "../auth/sigv4.js";
import type { KilnConfig } from "../config.js";
import { ApiError } from "../protocol/errors.js";
import { toAwsJson } from "../protocol/json.js";
import type { MetaStore } from "../store/meta/database.js";
import { readBody } from "./body.js";
import { callerOf, requestToVerify } from "./caller.js";
import type { ParsedUrl } from "./url.js";

export interface SsmAnswer {
  status: number;
  action?: string;
  accountId?: string;
  region?: string;
  errorCode?: string;
}

const TARGET_PREFIX = "AmazonSSM.";
export const SSM_CONTENT_TYPE = "application/x-amz-json-1.1";

export function isSsmRequest(req: IncomingMessage): boolean {
  const target = req.headers["x-amz-target"];
  return typeof target === "string" && target.startsWith(TARGET_PREFIX);
}

/** An SSM error body, as the SDKs read it. */
export const ssmErrorBody = (code: string, message: string) => JSON.stringify({ __type: code, message });

export function ssmEndpoint(deps: { config: KilnConfig; verifier: SignatureVerifier; meta: MetaStore }) {
  const { config, meta } = deps;
  const supported = Object.keys(SSM_ACTIONS).join(", ");

  return async (req: IncomingMessage, res: ServerResponse, url: ParsedUrl, requestId: string): Promise<SsmAnswer> => {
    const answer: SsmAnswer = { status: 200 };
    const send = (status: number, body: string, headers: Record<string, string> = {}) => {
      answer.status = status;
      res.writeHead(status, { "content-type": SSM_CONTENT_TYPE, "content-length": Buffer.byteLength(body), "x-amzn-requestid": requestId, ...headers });
      res.end(body);
    };
    try {
      const action = String(req.headers["x-amz-target"]).slice(TARGET_PREFIX.length);
      answer.action = action;
      if (req.method !== "POST" || url.path !== "/")
        throw new ApiError("ValidationException", `SSM actions are sent as POST /, not ${req.method} ${url.path}.`);
      const body = await readBody(req, config.limits.maxBodyBytes);
      const caller = await callerOf(deps, requestToVerify(req, url, body), "ssm");
      answer.accountId = caller.accountId;
      answer.region = caller.region;
      const run = SSM_ACTIONS[action];
      if (!run)
        throw new ApiError("UnsupportedOperationException", `Kiln's SSM endpoint does not do ${action}. It answers the Parameter Store actions ${supported}.`);
      let input: unknown;
      try {
        input = JSON.parse(body.toString("utf8") || "{}");
      } catch {
        throw new ApiError("SerializationException", "The request body is not valid JSON.");
      }
      if (typeof input !== "object" || input === null || Array.isArray(input))
        throw new ApiError("SerializationException", "The request body must be a JSON object.");
      const output = await run({ accountId: caller.accountId, region: caller.region, meta, catalogue: config.catalogue }, input as Record<string, unknown>);
      send(200, toAwsJson(output));
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      answer.errorCode = error.code;
      send(error.status, ssmErrorBody(error.code, error.message), { "x-amzn-ErrorType": error.code, ...(error.status === 413 ? { connection: "close" } : {}) });
    }
    return answer;
  };
}
