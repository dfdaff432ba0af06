// Typed output → EC2's XML (or JSON for callers that send `Accept: application/json`), by the
// model: element names are the members' locationNames, lists are `<item>` children.
import type { ServiceModel, Shape, StructureShape } from "../model.js";

const XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n';
const XML_ESCAPES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;" };
// XML 1.0 cannot carry these control characters at all, not even as references.
const XML_INVALID = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/g;

const NEEDS_ESCAPING = /[&<>"'\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/;

export function escapeXml(text: string): string {
  // Most values (ids, names, states) need nothing: one test instead of two replacements.
  if (!NEEDS_ESCAPING.test(text)) return text;
  return text.replace(/[&<>"']/g, (c) => XML_ESCAPES[c]!).replace(XML_INVALID, "\uFFFD");
}

export function encodeXmlResponse(
  model: ServiceModel,
  action: string,
  output: StructureShape | undefined,
  value: Record<string, unknown> | undefined,
  requestId: string,
): string {
  // Appending to one string (V8 keeps it as a rope until it is written) beats collecting parts
  // and joining them: a 1,000-tag answer is some 14,000 pieces.
  let xml = `${XML_DECLARATION}<${action}Response xmlns="${model.xmlNamespace}"><requestId>${requestId}</requestId>`;
  // Actions with no output answer `<return>true</return>`, as EC2 does.
  if (!output) xml += "<return>true</return>";
  else if (value) xml = writeMembers(output, value, xml);
  return `${xml}</${action}Response>`;
}

export function encodeXmlError(code: string, message: string, requestId: string): string {
  return `${XML_DECLARATION}<Response><Errors><Error><Code>${escapeXml(code)}</Code><Message>${escapeXml(message)}</Message></Error></Errors><RequestID>${requestId}</RequestID></Response>`;
}

/** A member's tags, built once per shape: the encoder runs on every response. */
interface MemberTags {
  name: string;
  open: string;
  close: string;
  shape: Shape;
}

const tagCache = new WeakMap<StructureShape, MemberTags[]>();

function memberTags(shape: StructureShape): MemberTags[] {
  let tags = tagCache.get(shape);
  if (!tags) {
    tags = shape.members.map((m) => ({ name: m.name, open: `<${m.xmlName}>`, close: `</${m.xmlName}>`, shape: m.shape }));
    tagCache.set(shape, tags);
  }
  return tags;
}

function writeMembers(shape: StructureShape, value: Record<string, unknown>, xml: string): string {
  for (const member of memberTags(shape)) {
    const memberValue = value[member.name];
    if (memberValue === undefined || memberValue === null) continue;
    xml = writeValue(member.open, member.close, member.shape, memberValue, xml);
  }
  return xml;
}

function writeValue(open: string, close: string, shape: Shape, value: unknown, xml: string): string {
  switch (shape.type) {
    case "structure":
      return writeMembers(shape, value as Record<string, unknown>, xml + open) + close;
    case "list": {
      const items = value as unknown[];
      if (items.length === 0) return `${xml}${open.slice(0, -1)}/>`;
      xml += open;
      const itemName = shape.member.xmlName === "member" ? "item" : shape.member.xmlName;
      const itemOpen = `<${itemName}>`;
      const itemClose = `</${itemName}>`;
      for (const item of items) if (item !== undefined && item !== null) xml = writeValue(itemOpen, itemClose, shape.member.shape, item, xml);
      return xml + close;
    }
    case "map":
      xml += open;
      for (const [key, entry] of Object.entries(value as Record<string, unknown>)) {
        xml += `<item><${shape.key.xmlName}>${escapeXml(key)}</${shape.key.xmlName}>`;
        xml = writeValue(`<${shape.value.xmlName}>`, `</${shape.value.xmlName}>`, shape.value.shape, entry, xml) + "</item>";
      }
      return xml + close;
    case "string":
      return xml + open + escapeXml(String(value)) + close;
    default:
      return xml + open + escapeXml(scalarText(shape.type, value)) + close;
  }
}

function scalarText(type: string, value: unknown): string {
  if (type === "timestamp") return (value instanceof Date ? value : new Date(value as string)).toISOString();
  if (type === "blob") return Buffer.from(value as Uint8Array).toString("base64");
  return String(value);
}

/** JSON by member names, as the SDKs' output types name them; the request id travels alongside. */
export function encodeJsonResponse(output: StructureShape | undefined, value: Record<string, unknown> | undefined, requestId: string): string {
  const body: Record<string, unknown> = { RequestId: requestId };
  if (!output) body.Return = true;
  else if (value) Object.assign(body, jsonStructure(output, value));
  return JSON.stringify(body);
}

export function encodeJsonError(code: string, message: string, requestId: string): string {
  return JSON.stringify({ Errors: [{ Code: code, Message: message }], RequestID: requestId });
}

function jsonStructure(shape: StructureShape, value: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const member of shape.members) {
    const memberValue = value[member.name];
    if (memberValue !== undefined && memberValue !== null) out[member.name] = jsonValue(member.shape, memberValue);
  }
  return out;
}

function jsonValue(shape: Shape, value: unknown): unknown {
  switch (shape.type) {
    case "structure":
      return jsonStructure(shape, value as Record<string, unknown>);
    case "list":
      return (value as unknown[]).map((item) => jsonValue(shape.member.shape, item));
    case "map":
      return Object.fromEntries(Object.entries(value as Record<string, unknown>).map(([k, v]) => [k, jsonValue(shape.value.shape, v)]));
    case "timestamp":
    case "blob":
      return scalarText(shape.type, value);
    default:
      return value;
  }
}
