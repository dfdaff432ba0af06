// The EC2 Query endpoint: body → parameters → signature → action → typed input → handler →
// XML (or JSON) answer. Every failure becomes EC2's error envelope with its registered status.
import type { IncomingMessage } from "node:http";
import type { Action, ActionContext } from "../api/ec2/action.js";
import type { SignatureVerifier } from "../auth/sigv4.js";
import type { KilnConfig } from "../config.js";
import { yieldToLoop } from "../event-loop.js";
import { ApiError, dryRunSucceeded, InvalidParameter } from "../protocol/errors.js";
import { decodeStructure } from "../protocol/ec2-query/decode.js";
import { encodeJsonError, encodeJsonResponse, encodeXmlError, encodeXmlResponse } from "../protocol/ec2-query/encode.js";
import { emptyParams, treeFromForm, treeFromJson, treeFromPairs, treeFromXml, type ParamObject } from "../protocol/ec2-query/params.js";
import type { ServiceModel, StructureShape } from "../protocol/model.js";
import type { Catalogue } from "../store/meta/catalogue.js";
import type { BlobStore } from "../store/objects/blobs.js";
import type { TaskRunner } from "../tasks/runner.js";
import type { InstanceBackend } from "../vm/backend.js";
import { isUniqueViolation, type MetaStore } from "../store/meta/database.js";
import { readBody } from "./body.js";
import { callerOf, requestToVerify } from "./caller.js";
import type { ParsedUrl } from "./url.js";

export interface Ec2Endpoint {
  handle(req: IncomingMessage, url: ParsedUrl, requestId: string): Promise<Ec2Answer>;
}

export interface Ec2Answer {
  status: number;
  contentType: string;
  /** The answer's text, or its bytes in pieces (a large answer is made so). */
  body: string | readonly Buffer[];
  /** For the request log. */
  action?: string;
  accountId?: string;
  region?: string;
  errorCode?: string;
}

const SIGNATURE_PARAMS = /^X-Amz-/;
const XML_TYPE = "text/xml;charset=UTF-8";
const JSON_TYPE = "application/json";

