// Gateway mode, response side: Lambda's Invoke answer becomes the HTTP response the
// function described, as a Function URL would return it.
import type { OutgoingHttpHeaders } from 'node:http';
import { FunctionError, InvalidFunctionResponseError } from './errors.js';
import { HOP_BY_HOP } from './headers.js';
import { TOKEN } from './http1/parse.js';

export interface DecodedResponse {
  status: number;
  headers: OutgoingHttpHeaders;
  body: Buffer;
}

// Framing is ours to decide; a function cannot set per-connection fields (RFC 9110 §7.6.1).
const isForbidden = (name: string): boolean => name === 'content-length' || HOP_BY_HOP.has(name);
// RFC 9110 §5.5: field values are visible ASCII, space, tab and obs-text; no controls.
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/;
const BEYOND_LATIN1 = /[^\x00-\xff]/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * `invokeStatus` and `functionError` come from Lambda's Invoke answer (200 and
 * X-Amz-Function-Error); `payload` is its complete body.
 */
export function decodeResponse(payload: Buffer, functionError: string | undefined, requestId?: string): DecodedResponse {
  if (functionError !== undefined) throw new FunctionError(`the function failed (${functionError})`, payload);
  let parsed: unknown;
  try {
    parsed = JSON.parse(payload.toString('utf8'));
  } catch {
    throw new InvalidFunctionResponseError('the function answered with something that is not JSON');
  }
  const extra: OutgoingHttpHeaders = requestId === undefined ? {} : { 'x-amzn-requestid': requestId };
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed) || !('statusCode' in parsed)) {
    // Function URLs treat a JSON answer without statusCode as a 200 JSON body, verbatim.
    return { status: 200, headers: { 'content-type': 'application/json', ...extra }, body: payload };
  }
  const r = parsed as Record<string, unknown>;
  const status = r.statusCode;
  // 1xx are interim responses (RFC 9110 §15.2): Varnish would wait for a final one forever.
  if (typeof status !== 'number' || !Number.isInteger(status) || status < 200 || status > 599) {
    throw new InvalidFunctionResponseError('statusCode must be an integer from 200 to 599');
  }
  const headers: OutgoingHttpHeaders = Object.create(null);
  const add = (name: string, value: unknown): void => {
    const key = name.toLowerCase();
    if (!TOKEN.test(key)) throw new InvalidFunctionResponseError(`invalid header name ${JSON.stringify(name)}`);
    if (isForbidden(key)) return;
    let text = typeof value === 'string' ? value : typeof value === 'number' || typeof value === 'boolean' ? String(value) : undefined;
    if (text === undefined || CONTROL.test(text)) throw new InvalidFunctionResponseError(`invalid value for header ${name}`);
    // Node sends header strings as Latin-1; send UTF-8 text as its UTF-8 bytes instead of failing.
    if (BEYOND_LATIN1.test(text)) text = Buffer.from(text, 'utf8').toString('latin1');
    const prev = headers[key];
    headers[key] = prev === undefined ? text : key === 'set-cookie' ? [...(Array.isArray(prev) ? prev : [String(prev)]), text] : `${prev},${text}`;
  };
  if (r.headers !== undefined && r.headers !== null) {
    if (typeof r.headers !== 'object' || Array.isArray(r.headers)) throw new InvalidFunctionResponseError('headers must be an object');
    for (const [k, v] of Object.entries(r.headers)) add(k, v);
  }
  if (r.multiValueHeaders !== undefined && r.multiValueHeaders !== null) {
    if (typeof r.multiValueHeaders !== 'object' || Array.isArray(r.multiValueHeaders)) {
      throw new InvalidFunctionResponseError('multiValueHeaders must be an object of arrays');
    }
    for (const [k, vs] of Object.entries(r.multiValueHeaders)) {
      if (!Array.isArray(vs)) throw new InvalidFunctionResponseError('multiValueHeaders must be an object of arrays');
      for (const v of vs) add(k, v);
    }
  }
  if (r.cookies !== undefined && r.cookies !== null) {
    if (!Array.isArray(r.cookies)) throw new InvalidFunctionResponseError('cookies must be an array of strings');
    for (const c of r.cookies) {
      if (typeof c !== 'string') throw new InvalidFunctionResponseError('cookies must be an array of strings');
      add('set-cookie', c);
    }
  }
  let body: Buffer;
  if (r.body === undefined || r.body === null) body = Buffer.alloc(0);
  else if (typeof r.body !== 'string') throw new InvalidFunctionResponseError('body must be a string');
  else if (r.isBase64Encoded === true) {
    const compact = r.body.replace(/\s+/g, '');
    if (compact.length % 4 === 1 || !BASE64.test(compact)) throw new InvalidFunctionResponseError('body is not valid base64');
    body = Buffer.from(compact, 'base64');
  } else body = Buffer.from(r.body, 'utf8');
  if (r.isBase64Encoded !== undefined && r.isBase64Encoded !== null && typeof r.isBase64Encoded !== 'boolean') {
    throw new InvalidFunctionResponseError('isBase64Encoded must be a boolean');
  }
  Object.assign(headers, extra);
  return { status, headers, body };
}
