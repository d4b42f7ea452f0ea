// Structured JSON logs (pino), one object per line on stdout for journald.
// Redaction is a second line of defence: no code path logs headers or credentials,
// and these paths are censored should one ever try.
import { pino, type Logger } from 'pino';
import type { LogLevel } from './config.js';

export type { Logger };

export const REDACT_PATHS = [
  'authorization',
  '["x-amz-security-token"]',
  '*.authorization',
  '*["x-amz-security-token"]',
  '*.*.authorization',
  '*.*["x-amz-security-token"]',
  'secretAccessKey',
  '*.secretAccessKey',
  'sessionToken',
  '*.sessionToken',
  'credentials',
  '*.credentials',
];

export function createLogger(level: LogLevel, destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level,
      base: { name: 'lambda-sign', pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      serializers: { err: errorSummary },
    },
    destination ?? pino.destination({ dest: 1, sync: false }),
  );
}

/**
 * What an error may say in a log: its code and message, and the cause chain's codes
 * and messages. Never stacks (noise in the journal) and never objects a cause may
 * carry (response bodies that echo the canonical request, credentials).
 */
export function errorSummary(err: unknown): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  let e: unknown = err;
  const causes: string[] = [];
  for (let depth = 0; e instanceof Error && depth < 4; depth++) {
    const code = (e as { code?: unknown }).code;
    const text = `${typeof code === 'string' ? code + ': ' : ''}${e.message}`;
    if (depth === 0) out.message = text;
    else causes.push(text);
    e = e.cause;
  }
  if (causes.length > 0) out.causes = causes;
  return out;
}
