// Reads a request body into one Buffer, never holding more than the limit.
// Node's parser has already framed it (Content-Length or chunked) and rejected
// conflicting framing (duplicate Content-Length, Content-Length with chunked).
import type { IncomingMessage } from 'node:http';
import { InvalidRequestError, PayloadTooLargeError } from './errors.js';

export class BodyTooLargeError extends PayloadTooLargeError {
  /** True when the rest of the body was read and thrown away, so the connection can answer. */
  constructor(message: string, readonly drained: boolean) {
    super(message);
  }
}

/**
 * Resolves with the whole body, or rejects with PayloadTooLarge once it passes
 * `max`. After the limit the remainder is read and discarded up to `drainMax` more
 * bytes, so that a client still sending (Varnish writes the whole body before it
 * reads) receives the 413 instead of a reset; beyond that the caller must close.
 */
export function readBody(
  req: IncomingMessage,
  max: number,
  drainMax = 16 << 20,
  /** Accounts buffered bytes; throws (OverloadedError) to refuse them. */
  take?: (bytes: number) => void,
): Promise<Buffer> {
  const declared = req.headers['content-length'];
  const length = declared === undefined ? -1 : Number(declared);
  const tooLarge = `request body is larger than --max-body (${max} bytes)`;
  if (length > max && length - max > drainMax) {
    req.pause();
    return Promise.reject(new BodyTooLargeError(tooLarge, false));
  }
  if (length === 0 || (req.complete && req.readableLength === 0)) return Promise.resolve(Buffer.alloc(0));
  if (take !== undefined && length > 0 && length <= max) {
    try {
      take(length);
    } catch (err) {
      req.pause();
      return Promise.reject(err);
    }
  }
  // With a declared length the whole of it was accounted above; chunked bodies count as they come.
  const count = take !== undefined && !(length > 0 && length <= max) ? take : undefined;

  return new Promise<Buffer>((resolve, reject) => {
    // With a declared length, one allocation and no concat.
    let buf: Buffer | undefined = length > 0 && length <= max ? Buffer.allocUnsafe(length) : undefined;
    const chunks: Buffer[] = [];
    let size = 0;
    let over = length > max;

    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (over) {
        if (size - max > drainMax) finish(new BodyTooLargeError(tooLarge, false));
        return;
      }
      if (size > max) {
        over = true;
        buf = undefined;
        chunks.length = 0;
        return;
      }
      if (buf !== undefined) {
        if (size > buf.length) return finish(new InvalidRequestError('body longer than Content-Length'));
        chunk.copy(buf, size - chunk.length);
        return;
      }
      if (count !== undefined) {
        try {
          count(chunk.length);
        } catch (err) {
          return finish(err as Error);
        }
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      if (over) return finish(new BodyTooLargeError(tooLarge, true));
      if (buf !== undefined) {
        if (size !== buf.length) return finish(new InvalidRequestError('body shorter than Content-Length'));
        return finish(undefined, buf);
      }
      finish(undefined, chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size));
    };
    const onAbort = (): void => finish(new InvalidRequestError('request body ended early'));
    const finish = (err?: Error, body?: Buffer): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onAbort);
      req.off('close', onClose);
      if (err !== undefined) {
        req.pause();
        reject(err);
      } else resolve(body!);
    };
    // 'close' before 'end' means the peer went away mid-body.
    const onClose = (): void => {
      if (!req.complete) onAbort();
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onAbort);
    req.on('close', onClose);
  });
}

/** Collects a readable (an upstream answer) into one Buffer, failing past `max` bytes. */
export function collect(
  stream: NodeJS.ReadableStream,
  max: number,
  tooLarge: () => Error,
  take?: (bytes: number) => void,
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
        take?.(chunk.length);
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
