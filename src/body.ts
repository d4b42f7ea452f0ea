// Reads a request body into memory (one Buffer, or its chunks when large), never holding
// more than the limit. The HTTP/1.1 server has already framed it (Content-Length or
// chunked) and refused conflicting framing (duplicate Content-Length, CL with chunked).
import type { Account } from './admission.js';
import { InvalidRequestError, PayloadTooLargeError } from './errors.js';
import type { Request } from './http1/server.js';

export class BodyTooLargeError extends PayloadTooLargeError {
  /** True when the rest of the body was read and thrown away, so the connection can answer. */
  constructor(message: string, readonly drained: boolean) {
    super(message);
  }
}

const EMPTY = Buffer.alloc(0);

/**
 * A request body in memory: one Buffer, or the chunks it arrived in. Large bodies stay in
 * their chunks: joining 256 KiB costs a copy and a second large allocation, and every large
 * allocation brings V8's next full collection closer (external memory).
 */
export type Body = Buffer | readonly Buffer[];

// Below this, one contiguous Buffer (a copy of a few KiB is cheaper than handling parts).
const KEEP_CHUNKS_FROM = 64 << 10;

export function bodyLength(body: Body): number {
  if (Buffer.isBuffer(body)) return body.length;
  let n = 0;
  for (const c of body) n += c.length;
  return n;
}

export function joinBody(body: Body): Buffer {
  return Buffer.isBuffer(body) ? body : body.length === 1 ? body[0]! : Buffer.concat(body);
}

/**
 * Resolves with the whole body, or rejects with PayloadTooLarge once it passes
 * `max`. After the limit the remainder is read and discarded up to `drainMax` more
 * bytes, so that a client still sending (Varnish writes the whole body before it
 * reads) receives the 413 instead of a reset; beyond that the caller must close.
 */
export function readBody(
  req: Request,
  max: number,
  drainMax = 16 << 20,
  /** Accounts buffered bytes; its take() throws (OverloadedError) to refuse them. */
  account?: Account,
): Promise<Body> {
  const length = req.contentLength;
  const tooLarge = `request body is larger than --max-body (${max} bytes)`;
  if (length > max && length - max > drainMax) {
    req.stopReading();
    return Promise.reject(new BodyTooLargeError(tooLarge, false));
  }
  if (length === 0) return Promise.resolve(EMPTY);
  const declared = length > 0 && length <= max;
  if (account !== undefined && declared) {
    try {
      account.take(length);
    } catch (err) {
      req.stopReading();
      return Promise.reject(err);
    }
  }
  // With a declared length the whole of it was accounted above; chunked bodies count as they come.
  const count = declared ? undefined : account;

  // A large declared length is kept in its chunks, as a chunked body is.
  const copy = declared && length < KEEP_CHUNKS_FROM;

  return new Promise<Body>((resolve, reject) => {
    // A small declared length: the one chunk that holds it all, or one allocation and no concat.
    let buf: Buffer | undefined;
    const chunks: Buffer[] = [];
    let size = 0;
    let over = length > max;
    let settled = false;

    const finish = (err?: Error, body?: Body): void => {
      if (settled) return;
      settled = true;
      if (err !== undefined) {
        req.stopReading();
        reject(err);
      } else resolve(body!);
    };
    req.read({
      data(chunk) {
        size += chunk.length;
        if (over || size > max) {
          // Past the limit: keep nothing, read on (drain) up to drainMax more. One piece can
          // carry the body past both at once.
          if (!over) {
            over = true;
            buf = undefined;
            chunks.length = 0;
          }
          if (size - max > drainMax) finish(new BodyTooLargeError(tooLarge, false));
          return;
        }
        if (declared && size > length) return finish(new InvalidRequestError('body longer than Content-Length'));
        if (copy) {
          if (size === length && buf === undefined) {
            buf = chunk;
            return;
          }
          buf ??= Buffer.allocUnsafe(length);
          chunk.copy(buf, size - chunk.length);
          return;
        }
        if (count !== undefined) {
          try {
            count.take(chunk.length);
          } catch (err) {
            return finish(err as Error);
          }
        }
        chunks.push(chunk);
      },
      end() {
        if (over) return finish(new BodyTooLargeError(tooLarge, true));
        if (declared && size !== length) return finish(new InvalidRequestError('body shorter than Content-Length'));
        if (copy) return finish(undefined, buf);
        if (chunks.length <= 1) return finish(undefined, chunks[0] ?? EMPTY);
        finish(undefined, size < KEEP_CHUNKS_FROM ? Buffer.concat(chunks, size) : chunks);
      },
      abort(reason) {
        finish(new InvalidRequestError(reason));
      },
    });
  });
}

/** Collects a readable (an upstream answer) into one Buffer, failing past `max` bytes. */
export function collect(
  stream: NodeJS.ReadableStream,
  max: number,
  tooLarge: () => Error,
  account?: Account,
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = (): void => {
      stream.removeListener('data', onData);
      stream.removeListener('end', onEnd);
      stream.removeListener('error', onError);
      stream.removeListener('close', onClose);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > max) {
        cleanup();
        reject(tooLarge());
        return;
      }
      try {
        account?.take(chunk.length);
      } catch (err) {
        cleanup();
        reject(err);
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(Buffer.concat(chunks, size));
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(err);
    };
    const onClose = (): void => onError(new Error('stream closed before its end'));
    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('error', onError);
    stream.on('close', onClose);
  });
}
