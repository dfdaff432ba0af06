// Percent-decoding of what clients send (paths, copy sources, URLs). decodeURIComponent throws a
// URIError on a bad `%xx` escape or bytes that are not UTF-8: that is the client's mistake, and
// each protocol names it with its own 400 error.
export function percentDecoded(text: string, malformed: () => Error): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw malformed();
  }
}
