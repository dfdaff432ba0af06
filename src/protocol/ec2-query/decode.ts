// Walks a parameter tree by the model's input shape and yields the typed input an action
// handler receives: member names as keys (as the AWS SDKs name them), values of the model's types.
import { ApiError, InvalidParameter } from "../errors.js";
import type { ListShape, MapShape, Member, ScalarShape, Shape, StructureShape } from "../model.js";
import type { ParamNode, ParamObject } from "./params.js";

export type Decoded = string | number | boolean | Date | Uint8Array | Decoded[] | DecodedObject;
export interface DecodedObject {
  [member: string]: Decoded;
}

const INT32 = { min: -(2 ** 31), max: 2 ** 31 - 1 };

const isObject = (node: ParamNode): node is ParamObject => typeof node === "object" && node !== null && !Array.isArray(node);

const invalid = (path: string, value: ParamNode, expected: string) =>
  new InvalidParameter(path, `Value (${describe(value)}) for parameter ${path} is invalid. ${expected}`, describe(value));

const describe = (value: ParamNode) => (typeof value === "object" && value !== null ? "a structure" : String(value));

/** Decodes the top-level input of an operation; `path` prefixes nested parameter names in errors. */
export function decodeStructure(node: ParamNode, shape: StructureShape, path = ""): DecodedObject {
  const out: DecodedObject = {};
  if (node === "" || node === null) node = {};
  if (!isObject(node)) throw invalid(path || shape.name, node, "Expected a structure.");
  for (const key of Object.keys(node)) {
    const member = shape.byInputName.get(key);
    const where = path ? `${path}.${key}` : key;
    if (!member) throw new ApiError("UnknownParameter", `The parameter ${where} is not recognized`);
    if (out[member.name] !== undefined) {
      throw new ApiError("InvalidParameterCombination", `The parameter ${member.wireName} is given twice (as ${member.wireName} and ${member.name}).`);
    }
    const value = decodeValue(node[key]!, member.shape, where);
    if (value !== undefined) out[member.name] = value;
  }
  for (const required of shape.required) {
    if (out[required] === undefined) {
      const member = shape.members.find((m) => m.name === required)!;
      throw new ApiError("MissingParameter", `The request must contain the parameter ${path ? `${path}.` : ""}${member.wireName}`);
    }
  }
  return out;
}

function decodeValue(node: ParamNode, shape: Shape, path: string): Decoded | undefined {
  if (node === null) return undefined;
  switch (shape.type) {
    case "structure":
      return decodeStructure(node, shape, path);
    case "list":
      return decodeList(node, shape, path);
    case "map":
      return decodeMap(node, shape, path);
    default:
      return decodeScalar(node, shape, path);
  }
}

/**
 * A list arrives as indexed keys (`Name.1`, `Name.2`: query and form), an array (JSON, or
 * repeated XML elements), `item`/`member` children (XML as EC2 prints lists), or one value.
 */
function listElements(node: ParamNode, path: string): [string, ParamNode][] {
  if (node === "") return [];
  if (Array.isArray(node)) return node.map((item, i) => [String(i + 1), item]);
  if (isObject(node)) {
    const keys = Object.keys(node);
    if (keys.length > 0 && keys.every((k) => /^[1-9][0-9]{0,8}$/.test(k))) {
      return keys
        .map(Number)
        .sort((a, b) => a - b)
        .map((index) => [String(index), node[String(index)]!]);
    }
    if (keys.length === 1 && (keys[0] === "item" || keys[0] === "member")) return listElements(wrap(node[keys[0]]!), path);
    if (keys.some((k) => /^[0-9]+$/.test(k))) {
      throw new ApiError("InvalidParameterValue", `The list ${path} has a malformed index; indexes start at 1.`);
    }
  }
  return [["1", node]];
}

const wrap = (node: ParamNode): ParamNode => (Array.isArray(node) ? node : [node]);

function decodeList(node: ParamNode, shape: ListShape, path: string): Decoded[] {
  const elements = listElements(node, path);
  if (shape.max !== undefined && elements.length > shape.max) {
    throw new ApiError("InvalidParameterValue", `The list ${path} has ${elements.length} members; at most ${shape.max} are allowed.`);
  }
  const out: Decoded[] = [];
  for (const [index, element] of elements) {
    const value = decodeValue(element, shape.member.shape, `${path}.${index}`);
    if (value !== undefined) out.push(value);
  }
  return out;
}