export function ec2Endpoint(deps: {
  config: KilnConfig;
  model: ServiceModel;
  actions: ReadonlyMap<string, Action>;
  verifier: SignatureVerifier;
  meta: MetaStore;
  catalogue: Catalogue;
  blobs: BlobStore;
  tasks: TaskRunner;
  machines: InstanceBackend;
}): Ec2Endpoint {
  const { config, model, actions, meta, catalogue, blobs, tasks, machines } = deps;
  const limits = config.limits;

  /** Parameters from the query string and, for POST, the body, in whichever encoding it came. */
  async function parameters(req: IncomingMessage, url: ParsedUrl, body: Buffer): Promise<{ params: ParamObject; xmlRoot?: string }> {
    const queryPairs = url.pairs.filter(([name]) => !SIGNATURE_PARAMS.test(name));
    if (req.method !== "POST" || body.length === 0) return { params: treeFromPairs(queryPairs, limits) };
    const type = (req.headers["content-type"] ?? "application/x-www-form-urlencoded").split(";")[0]!.trim().toLowerCase();
    if (type === "application/x-www-form-urlencoded") return { params: await treeFromForm(queryPairs, body.toString("utf8"), limits) };
    let params: ParamObject;
    let xmlRoot: string | undefined;
    if (type === "text/xml" || type === "application/xml") {
      ({ root: xmlRoot, params } = await treeFromXml(body.toString("utf8"), limits));
    } else if (type === "application/json" || type.endsWith("+json")) {
      params = treeFromJson(body.toString("utf8"), limits);
    } else {
      throw new ApiError("InvalidRequest", `Unsupported Content-Type '${type}': send form-encoded, XML or JSON parameters.`);
    }
    for (const [name, value] of queryPairs) {
      if (params[name] !== undefined)
        throw new ApiError("InvalidParameterCombination", `The parameter ${name} is given in both the query string and the body.`);
      params[name] = value;
    }
    return { params, xmlRoot };
  }

  function actionName(params: ParamObject, xmlRoot: string | undefined): string {
    const action = params.Action ?? xmlRoot?.replace(/Request$/, "");
    if (action === undefined || action === "") throw new ApiError("MissingAction", "The request must contain the parameter Action.");
    if (typeof action !== "string") throw new ApiError("InvalidAction", "The parameter Action must be a string.");
    return action;
  }

  return {
    async handle(req, url, requestId) {
      const json = (req.headers.accept ?? "").includes("application/json");
      const log: Partial<Ec2Answer> = {};
      try {
        const body = await readBody(req, limits.maxBodyBytes);
        const caller = await callerOf(deps, requestToVerify(req, url, body), "ec2");
        log.accountId = caller.accountId;
        log.region = caller.region;
        const { params, xmlRoot } = await parameters(req, url, body);
        const name = actionName(params, xmlRoot);
        log.action = name;
        const version = params.Version;
        if (version !== undefined && version !== model.apiVersion) {
          throw new ApiError("NoSuchVersion", `The requested version (${String(version)}) of service AmazonEC2 does not exist.`);
        }
        const operation = model.operations.get(name);
        if (!operation) throw new ApiError("InvalidAction", `The action ${name} is not valid for this web service.`);
        const action = actions.get(name);
        if (!action) throw new ApiError("UnsupportedOperation", `The action ${name} is not yet supported by Kiln.`);
        const args = emptyParams();
        for (const key of Object.keys(params)) if (key !== "Action" && key !== "Version") args[key] = params[key]!;
        let input: ReturnType<typeof decodeStructure>;
        try {
          input = decodeStructure(args, operation.input ?? EMPTY_INPUT);
        } catch (error) {
          // An action's own error for the parameter (or for any item of a list parameter).
          const replacement =
            error instanceof InvalidParameter
              ? (action.parameterErrors?.[error.parameter] ?? action.parameterErrors?.[error.parameter.split(".")[0]!])
              : undefined;
          throw replacement ? replacement(error as InvalidParameter) : error;
        }
        // Decoding thousands of parameters takes milliseconds: the event loop may want a turn.
        await yieldToLoop();
        await catalogue.ensure(caller.region);
        const ctx: ActionContext = { requestId, accountId: caller.accountId, region: caller.region, meta, config, blobs, tasks, machines };
        const attempt = async () => {
          const checked = await action.check?.(ctx, input);
          if (input.DryRun === true) throw dryRunSucceeded();
          return (await action.run(ctx, input, checked)) ?? undefined;
        };
        let output: Awaited<ReturnType<typeof attempt>>;
        try {
          output = await attempt();
        } catch (error) {
          // Two requests (on one node or two) raced to make the same thing, and the database let
          // one win. Asked again, the action sees the winner's row: it answers as a retry with
          // the same ClientToken does, or with the error for a name already taken.
          if (!isUniqueViolation(error)) throw error;
          output = await attempt();
        }
        return {
          ...log,
          status: 200,
          contentType: json ? JSON_TYPE : XML_TYPE,
          body: json
            ? await encodeJsonResponse(operation.output, output, requestId)
            : await encodeXmlResponse(model, name, operation.output, output, requestId),
        };
      } catch (error) {
        const apiError = error instanceof ApiError ? error : undefined;
        if (!apiError) throw error;
        return { ...log, status: apiError.status, errorCode: apiError.code, ...ec2ErrorBody(apiError.code, apiError.message, requestId, json) };
      }
    },
  };
}

const EMPTY_INPUT: StructureShape = { type: "structure", name: "Empty", members: [], required: new Set(), byInputName: new Map() };

export function ec2ErrorBody(code: string, message: string, requestId: string, json: boolean): { contentType: string; body: string } {
  return json
    ? { contentType: JSON_TYPE, body: encodeJsonError(code, message, requestId) }
    : { contentType: XML_TYPE, body: encodeXmlError(code, message, requestId) };
}
