// Which headers cross the daemon, in each direction.
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { InvalidRequestError } from './errors.js';

// DESIGN §2: only what Invoke understands goes upstream. Everything Varnish or the
// client added (x-varnish, via, x-forwarded-for, authorization, x-amz-date, cookies…)
// is dropped, so a client can never smuggle a signature, token or date.
const INBOUND_ALLOWED = ['content-type', 'x-amz-invocation-type', 'x-amz-log-type', 'x-amz-client-context'] as const;

// Bytes past 0x7E arrive as latin1 characters, leave as latin1 bytes (HPACK), and would be
// signed as UTF-8: Lambda would refuse the signature (403) of a request a client made up.
const NOT_ASCII = /[^\t\x20-\x7e]/;

export function outboundHeaders(inbound: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of INBOUND_ALLOWED) {
    const value = inbound[name];
    if (typeof value !== 'string') continue;
    if (NOT_ASCII.test(value)) throw new InvalidRequestError(`${name} must be printable ASCII`);
    out[name] = value;
  }
  return out;
}

// RFC 9110 §7.6.1 connection-specific fields, plus the obsolete ones proxies still send.
// content-length is end-to-end and kept: Varnish can then skip chunked framing.
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
]);

/** Header names a Connection field lists: hop-by-hop for this one message. */
export function connectionListed(value: unknown): Set<string> | undefined {
  if (typeof value !== 'string') return undefined;
  return new Set(value.toLowerCase().split(',').map((v) => v.trim()).filter((v) => v !== ''));
}

/**
 * Lambda's answer as Varnish should see it: pseudo-headers (RFC 9113 §8.3) and
 * hop-by-hop fields removed, including any named by Connection (HTTP/1.1 upstreams).
 */
export function responseHeaders(upstream: IncomingHttpHeaders | Record<string, unknown>): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  const named = connectionListed(upstream['connection']);
  for (const name in upstream) {
    if (name.charCodeAt(0) === 58 /* ':' */ || HOP_BY_HOP.has(name) || named?.has(name)) continue;
    const value = upstream[name];
    if (value !== undefined) out[name] = value as string | string[] | number;
  }
  return out;
}
