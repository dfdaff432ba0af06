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
