// A store Kiln depends on (the metadata database, the object store) that cannot be reached now:
// the request may succeed later, so Kiln answers ServiceUnavailable rather than an internal error.

/** A failure of a store itself rather than of the request. */
export class StoreUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "StoreUnavailableError";
  }
}

/** Socket errors that mean "not reachable now", whichever store they came from. */
export const NET_UNAVAILABLE = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EPIPE", "EAI_AGAIN"]);

/**
 * Text the metadata store cannot keep: U+0000 (PostgreSQL's text refuses it; SQLite would keep
 * it, and both dialects answer alike). It came from the client, so it is the client's 400.
 */
export class UnstorableTextError extends Error {
  constructor() {
    super("The request carries the character U+0000 (NUL), which Kiln does not store or look up.");
    this.name = "UnstorableTextError";
  }
}

/** Throws UnstorableTextError when a statement's parameter is text with a NUL in it. */
export function checkStorableText(parameters: readonly unknown[]): void {
  for (const parameter of parameters) if (typeof parameter === "string" && parameter.includes("\0")) throw new UnstorableTextError();
}
