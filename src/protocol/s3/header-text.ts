// Text that travels in S3 headers. A header carries Latin-1 at most (node:http refuses anything
// else), so S3 carries user metadata beyond US-ASCII as RFC 2047 encoded words: it decodes them
// before storing and encodes non-ASCII values when it answers. Values copied from a request
// into a response header (response-content-type, …) must be ones a header can carry.
import { validateHeaderValue } from "node:http";

const ASCII_TEXT = /^[\t\x20-\x7e]*$/;
const ENCODED_WORD = /=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=/g;
// RFC 2047 §6.2: white space between adjacent encoded words is not part of the text.
const BETWEEN_WORDS = /(=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=)\s+(?==\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=)/g;
const CHARSETS: Record<string, BufferEncoding> = { "utf-8": "utf8", "us-ascii": "latin1", "iso-8859-1": "latin1" };

/** A stored value as a response header carries it: as it is when US-ASCII, else one UTF-8 encoded word. */
export function encodeHeaderText(text: string): string {
  return ASCII_TEXT.test(text) ? text : `=?UTF-8?B?${Buffer.from(text, "utf8").toString("base64")}?=`;
}

/** A request header's value as text: its encoded words (UTF-8 and Latin-1, B or Q) decoded. */
export function decodeHeaderText(value: string): string {
  if (!value.includes("=?")) return value;
  return value.replace(BETWEEN_WORDS, "$1").replace(ENCODED_WORD, (word, charset: string, encoding: string, text: string) => {
    const decodeAs = CHARSETS[charset.toLowerCase()];
    if (decodeAs === undefined) return word;
    const bytes = encoding.toUpperCase() === "B" ? Buffer.from(text, "base64") : qDecoded(text);
    return bytes.toString(decodeAs);
  });
}

/** RFC 2047's Q encoding: `_` is a space, `=XX` a byte. */
function qDecoded(text: string): Buffer {
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === "_") bytes.push(0x20);
    else if (c === "=" && /^[0-9A-Fa-f]{2}$/.test(text.slice(i + 1, i + 3))) {
      bytes.push(parseInt(text.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(c.charCodeAt(0) & 0xff);
  }
  return Buffer.from(bytes);
}

/** True when node:http can send `value` as the header `name` (no CR, LF or other controls, nothing past Latin-1). */
export function canCarry(name: string, value: string): boolean {
  try {
    validateHeaderValue(name, value);
    return true;
  } catch {
    return false;
  }
}
