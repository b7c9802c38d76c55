// Structured logging: pino, a child logger per component.
import pino from 'pino';

export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  child(bindings: Record<string, unknown>): Logger;
}

export function createLogger(component: string, level = process.env.GREMESH_LOG_LEVEL ?? 'info'): Logger {
  // logs go to stderr so stdout stays for command output
  return pino({ level, base: { component } }, pino.destination(2)) as unknown as Logger;
}

/** A logger that drops everything (unit tests, quiet CLIs). */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child() {
    return silentLogger;
  },
};
