// XML request documents (EC2 bodies, S3's Delete, CompleteMultipartUpload, …) as plain trees,
// read by fast-xml-parser. A large document takes it long (a 1 MiB EC2 body 120-400 ms, a
// CompleteMultipartUpload of 10,000 parts some 100 ms), which on the event loop would hold up every
// other request: documents past a few KiB are parsed on a pool worker, and their tree comes back
// as JSON, which the main thread reads a hundred times faster.
import { XMLParser } from "fast-xml-parser";
import type { Handled, ParseXmlRequest, ParseXmlResult } from "../workers/jobs.js";
import { runJob } from "../workers/pool.js";

/** How each protocol reads its documents (a parser's options cannot cross to a worker; their name can). */
const PARSERS = {
  ec2: new XMLParser({
    ignoreAttributes: true,
    parseTagValue: false,
    trimValues: true,
    ignoreDeclaration: true,
    ignorePiTags: true,
    // Entities in a DOCTYPE are never expanded: a body cannot grow itself.
    processEntities: false,
    htmlEntities: false,
  }),
  s3: new XMLParser({ ignoreAttributes: true, parseTagValue: false, trimValues: true }),
};

export type XmlDialect = keyof typeof PARSERS;

/** Documents shorter than this are parsed at once: a worker's round trip costs more than they do. */
const INLINE_CHARS = 16 * 1024;

/** The document's tree (validated first); throws the parser's error for one that is not well formed. */
export async function parseXml(dialect: XmlDialect, text: string): Promise<Record<string, unknown>> {
  if (text.length < INLINE_CHARS) return PARSERS[dialect].parse(text, true) as Record<string, unknown>;
  const { json } = await runJob("parse-xml", { dialect, text });
  return JSON.parse(json) as Record<string, unknown>;
}

/** The worker's half of parseXml. */
export function parseXmlJob({ dialect, text }: ParseXmlRequest): Handled<ParseXmlResult> {
  return { result: { json: JSON.stringify(PARSERS[dialect].parse(text, true)) } };
}
