// Who sent a request: its verified signature, or (only when the operator allows unsigned
// requests) the default account in the default region.
import type { IncomingMessage } from "node:http";
import { SignatureVerifier, type Caller, type SignedRequest } from "../auth/sigv4.js";
import type { KilnConfig } from "../config.js";
import { isKilnRegion } from "../domain/regions.js";
import { ApiError } from "../protocol/errors.js";
import type { ParsedUrl } from "./url.js";

/** Query pairs as the verifier reads them: decoded, repeated names as arrays. */
export function signedQuery(pairs: readonly [string, string][]): SignedRequest["query"] {
  const query: SignedRequest["query"] = {};
  for (const [name, value] of pairs) {
    const previous = query[name];
    query[name] = previous === undefined ? value : Array.isArray(previous) ? [...previous, value] : [previous, value];
  }
  return query;
}

export function requestToVerify(req: IncomingMessage, url: ParsedUrl, body: Buffer): SignedRequest {
  return { method: req.method ?? "GET", path: url.path, query: signedQuery(url.pairs), headers: req.headers, body };
}

export async function callerOf(deps: { config: KilnConfig; verifier: SignatureVerifier }, request: SignedRequest, service: string): Promise<Caller> {
  const { config, verifier } = deps;
  if (config.allowUnsigned && !SignatureVerifier.isSigned(request)) {
    return { accessKeyId: "", accountId: config.accounts.defaultAccountId, region: config.defaultRegion, service };
  }
  return checkScope(await verifier.verify(request), service);
}

/**
 * A signature is good only for the service it reaches and a region Kiln serves, as AWS scopes
 * its endpoints: a request signed for `iam` is not an EC2 request, and a region no one has is
 * not one to make state in.
 */
function checkScope(caller: Caller, service: string): Caller {
  if (caller.service !== service) {
    if (service === "s3")
      throw new ApiError(
        "AuthorizationHeaderMalformed",
        `The authorization header is malformed; incorrect service '${caller.service}'. This endpoint belongs to 's3'.`,
      );
    throw new ApiError("SignatureDoesNotMatch", `Credential should be scoped to correct service: '${service}'.`);
  }
  if (!isKilnRegion(caller.region)) {
    if (service === "s3")
      throw new ApiError("AuthorizationHeaderMalformed", `The authorization header is malformed; the region '${caller.region}' is not one Kiln serves.`);
    throw new ApiError("SignatureDoesNotMatch", `Credential should be scoped to a valid region, not '${caller.region}'.`);
  }
  return caller;
}
