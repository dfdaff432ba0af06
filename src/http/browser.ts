// Requests a web page made. Kiln's users reach it with the AWS SDKs, the CLI, Terraform, curl:
// none of them sends `Origin` or `Sec-Fetch-*`, which browsers add to what a page sends. Kiln
// serves no pages, and its default credentials (`test`/`test`) are public, so a page the user
// opens must not be able to change state here, even with a signature or a presigned URL it made
// itself. That holds for "same-origin" pages too: the only page that can be same-origin with a
// Kiln on loopback is one whose host name was rebound to 127.0.0.1.
import type { IncomingMessage } from "node:http";

const header = (req: IncomingMessage, name: string) => {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
};

/** Why `req` comes from a web page, or undefined for a tool (or the user typing a URL). */
export function fromWebPage(req: IncomingMessage): string | undefined {
  const site = header(req, "sec-fetch-site");
  // `none`: the user opened the URL themselves (address bar, bookmark), not a page.
  if (site !== undefined && site !== "none") return `a web page sent it (Sec-Fetch-Site: ${site})`;
  const origin = header(req, "origin");
  if (origin !== undefined) return `a web page sent it (Origin: ${origin})`;
  return undefined;
}

/**
 * What a page may still do: read an object with GET or HEAD, as an <img> or a link to a
 * presigned URL does. A cross-site page cannot read the answer (Kiln grants no CORS), and a
 * read changes nothing.
 */
export function pageMayRead(req: IncomingMessage, protocol: string): boolean {
  if (protocol !== "s3" || (req.method !== "GET" && req.method !== "HEAD")) return false;
  return header(req, "sec-fetch-site") !== "same-origin";
}

/** Content types an HTML form can send without a script (and so without a CORS preflight). */
export function isFormContentType(req: IncomingMessage): boolean {
  const type = (header(req, "content-type") ?? "").split(";")[0]!.trim().toLowerCase();
  return type === "application/x-www-form-urlencoded" || type === "multipart/form-data" || type === "text/plain";
}
