import { pino, type Logger } from 'pino';

export type { Logger };

/** Structured JSON logs on stderr (stdout carries only the ready line). */
export function createLogger(level: string): Logger {
  return pino({ level, base: { name: 'warren' } }, pino.destination({ fd: 2, sync: false }));
}
