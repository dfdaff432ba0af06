// Typed output → EC2's XML (or JSON for callers that send `Accept: application/json`), by the
// model: element names are the members' locationNames, lists are `<item>` children.
import { yieldToLoop } from "../../event-loop.js";
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

/** Characters of text gathered before they are turned into bytes. */
const PIECE_CHARS = 64 * 1024;

/**
 * An answer's bytes, made as it is written. Text is appended to a string (V8 keeps it as a rope,
 * cheaper than collecting parts and joining them); between list items, once that string is
 * long, it is turned into bytes and begun anew. So a large answer is never one huge string to
 * flatten and encode at once, and the event loop takes turns between items (yieldToLoop).
 */
class Pieces {
  readonly buffers: Buffer[] = [];

  /** Where the writer continues: `text`, or nothing once `text` has gone into bytes. */
  async next(text: string): Promise<string> {
    await yieldToLoop();
    if (text.length < PIECE_CHARS) return text;
    this.buffers.push(Buffer.from(text));
    return "";
  }

  end(text: string): Buffer[] {
    if (text) this.buffers.push(Buffer.from(text));
    return this.buffers;
  }
}

/** The XML answer, as bytes in pieces. */
export async function encodeXmlResponse(
  model: ServiceModel,
  action: string,
  output: StructureShape | undefined,
  value: Record<string, unknown> | undefined,
  requestId: string,
): Promise<Buffer[]> {
  const pieces = new Pieces();
  let xml = `${XML_DECLARATION}<${action}Response xmlns="${model.xmlNamespace}"><requestId>${requestId}</requestId>`;
  // Actions with no output answer `<return>true</return>`, as EC2 does.
  if (!output) xml += "<return>true</return>";
  else if (value) xml = await writeMembers(output, value, xml, pieces);
  return pieces.end(`${xml}</${action}Response>`);
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

const isScalar = (shape: Shape) => shape.type !== "structure" && shape.type !== "list" && shape.type !== "map";

async function writeMembers(shape: StructureShape, value: Record<string, unknown>, xml: string, pieces: Pieces): Promise<string> {
  for (const member of memberTags(shape)) {
    const memberValue = value[member.name];
    if (memberValue === undefined || memberValue === null) continue;
    // Scalars are written at once: awaiting only for nested values keeps small answers cheap.
    const { open, close, shape } = member;
    xml = isScalar(shape) ? writeScalar(open, close, shape, memberValue, xml) : await writeValue(open, close, shape, memberValue, xml, pieces);
  }
  return xml;
}

async function writeValue(open: string, close: string, shape: Shape, value: unknown, xml: string, pieces: Pieces): Promise<string> {
  switch (shape.type) {
    case "structure":
      return (await writeMembers(shape, value as Record<string, unknown>, xml + open, pieces)) + close;
    case "list": {
      const items = value as unknown[];
      if (items.length === 0) return `${xml}${open.slice(0, -1)}/>`;
      xml += open;
      const itemName = shape.member.xmlName === "member" ? "item" : shape.member.xmlName;
      const itemOpen = `<${itemName}>`;
      const itemClose = `</${itemName}>`;
      for (const item of items) {
        if (item === undefined || item === null) continue;
        xml = await writeValue(itemOpen, itemClose, shape.member.shape, item, await pieces.next(xml), pieces);
      }
      return xml + close;
    }
    case "map":
      xml += open;
      for (const [key, entry] of Object.entries(value as Record<string, unknown>)) {
        xml = `${await pieces.next(xml)}<item><${shape.key.xmlName}>${escapeXml(key)}</${shape.key.xmlName}>`;
        xml = (await writeValue(`<${shape.value.xmlName}>`, `</${shape.value.xmlName}>`, shape.value.shape, entry, xml, pieces)) + "</item>";
      }
      return xml + close;
    default:
      return writeScalar(open, close, shape, value, xml);
  }
}

function writeScalar(open: string, close: string, shape: Shape, value: unknown, xml: string): string {
  return xml + open + escapeXml(shape.type === "string" ? String(value) : scalarText(shape.type, value)) + close;
}

function scalarText(type: string, value: unknown): string {
  if (type === "timestamp") return (value instanceof Date ? value : new Date(value as string)).toISOString();
  if (type === "blob") return Buffer.from(value as Uint8Array).toString("base64");
  return String(value);
}

/**
 * JSON by member names, as the SDKs' output types name them; the request id travels alongside.
 * Written as JSON.stringify would write the object, in pieces as XML is.
 */
export async function encodeJsonResponse(
  output: StructureShape | undefined,
  value: Record<string, unknown> | undefined,
  requestId: string,
): Promise<Buffer[]> {
  const pieces = new Pieces();
  let json = `{"RequestId":${JSON.stringify(requestId)}`;
  if (!output) json += ',"Return":true';
  else if (value) json = await jsonMembers(output, value, json, true, pieces);
  return pieces.end(`${json}}`);
}

export function encodeJsonError(code: string, message: string, requestId: string): string {
  return JSON.stringify({ Errors: [{ Code: code, Message: message }], RequestID: requestId });
}

/** The members of a structure appended to `json`, an object opened already (`more`: members precede them). */
async function jsonMembers(shape: StructureShape, value: Record<string, unknown>, json: string, more: boolean, pieces: Pieces): Promise<string> {
  for (const member of shape.members) {
    const memberValue = value[member.name];
    if (memberValue === undefined || memberValue === null) continue;
    json += `${more ? "," : ""}${JSON.stringify(member.name)}:`;
    json = await jsonValue(member.shape, memberValue, json, pieces);
    more = true;
  }
  return json;
}

async function jsonValue(shape: Shape, value: unknown, json: string, pieces: Pieces): Promise<string> {
  switch (shape.type) {
    case "structure":
      return (await jsonMembers(shape, value as Record<string, unknown>, `${json}{`, false, pieces)) + "}";
    case "list": {
      json += "[";
      let first = true;
      for (const item of value as unknown[]) {
        json = first ? json : `${await pieces.next(json)},`;
        first = false;
        // JSON.stringify writes a missing item as null.
        json = item === undefined || item === null ? `${json}null` : await jsonValue(shape.member.shape, item, json, pieces);
      }
      return `${json}]`;
    }
    case "map": {
      json += "{";
      let first = true;
      for (const [key, entry] of Object.entries(value as Record<string, unknown>)) {
        if (entry === undefined) continue;
        json = `${await pieces.next(json)}${first ? "" : ","}${JSON.stringify(key)}:`;
        first = false;
        json = entry === null ? `${json}null` : await jsonValue(shape.value.shape, entry, json, pieces);
      }
      return `${json}}`;
    }
    case "timestamp":
    case "blob":
      return json + JSON.stringify(scalarText(shape.type, value));
    default:
      return json + JSON.stringify(value);
  }
}
