// Structured logs (pino: JSON lines, cheap enough for the request path). Lines go to stdout
// through an asynchronous destination: lines logged while a write is in flight leave together
// in the next one, so a busy server makes one write per batch rather than one per request.
// pino flushes what is buffered when the process exits.
import { pino, type Logger } from "pino";

export type { Logger };

export function createLogger(level: string): Logger {
  return pino({ level, base: { service: "kiln" }, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ dest: 1, sync: false }));
}
