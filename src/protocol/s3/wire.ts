// S3's REST-XML wire: answers and errors as S3 writes them, and the auth errors Kiln's verifier
// raises (named as EC2 names them) renamed to the codes S3 clients expect.
import { parseXml } from "../xml.js";
import { escapeXml } from "../ec2-query/encode.js";
import { ApiError, type ErrorCode } from "../errors.js";

export const S3_NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/";
const XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n';
export const XML_TYPE = "application/xml";

/** An element tree as S3 writes it: strings, numbers and booleans are text; arrays repeat the element. */
export type XmlValue = string | number | boolean | Date | undefined | XmlElements | XmlElements[];
export interface XmlElements {
  [name: string]: XmlValue;
}

function elements(tree: XmlElements): string {
  let xml = "";
  for (const [name, value] of Object.entries(tree)) {
    if (value === undefined) continue;
    for (const item of Array.isArray(value) ? value : [value]) {
      if (typeof item === "object" && !(item instanceof Date)) xml += `<${name}>${elements(item)}</${name}>`;
      else xml += `<${name}>${escapeXml(item instanceof Date ? item.toISOString() : String(item))}</${name}>`;
    }
  }
  return xml;
}

/** `<root xmlns=…>…</root>` with the XML declaration: child elements, or text. */
export function s3Xml(root: string, content: XmlElements | string): string {
  const inner = typeof content === "string" ? escapeXml(content) : elements(content);
  return `${XML_DECLARATION}<${root} xmlns="${S3_NAMESPACE}">${inner}</${root}>`;
}

export function s3ErrorXml(code: string, message: string, requestId: string, extra: XmlElements = {}): string {
  return `${XML_DECLARATION}<Error>${elements({ Code: code, Message: message, ...extra, RequestId: requestId, HostId: requestId })}</Error>`;
}

const AUTH_CODES: Partial<Record<ErrorCode, ErrorCode>> = {
  AuthFailure: "InvalidAccessKeyId",
  MissingAuthenticationToken: "AccessDenied",
  IncompleteSignature: "AuthorizationHeaderMalformed",
};

/** The S3 error for an ApiError raised by the shared layers (signature checks, body limits). */
export function asS3Error(error: ApiError): ApiError {
  if (error.code === "RequestExpired") {
    return error.message.includes("presigned")
      ? new ApiError("AccessDenied", "Request has expired")
      : new ApiError("RequestTimeTooSkewed", "The difference between the request time and the current time is too large.");
  }
  if (error.code === "AuthFailure") return new ApiError("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.");
  const renamed = AUTH_CODES[error.code];
  return renamed ? new ApiError(renamed, error.message) : error;
}

export const malformedXml = () => new ApiError("MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema");

/** An element the parser gives as one value or an array (it repeats), always as an array. */
export const asArray = <T>(value: T | T[] | undefined): T[] => (value === undefined ? [] : Array.isArray(value) ? value : [value]);

/** A request document (CreateBucketConfiguration, Delete, …) as a plain tree; MalformedXML when it is not XML. */
export async function parseS3Xml(body: Buffer): Promise<Record<string, unknown>> {
  const text = body.toString("utf8").trim();
  if (text === "") return {};
  try {
    return await parseXml("s3", text);
  } catch {
    throw malformedXml();
  }
}
