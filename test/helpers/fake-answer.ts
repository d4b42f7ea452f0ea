// Writes a FakeAnswer onto a response of either HTTP version: delays, slow chunked bodies,
// and stream resets, the behaviours of real Lambda the daemon has to survive.
import { constants as h2 } from 'node:http2';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';

export interface FakeAnswer {
  status: number;
  headers?: Record<string, string | string[]>;
  body?: string | Buffer;
  delayMs?: number;
  /** Stream the body in parts with pauses. */
  chunks?: (string | Buffer)[];
  chunkDelayMs?: number;
  /** Destroy the stream / reset instead of answering. */
  reset?: 'refused' | 'cancel' | 'internal';
}

export type AnyRequest = IncomingMessage | Http2ServerRequest;
export type AnyResponse = ServerResponse | Http2ServerResponse;

// RFC 9113 §8.7: REFUSED_STREAM promises the request was not processed, so a client may retry
// it; CANCEL and INTERNAL_ERROR promise nothing.
const RST_CODES = {
  refused: h2.NGHTTP2_REFUSED_STREAM,
  cancel: h2.NGHTTP2_CANCEL,
  internal: h2.NGHTTP2_INTERNAL_ERROR,
} as const;

/** Reset the stream (HTTP/2) or drop the connection (HTTP/1.1 has nothing finer). */
export function resetExchange(req: AnyRequest, kind: keyof typeof RST_CODES): void {
  if ('stream' in req) req.stream.close(RST_CODES[kind]);
  else req.socket.destroy();
}

/** Nothing more can be written: ended, or the stream/socket is gone (the client cancelled). */
export const gone = (res: AnyResponse): boolean =>
  res.writableEnded || ('stream' in res ? res.stream.destroyed : res.destroyed);

/** Sleeps end early (rejecting) when the fake is closed, so close() is never kept waiting. */
export async function writeAnswer(
  req: AnyRequest, res: AnyResponse, answer: FakeAnswer, extraHeaders: Record<string, string>, signal: AbortSignal,
): Promise<void> {
  if (answer.delayMs) await sleep(answer.delayMs, undefined, { signal });
  if (gone(res)) return;
  if (answer.reset) return resetExchange(req, answer.reset);
  // The union of the two response types has no callable writeHead/write; both accept these calls.
  const out = res as ServerResponse;
  out.writeHead(answer.status, { ...extraHeaders, ...answer.headers });
  if (!answer.chunks) {
    out.end(answer.body ?? '');
    return;
  }
  for (const [i, chunk] of answer.chunks.entries()) {
    if (gone(res)) return;
    out.write(chunk);
    if (answer.chunkDelayMs && i < answer.chunks.length - 1) await sleep(answer.chunkDelayMs, undefined, { signal });
  }
  if (!gone(res)) out.end();
}
