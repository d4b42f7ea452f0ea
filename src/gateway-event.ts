// Gateway mode, request side: an HTTP request from Varnish becomes the event a Lambda
// Function URL (API Gateway HTTP API, payload format 2.0) would deliver, so existing
// handlers (serverless-http, Mangum, aws-lambda-web-adapter…) work unchanged.
import { randomUUID } from 'node:crypto';
import { connectionListed, HOP_BY_HOP } from './headers.js';

export interface GatewayRequest {
  readonly method: string;
  /** Request target as received: path and query. */
  readonly url: string;
  readonly httpVersion: string;
  /** Node's rawHeaders: [name, value, name, value, …], repeats preserved. */
  readonly rawHeaders: readonly string[];
  readonly body: Buffer;
}

// Never shown to the function: our X-Lambda-* control headers and per-connection fields
// (RFC 9110 §7.6.1, including those a Connection field names). Cookies travel in
// `cookies`, as payload 2.0 specifies.

// Bodies of these types are passed as text (when valid UTF-8); anything else as base64.
const TEXT_TYPE =
  /^(?:text\/|application\/(?:json|javascript|ecmascript|xml|x-www-form-urlencoded|graphql|x-ndjson|ld\+json)\b|[a-z]+\/[^;]*\+(?:json|xml)\b)/i;

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const pad = (n: number): string => (n < 10 ? `0${n}` : String(n));

/** requestContext.time as API Gateway writes it: 21/Nov/2026:12:40:00 +0000. */
export function gatewayTime(ms: number): string {
  const d = new Date(ms);
  return (
    `${pad(d.getUTCDate())}/${MONTHS[d.getUTCMonth()]}/${d.getUTCFullYear()}:` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} +0000`
  );
}

// ignoreBOM: a leading byte-order mark is part of the body the client sent.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export function isTextBody(contentType: string | undefined, body: Buffer): string | undefined {
  if (contentType === undefined || !TEXT_TYPE.test(contentType)) return undefined;
  try {
    return utf8.decode(body);
  } catch {
    return undefined; // declared text, but not UTF-8: base64 keeps every byte
  }
}

export function buildEvent(req: GatewayRequest, now: number = Date.now(), requestId: string = randomUUID()): Record<string, unknown> {
  const q = req.url.indexOf('?');
  const rawPath = q === -1 ? req.url : req.url.slice(0, q);
  const rawQueryString = q === -1 ? '' : req.url.slice(q + 1);

  // Null-prototype maps: client-chosen names such as __proto__ or constructor are
  // ordinary keys here.
  const headers: Record<string, string> = Object.create(null);
  const cookies: string[] = [];
  let named: Set<string> | undefined;
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    if (req.rawHeaders[i]!.toLowerCase() === 'connection') {
      for (const n of connectionListed(req.rawHeaders[i + 1]) ?? []) (named ??= new Set()).add(n);
    }
  }
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i]!.toLowerCase();
    const value = req.rawHeaders[i + 1]!;
    if (name === 'cookie') {
      for (const c of value.split(';')) if (c.trim() !== '') cookies.push(c.trim());
      continue;
    }
    if (HOP_BY_HOP.has(name) || named?.has(name) || name.startsWith('x-lambda-')) continue;
    headers[name] = headers[name] === undefined ? value : `${headers[name]},${value}`;
  }

  const event: Record<string, unknown> = {
    version: '2.0',
    routeKey: '$default',
    rawPath,
    rawQueryString,
  };
  if (cookies.length > 0) event.cookies = cookies;
  event.headers = headers;
  if (rawQueryString !== '') {
    const params: Record<string, string> = Object.create(null);
    for (const [k, v] of new URLSearchParams(rawQueryString)) params[k] = params[k] === undefined ? v : `${params[k]},${v}`;
    event.queryStringParameters = params;
  }
  const host = headers['host'] ?? '';
  const hostname = host.replace(/:\d+$/, '');
  const xff = headers['x-forwarded-for'];
  event.requestContext = {
    accountId: 'anonymous',
    apiId: 'lambda-sign',
    domainName: hostname,
    domainPrefix: hostname.split('.')[0] ?? '',
    http: {
      method: req.method,
      path: rawPath,
      protocol: `HTTP/${req.httpVersion}`,
      // The last hop is the address Varnish appended itself; earlier ones are whatever the
      // client claimed. A Unix socket has no peer address of its own.
      sourceIp: xff === undefined ? '' : xff.slice(xff.lastIndexOf(',') + 1).trim(),
      userAgent: headers['user-agent'] ?? '',
    },
    requestId,
    routeKey: '$default',
    stage: '$default',
    time: gatewayTime(now),
    timeEpoch: now,
  };
  if (req.body.length > 0) {
    const text = isTextBody(headers['content-type'], req.body);
    event.body = text ?? req.body.toString('base64');
    event.isBase64Encoded = text === undefined;
  } else event.isBase64Encoded = false;
  return event;
}
