// The daemon's own errors. One base class, one subclass per code; exactly one
// function (errorBody) turns any error into what Varnish receives. The body never
// carries `cause.message`: causes can hold upstream text, paths or credentials.

export abstract class LambdaSignError extends Error {
  abstract readonly code: string;
  abstract readonly status: number;
  /** Seconds for a Retry-After header, when the condition is expected to pass. */
  retryAfter?: number;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
  override get name(): string {
    return this.code;
  }
}

export class NotFoundError extends LambdaSignError {
  readonly code = 'NotFound';
  readonly status = 404;
}
export class MethodNotAllowedError extends LambdaSignError {
  readonly code = 'MethodNotAllowed';
  readonly status = 405;
  constructor(message: string, readonly allow: string) {
    super(message);
  }
}
export class InvalidRequestError extends LambdaSignError {
  readonly code = 'InvalidRequest';
  readonly status = 400;
}
export class InvalidFunctionNameError extends LambdaSignError {
  readonly code = 'InvalidFunctionName';
  readonly status = 400;
}
export class InvalidQualifierError extends LambdaSignError {
  readonly code = 'InvalidQualifier';
  readonly status = 400;
}
export class FunctionNotAllowedError extends LambdaSignError {
  readonly code = 'FunctionNotAllowed';
  readonly status = 403;
}
export class PayloadTooLargeError extends LambdaSignError {
  readonly code = 'PayloadTooLarge';
  readonly status = 413;
}
export class CredentialsUnavailableError extends LambdaSignError {
  readonly code = 'CredentialsUnavailable';
  readonly status = 503;
  override retryAfter = 5;
}
export class UpstreamUnavailableError extends LambdaSignError {
  readonly code = 'UpstreamUnavailable';
  readonly status = 502;
}
export class UpstreamTimeoutError extends LambdaSignError {
  readonly code = 'UpstreamTimeout';
  readonly status = 504;
}
export class ShuttingDownError extends LambdaSignError {
  readonly code = 'ShuttingDown';
  readonly status = 503;
  override retryAfter = 1;
}
export class OverloadedError extends LambdaSignError {
  readonly code = 'Overloaded';
  readonly status = 503;
  override retryAfter = 1;
}
/** /healthz with --probe-function: the DryRun invocation did not succeed. */
export class ProbeFailedError extends LambdaSignError {
  readonly code = 'ProbeFailed';
  readonly status = 503;
  override retryAfter = 5;
}
export class InvalidPayloadError extends LambdaSignError {
  readonly code = 'InvalidPayload';
  readonly status = 400;
}
/** Gateway mode: the function raised (X-Amz-Function-Error); its error JSON is the body. */
export class FunctionError extends LambdaSignError {
  readonly code = 'FunctionError';
  readonly status = 502;
  constructor(message: string, readonly payload: Buffer) {
    super(message);
  }
}
/** Gateway mode: the function's answer is not a response object we can turn into HTTP. */
export class InvalidFunctionResponseError extends LambdaSignError {
  readonly code = 'InvalidFunctionResponse';
  readonly status = 502;
}
/** Lambda's answer carries a header that HTTP/1.1 cannot carry: nothing of it was passed on. */
export class InvalidUpstreamResponseError extends LambdaSignError {
  readonly code = 'InvalidUpstreamResponse';
  readonly status = 502;
}
export class InternalError extends LambdaSignError {
  readonly code = 'InternalError';
  readonly status = 500;
}

/** Our error, or an InternalError wrapping whatever was thrown. */
export function toLambdaSignError(err: unknown): LambdaSignError {
  if (err instanceof LambdaSignError) return err;
  return new InternalError('internal error', { cause: err });
}

export interface ErrorResponse {
  status: number;
  headers: Record<string, string | number>;
  body: string | Buffer;
}

/** The single place that renders an error for the client. */
export function errorResponse(err: unknown): ErrorResponse {
  const e = toLambdaSignError(err);
  // The function's own error JSON is the one body we pass on: it is the function's
  // output (what Lambda returned), not text from our internals.
  const body = e instanceof FunctionError ? e.payload : JSON.stringify({ error: e.code, message: e.message });
  const headers: Record<string, string | number> = {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'x-lambda-sign-error': e.code,
    'cache-control': 'no-store',
  };
  if (e.retryAfter !== undefined) headers['retry-after'] = e.retryAfter;
  if (e instanceof MethodNotAllowedError) headers['allow'] = e.allow;
  return { status: e.status, headers, body };
}
