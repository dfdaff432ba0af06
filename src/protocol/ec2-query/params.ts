// Request parameters from any of the four ways a caller may send them (GET query string, form
// POST, XML body, JSON body) become one tree that decode.ts walks by the model.
import { yieldToLoop } from "../../event-loop.js";
import { ApiError } from "../errors.js";
import { parseXml } from "../xml.js";

export type ParamNode = string | number | boolean | null | ParamNode[] | ParamObject;
export interface ParamObject {
  [key: string]: ParamNode;
}

export interface ParamLimits {
  /** Most leaf parameters a request may carry. */
  maxParameters: number;
  /** Deepest nesting a request may carry. */
  maxDepth: number;
}

const tooMany = (limits: ParamLimits) => new ApiError("InvalidRequest", `The request has more than ${limits.maxParameters} parameters.`);
const tooDeep = (limits: ParamLimits) => new ApiError("InvalidRequest", `The request nests parameters deeper than ${limits.maxDepth} levels.`);

/** Objects without a prototype, so names like `__proto__` are plain keys. */
export const emptyParams = (): ParamObject => Object.create(null) as ParamObject;

/**
 * `Filter.1.Value.1=x` → `{Filter: {1: {Value: {1: "x"}}}}`. List indexes stay keys; the decoder
 * orders them, so a sparse or huge index never allocates an array.
 */
export function treeFromPairs(pairs: Iterable<[string, string]>, limits: ParamLimits, into = emptyParams(), counter = { count: 0 }): ParamObject {
  for (const [name, value] of pairs) {
    if (++counter.count > limits.maxParameters) throw tooMany(limits);
    const path = name.split(".");
    if (path.length > limits.maxDepth) throw tooDeep(limits);
    if (path.some((part) => part === "")) {
      throw new ApiError("MalformedQueryString", `The parameter name "${name}" is malformed.`);
    }
    let node = into;
    for (let i = 0; i < path.length - 1; i++) {
      const part = path[i]!;
      const next = node[part];
      if (next === undefined) node = node[part] = emptyParams();
      else if (typeof next === "object" && next !== null && !Array.isArray(next)) node = next;
      else throw conflict(path.slice(0, i + 1).join("."));
    }
    const leaf = path[path.length - 1]!;
    if (node[leaf] !== undefined) throw conflict(name);
    node[leaf] = value;
  }
  return into;
}

/** Characters of a form body read at a time. */
const FORM_PIECE = 64 * 1024;

/**
 * The query string's pairs and a form body's, as one tree. The body is read a piece at a time,
 * with turns of the event loop between (yieldToLoop): reading a 1 MiB body of 10,000 parameters
 * at once held the loop for tens of milliseconds. Pieces end at an `&`, which a form encodes
 * nowhere else.
 */
export async function treeFromForm(queryPairs: Iterable<[string, string]>, form: string, limits: ParamLimits): Promise<ParamObject> {
  const into = emptyParams();
  const counter = { count: 0 };
  treeFromPairs(queryPairs, limits, into, counter);
  for (let start = 0; start < form.length; ) {
    const cut = form.indexOf("&", start + FORM_PIECE);
    const end = cut < 0 ? form.length : cut;
    treeFromPairs(new URLSearchParams(form.slice(start, end)), limits, into, counter);
    start = end + 1;
    if (start < form.length) await yieldToLoop();
  }
  return into;
}

const conflict = (name: string) =>
  new ApiError("InvalidParameterCombination", `The parameter ${name} is given more than once or both as a value and as a structure.`);

const XML_ENTITIES: Record<string, string> = { "&lt;": "<", "&gt;": ">", "&amp;": "&", "&quot;": '"', "&apos;": "'" };
const unescapeXml = (text: string) =>
  text.replace(/&(lt|gt|amp|quot|apos|#\d+|#x[0-9a-fA-F]+);/g, (entity) => {
    if (entity[1] !== "#") return XML_ENTITIES[entity]!;
    const code = entity[2] === "x" ? parseInt(entity.slice(3, -1), 16) : parseInt(entity.slice(2, -1), 10);
    return code <= 0x10ffff ? String.fromCodePoint(code) : entity;
  });

/**
 * An XML request body as the API reference pages print it: the root element names the action
 * (`<CreateStoreImageTask>` or `<CreateStoreImageTaskRequest>`), children are members.
 */
export async function treeFromXml(body: string, limits: ParamLimits): Promise<{ root: string; params: ParamObject }> {
  if (/<!DOCTYPE|<!ENTITY/i.test(body)) {
    throw new ApiError("InvalidRequest", "XML request bodies may not carry a DOCTYPE.");
  }
  let parsed: unknown;
  try {
    parsed = await parseXml("ec2", body);
  } catch (error) {
    throw new ApiError("InvalidRequest", `The XML request body is not well formed: ${(error as Error).message}`);
  }
  const roots = Object.keys(parsed as object);
  if (roots.length !== 1) throw new ApiError("InvalidRequest", "The XML request body must have exactly one root element.");
  const root = roots[0]!;
  const content = (parsed as Record<string, unknown>)[root];
  const counter = { count: 0 };
  const params = content === "" ? emptyParams() : normalise(content, limits, 1, counter, true);
  if (typeof params !== "object" || params === null || Array.isArray(params)) {
    throw new ApiError("InvalidRequest", "The XML request body's root element must contain member elements.");
  }
  return { root, params };
}

/** A JSON request body: an object whose keys are member names (`Action` may be one of them). */
export function treeFromJson(body: string, limits: ParamLimits): ParamObject {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch (error) {
    throw new ApiError("InvalidRequest", `The JSON request body is not valid JSON: ${(error as Error).message}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new ApiError("InvalidRequest", "The JSON request body must be an object of parameters.");
  }
  return normalise(parsed, limits, 1, { count: 0 }, false) as ParamObject;
}

/** Copies a parsed body into null-prototype objects, counting leaves and depth on the way. */
function normalise(value: unknown, limits: ParamLimits, depth: number, counter: { count: number }, xml: boolean): ParamNode {
  if (depth > limits.maxDepth) throw tooDeep(limits);
  if (Array.isArray(value)) return value.map((item) => normalise(item, limits, depth + 1, counter, xml));
  if (typeof value === "object" && value !== null) {
    const out = emptyParams();
    for (const [key, child] of Object.entries(value)) out[key] = normalise(child, limits, depth + 1, counter, xml);
    return out;
  }
  if (++counter.count > limits.maxParameters) throw tooMany(limits);
  if (xml && typeof value === "string") return unescapeXml(value);
  return value as ParamNode;
}