/** Maps follow the query protocol: `Name.N.key` / `Name.N.value` (or the model's names for them); JSON may send an object. */
function decodeMap(node: ParamNode, shape: MapShape, path: string): DecodedObject {
  const out: DecodedObject = Object.create(null) as DecodedObject;
  const entries: [string, ParamNode][] = [];
  const keyNames = new Set([shape.key.xmlName, shape.key.wireName, "key", "Key"]);
  const valueNames = new Set([shape.value.xmlName, shape.value.wireName, "value", "Value"]);
  const indexed = isObject(node) && Object.keys(node).every((k) => /^[1-9][0-9]{0,8}$/.test(k));
  if (Array.isArray(node) || indexed) {
    for (const [index, entry] of listElements(node, path)) {
      if (!isObject(entry)) throw invalid(`${path}.${index}`, entry, "Expected a key and a value.");
      const keyName = Object.keys(entry).find((k) => keyNames.has(k));
      const valueName = Object.keys(entry).find((k) => valueNames.has(k));
      if (!keyName) throw new ApiError("MissingParameter", `The request must contain the parameter ${path}.${index}.${shape.key.wireName}`);
      entries.push([String(decodeScalarKey(entry[keyName]!, shape.key, `${path}.${index}.${keyName}`)), valueName ? entry[valueName]! : ""]);
    }
  } else if (isObject(node)) {
    for (const [key, value] of Object.entries(node)) entries.push([key, value]);
  } else if (node !== "") {
    throw invalid(path, node, "Expected a map.");
  }
  for (const [key, value] of entries) {
    const decoded = decodeValue(value, shape.value.shape, `${path}.${key}`);
    if (decoded !== undefined) out[key] = decoded;
  }
  return out;
}

function decodeScalarKey(node: ParamNode, key: Member, path: string): Decoded {
  return decodeValue(node, key.shape, path) ?? "";
}

function decodeScalar(node: ParamNode, shape: ScalarShape, path: string): Decoded {
  if (typeof node === "object") throw invalid(path, node, `Expected a ${shape.type}.`);
  switch (shape.type) {
    case "string": {
      const text = String(node);
      if (shape.enum && !shape.enum.has(text)) {
        const allowed = [...shape.enum];
        const list = allowed.length <= 20 ? ` Valid values: ${allowed.join(", ")}.` : "";
        throw invalid(path, node, `It is not one of the allowed values.${list}`);
      }
      if (shape.min !== undefined && text.length < shape.min) throw invalid(path, node, `It must be at least ${shape.min} characters long.`);
      if (shape.max !== undefined && text.length > shape.max) throw invalid(path, node, `It must be at most ${shape.max} characters long.`);
      return text;
    }
    case "boolean": {
      if (typeof node === "boolean") return node;
      const text = String(node).toLowerCase();
      if (text === "true") return true;
      if (text === "false") return false;
      throw invalid(path, node, "Expected a boolean (true or false).");
    }
    case "integer":
    case "long": {
      const number = typeof node === "number" ? node : /^[+-]?[0-9]+$/.test(String(node).trim()) ? Number(String(node).trim()) : NaN;
      const bounds = shape.type === "integer" ? INT32 : { min: Number.MIN_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER };
      if (!Number.isInteger(number) || number < bounds.min || number > bounds.max) {
        throw invalid(path, node, `Expected ${shape.type === "integer" ? "an integer" : "a long integer"}.`);
      }
      if (shape.min !== undefined && number < shape.min) throw invalid(path, node, `It must be at least ${shape.min}.`);
      if (shape.max !== undefined && number > shape.max) throw invalid(path, node, `It must be at most ${shape.max}.`);
      return number;
    }
    case "float":
    case "double": {
      const text = String(node).trim();
      const number = typeof node === "number" ? node : text === "" ? NaN : Number(text);
      if (!Number.isFinite(number)) throw invalid(path, node, "Expected a number.");
      return number;
    }
    case "timestamp": {
      const text = String(node).trim();
      // ISO 8601 as the SDKs send it, or epoch seconds.
      const date = /^[0-9]+(\.[0-9]+)?$/.test(text) ? new Date(Number(text) * 1000) : /^\d{4}-\d{2}-\d{2}/.test(text) ? new Date(text) : new Date(NaN);
      if (Number.isNaN(date.getTime())) throw invalid(path, node, "Expected a timestamp (ISO 8601 or epoch seconds).");
      return date;
    }
    case "blob": {
      const text = String(node).replace(/\s+/g, "");
      if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 === 1) throw invalid(path, node, "Expected base64 data.");
      return new Uint8Array(Buffer.from(text, "base64"));
    }
  }
}
