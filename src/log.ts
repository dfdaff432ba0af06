// Structured logs (pino: JSON lines, cheap enough for the request path).
import { pino, type Logger } from "pino";

export type { Logger };

export function createLogger(level: string): Logger {
  return pino({ level, base: { service: "kiln" }, timestamp: pino.stdTimeFunctions.isoTime });
}
