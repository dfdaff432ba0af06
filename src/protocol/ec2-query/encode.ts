// Typed output → EC2's XML (or JSON for callers that send `Accept: application/json`), by the
// model: element names are the members' locationNames, lists are `<item>` children.
import { yieldToLoop } from "../../event-loop.js";
import type { ListShape, ServiceModel, Shape, StructureShape } from "../model.js";

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

/**
 * List items an answer (or a part of one) may hold and still be written at once: a thousand tags
 * take 0.3 ms, the largest such answers (a hundred instances, 400 KB) 2 ms. Writing in pieces
 * costs more than the turns it makes room for below that (a 1,000-tag page: 2.6 against 2.2 ms).
 */
const ITEMS_AT_ONCE = 1024;

/** Characters of text gathered before they are turned into bytes, in an answer written in pieces. */
const PIECE_CHARS = 64 * 1024;

/** How many list items `value` holds, counting no further than just past `limit`. */
function itemsIn(value: unknown, limit: number): number {
  if (typeof value !== "object" || value === null || value instanceof Date || value instanceof Uint8Array) return 0;
  let count = 0;
  if (Array.isArray(value)) {
    count = value.length;
    for (let i = 0; i < value.length && count <= limit; i++) count += itemsIn(value[i], limit - count);
    return count;
  }
  // for…in, not Object.values: an answer of a thousand items would make a thousand arrays.
  for (const key in value) {
    if (count > limit) break;
    count += itemsIn((value as Record<string, unknown>)[key], limit - count);
  }
  return count;
}

const mayHoldItemsCache = new WeakMap<Shape, boolean>();

/** Whether a value of `shape` can hold list items (a tag cannot; an instance can): only those need counting. */
function mayHoldItems(shape: Shape): boolean {
  if (shape.type === "list" || shape.type === "map") return true;
  if (shape.type !== "structure") return false;
  let holds = mayHoldItemsCache.get(shape);
  if (holds === undefined) {
    mayHoldItemsCache.set(shape, true); // a shape that refers to itself: assume it may
    holds = shape.members.some((member) => mayHoldItems(member.shape));
    mayHoldItemsCache.set(shape, holds);
  }
  return holds;
}

/** An item's weight in a run written at once: itself and the list items it holds. */
const heldBy = (shape: Shape, item: unknown) => (mayHoldItems(shape) ? 1 + itemsIn(item, ITEMS_AT_ONCE) : 1);

/**
 * A large list's items go in runs of up to ITEMS_AT_ONCE (counting what each holds), the writer
 * pausing between runs: a pause an item would cost more than writing a small one. The pacer
 * answers, for each item's weight, whether a run ends before it.
 */
function runPacer(): (held: number) => boolean {
  let run = 0;
  return (held) => {
    const pause = run + held > ITEMS_AT_ONCE;
    run = pause ? held : run + held;
    return pause;
  };
}

/**
 * A large answer's writer: it appends to a string (V8 keeps it as a rope) and, between list
 * items, yields the text so far; it goes on with the text it is handed back.
 */
type Writer = Generator<string, string, string>;

/**
 * A large answer's bytes, made as it is written: between list items, text past PIECE_CHARS goes
 * into bytes (so the answer is never one huge string to flatten and encode at once), and once
 * the slice is spent the event loop takes a turn (yieldToLoop) before the writer goes on.
 */
async function written(writer: Writer): Promise<Buffer[]> {
  const buffers: Buffer[] = [];
  let step = writer.next("");
  while (!step.done) {
    let text = step.value;
    if (text.length >= PIECE_CHARS) {
      buffers.push(Buffer.from(text));
      text = "";
    }
    const turn = yieldToLoop();
    if (turn) await turn;
    step = writer.next(text);
  }
  if (step.value) buffers.push(Buffer.from(step.value));
  return buffers;
}

/**
 * The XML answer: its text, written at once, for all but the largest answers (a page of a
 * thousand instances); those are written in pieces with turns of the event loop between.
 */
