// Text a client sent that the metadata store cannot keep. It came from the client, so each
// protocol answers it as its own 400, never as an internal error.

/**
 * Text the metadata store cannot keep: U+0000 (PostgreSQL's text refuses it; SQLite would keep
 * it, and both dialects answer alike).
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
