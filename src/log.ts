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
 * Writes out every line still buffered, in order, then calls `done`: the end of a process.
 * pino's flush() does nothing for an asynchronous destination, and the synchronous flush
 * that runs at exit can overtake a write still in flight (sonic-boom issue #101), which put
 * "stopped" before "draining" in the journal. Ending the destination waits for that write.
 */
export function endLog(log: Logger, done: () => void): void {
  const stream = (log as unknown as Record<symbol, unknown>)[pino.symbols.streamSym] as NodeJS.WritableStream | undefined;
  if (stream === undefined || stream === process.stdout || typeof stream.end !== 'function') return done();
  let called = false;
  const once = (): void => {
    if (!called) (called = true), done();
  };
  stream.once('close', once);
  stream.once('error', once);
  // Never hang the exit on a stuck stdout.
  setTimeout(once, 2000);
  stream.end();
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
    // Node's system errors start their message with the code already.
    const text = typeof code === 'string' && !e.message.startsWith(code) ? `${code}: ${e.message}` : e.message;
    if (depth === 0) out.message = text;
    else causes.push(text);
    e = e.cause;
  }
  if (causes.length > 0) out.causes = causes;
  return out;
}