export function encodeXmlResponse(
  model: ServiceModel,
  action: string,
  output: StructureShape | undefined,
  value: Record<string, unknown> | undefined,
  requestId: string,
): string | Promise<Buffer[]> {
  // Appending to one string (V8 keeps it as a rope until it is written) beats collecting parts
  // and joining them: a 1,000-tag answer is some 14,000 pieces.
  const xml = `${XML_DECLARATION}<${action}Response xmlns="${model.xmlNamespace}"><requestId>${requestId}</requestId>`;
  const end = `</${action}Response>`;
  // Actions with no output answer `<return>true</return>`, as EC2 does.
  if (!output) return `${xml}<return>true</return>${end}`;
  if (!value) return xml + end;
  if (itemsIn(value, ITEMS_AT_ONCE) <= ITEMS_AT_ONCE) return writeMembers(output, value, xml) + end;
  return written(
    (function* (): Writer {
      return (yield* sliceMembers(output, value, xml)) + end;
    })(),
  );
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

/** The tags of a list's items: EC2 names them `item` unless the model names them otherwise. */
function itemTags(shape: ListShape): { itemOpen: string; itemClose: string } {
  const itemName = shape.member.xmlName === "member" ? "item" : shape.member.xmlName;
  return { itemOpen: `<${itemName}>`, itemClose: `</${itemName}>` };
}

function writeValue(open: string, close: string, shape: Shape, value: unknown, xml: string): string {
  switch (shape.type) {
    case "structure":
      return writeMembers(shape, value as Record<string, unknown>, xml + open) + close;
    case "list": {
      const items = value as unknown[];
      if (items.length === 0) return `${xml}${open.slice(0, -1)}/>`;
      xml += open;
      const { itemOpen, itemClose } = itemTags(shape);
      for (const item of items) if (item !== undefined && item !== null) xml = writeValue(itemOpen, itemClose, shape.member.shape, item, xml);
      return xml + close;
    }
    case "map":
      xml += open;
      for (const [key, entry] of Object.entries(value as Record<string, unknown>)) {
        xml += `<item><${shape.key.xmlName}>${escapeXml(key)}</${shape.key.xmlName}>`;
        xml = `${writeValue(`<${shape.value.xmlName}>`, `</${shape.value.xmlName}>`, shape.value.shape, entry, xml)}</item>`;
      }
      return xml + close;
    case "string":
      return xml + open + escapeXml(String(value)) + close;
    default:
      return xml + open + escapeXml(scalarText(shape.type, value)) + close;
  }
}

/** writeMembers for a large value: down the structures and lists that hold many items, a turn between items. */
function* sliceMembers(shape: StructureShape, value: Record<string, unknown>, xml: string): Writer {
  for (const member of memberTags(shape)) {
    const memberValue = value[member.name];
    if (memberValue === undefined || memberValue === null) continue;
    xml = yield* sliceValue(member.open, member.close, member.shape, memberValue, xml);
  }
  return xml;
}

function* sliceValue(open: string, close: string, shape: Shape, value: unknown, xml: string): Writer {
  if (itemsIn(value, ITEMS_AT_ONCE) <= ITEMS_AT_ONCE) return writeValue(open, close, shape, value, xml);
  if (shape.type === "structure") return (yield* sliceMembers(shape, value as Record<string, unknown>, xml + open)) + close;
  if (shape.type !== "list") return writeValue(open, close, shape, value, xml);
  const { itemOpen, itemClose } = itemTags(shape);
  xml += open;
  const pauseBefore = runPacer();
  for (const item of value as unknown[]) {
    if (item === undefined || item === null) continue;
    const held = heldBy(shape.member.shape, item);
    if (pauseBefore(held)) xml = yield xml;
    xml =
      held > ITEMS_AT_ONCE
        ? yield* sliceValue(itemOpen, itemClose, shape.member.shape, item, xml)
        : writeValue(itemOpen, itemClose, shape.member.shape, item, xml);
  }
  return xml + close;
}

function scalarText(type: string, value: unknown): string {
  if (type === "timestamp") return (value instanceof Date ? value : new Date(value as string)).toISOString();
  if (type === "blob") return Buffer.from(value as Uint8Array).toString("base64");
  return String(value);
}

/**
 * JSON by member names, as the SDKs' output types name them; the request id travels alongside.
 * The largest answers are written in pieces, as XML is, as JSON.stringify would write them.
 */
export function encodeJsonResponse(
  output: StructureShape | undefined,
  value: Record<string, unknown> | undefined,
  requestId: string,
): string | Promise<Buffer[]> {
  const body: Record<string, unknown> = { RequestId: requestId };
  if (!output) body.Return = true;
  else if (value && itemsIn(value, ITEMS_AT_ONCE) > ITEMS_AT_ONCE) {
    return written(
      (function* (): Writer {
        return `${yield* sliceJsonMembers(output, value, `{"RequestId":${JSON.stringify(requestId)}`, true)}}`;
      })(),
    );
  } else if (value) Object.assign(body, jsonStructure(output, value));
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
  if (value === undefined || value === null) return null;
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

/** The members of a structure appended to `json`, an object opened already (`more`: members precede them). */
function* sliceJsonMembers(shape: StructureShape, value: Record<string, unknown>, json: string, more: boolean): Writer {
  for (const member of shape.members) {
    const memberValue = value[member.name];
    if (memberValue === undefined || memberValue === null) continue;
    json = yield* sliceJsonValue(member.shape, memberValue, `${json}${more ? "," : ""}${JSON.stringify(member.name)}:`);
    more = true;
  }
  return json;
}

function* sliceJsonValue(shape: Shape, value: unknown, json: string): Writer {
  if (itemsIn(value, ITEMS_AT_ONCE) <= ITEMS_AT_ONCE) return json + JSON.stringify(jsonValue(shape, value));
  if (shape.type === "structure") return `${yield* sliceJsonMembers(shape, value as Record<string, unknown>, `${json}{`, false)}}`;
  if (shape.type !== "list") return json + JSON.stringify(jsonValue(shape, value));
  json += "[";
  let first = true;
  const pauseBefore = runPacer();
  for (const item of value as unknown[]) {
    const held = heldBy(shape.member.shape, item);
    if (pauseBefore(held)) json = yield json;
    if (!first) json += ",";
    first = false;
    json = held > ITEMS_AT_ONCE ? yield* sliceJsonValue(shape.member.shape, item, json) : json + JSON.stringify(jsonValue(shape.member.shape, item));
  }
  return `${json}]`;
}
