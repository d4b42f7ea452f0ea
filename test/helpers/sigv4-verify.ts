// An independent AWS Signature Version 4 verifier, for the fake Lambda.
//
// It is written from the specification, not from @smithy/signature-v4, so that a bug in the
// signer the daemon uses cannot hide itself by being repeated here. Every failure names the
// step that failed; nothing throws on bad input, because a test server must answer 403, not crash.
// Spec: https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

export interface VerifyInput {
  method: string;
  /** Raw request target as on the wire, with query string. */
  path: string;
  /** Lower-case names; for HTTP/2 pass ':authority' or 'host'. */
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  service: string;
  region: string;
  lookupKey(accessKeyId: string): { secretAccessKey: string; sessionToken?: string } | undefined;
  now?: Date;
  /** Default true: the non-S3 rule (normalize, then encode the path as it is on the wire). */
  doubleEncodePath?: boolean;
}

export type VerifyResult =
  | { ok: true; accessKeyId: string; signedHeaders: string[] }
  | { ok: false; reason: string; canonicalRequest?: string; stringToSign?: string };

const ALGORITHM = 'AWS4-HMAC-SHA256';
// AWS rejects a request whose x-amz-date is more than 15 minutes from its own clock.
const MAX_SKEW_MS = 15 * 60 * 1000;

const sha256 = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');
const hmac = (key: string | Buffer, data: string) => createHmac('sha256', key).update(data, 'utf8').digest();

class Reject extends Error {}
const reject = (reason: string): never => {
  throw new Reject(reason);
};

/** RFC 3986 §2.3: everything but unreserved characters is percent-encoded, upper-case hex. */
export function uriEncode(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());
}

function decode(s: string, what: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return reject(`${what}: malformed percent-encoding in '${s}'`);
  }
}

/**
 * Canonical URI. Non-S3 services (doubleEncode) remove '.', '..' and empty segments, then encode
 * each segment exactly as it appears on the wire, so '%3A' becomes '%253A'. S3 does neither:
 * it decodes each segment and encodes it once.
 */
export function canonicalUri(rawPath: string, doubleEncode: boolean): string {
  if (!rawPath.startsWith('/')) reject(`path: request target '${rawPath}' does not start with '/'`);
  if (!doubleEncode) return rawPath.split('/').map((seg) => uriEncode(decode(seg, 'path'))).join('/');
  const segments: string[] = [];
  for (const seg of rawPath.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') segments.pop();
    else segments.push(uriEncode(seg));
  }
  const trailing = segments.length > 0 && rawPath.endsWith('/') ? '/' : '';
  return '/' + segments.join('/') + trailing;
}

/**
 * Canonical query: each name and value decoded, re-encoded, then sorted by name and value.
 * '+' is kept as a literal plus (RFC 3986), not read as a space (that is HTML forms).
 */
export function canonicalQuery(rawQuery: string): string {
  const pairs: [string, string][] = [];
  for (const piece of rawQuery.split('&')) {
    if (piece === '') continue;
    const eq = piece.indexOf('=');
    const name = eq < 0 ? piece : piece.slice(0, eq);
    const value = eq < 0 ? '' : piece.slice(eq + 1);
    pairs.push([uriEncode(decode(name, 'query')), uriEncode(decode(value, 'query'))]);
  }
  const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  pairs.sort((a, b) => cmp(a[0], b[0]) || cmp(a[1], b[1]));
  return pairs.map(([n, v]) => `${n}=${v}`).join('&');
}

/**
 * Trim, collapse inner runs of whitespace, join repeated headers with ',' (no space).
 * Whitespace here is ASCII (space, tab, CR, LF), as in AWS's description of SigV4 and its
 * SDKs: a no-break space is part of the value, not whitespace (JavaScript's trim and \s
 * would count it).
 */
export function canonicalHeaderValue(value: string | string[]): string {
  const values = Array.isArray(value) ? value : [value];
  return values.map((v) => v.replace(/[ \t\r\n]+/g, ' ').replace(/^ | $/g, '')).join(',');
}

export interface CanonicalParts {
  method: string;
  path: string;
  headers: Record<string, string | string[] | undefined>;
  signedHeaders: string[];
  payloadHash: string;
  doubleEncodePath?: boolean;
}

/** The canonical request, as step 1 of the spec builds it. Exported for the test vectors. */
export function buildCanonicalRequest(p: CanonicalParts): string {
  const q = p.path.indexOf('?');
  const rawPath = q < 0 ? p.path : p.path.slice(0, q);
  const rawQuery = q < 0 ? '' : p.path.slice(q + 1);
  const lines = p.signedHeaders.map((name) => {
    const v = headerValue(p.headers, name);
    if (v === undefined) return reject(`signed header '${name}' is absent from the request`);
    return `${name}:${canonicalHeaderValue(v)}\n`;
  });
  return [
    p.method.toUpperCase(),
    canonicalUri(rawPath, p.doubleEncodePath ?? true),
    canonicalQuery(rawQuery),
    lines.join(''),
    p.signedHeaders.join(';'),
    p.payloadHash,
  ].join('\n');
}

// Host is ':authority' on HTTP/2 (RFC 9113 §8.3.1); 'host' wins when both are present.
function headerValue(headers: VerifyInput['headers'], name: string): string | string[] | undefined {
  const v = headers[name] ?? (name === 'host' ? headers[':authority'] : undefined);
  return typeof v === 'string' || (Array.isArray(v) && v.every((x) => typeof x === 'string')) ? v : undefined;
}

function single(headers: VerifyInput['headers'], name: string): string | undefined {
  const v = headerValue(headers, name);
  if (Array.isArray(v)) return v.length === 1 ? v[0] : reject(`header '${name}' appears ${v.length} times`);
  return v;
}

function parseAuthorization(value: string | undefined) {
  if (value === undefined) return reject('authorization: header missing');
  const space = value.indexOf(' ');
  const algorithm = space < 0 ? value : value.slice(0, space);
  if (algorithm !== ALGORITHM) reject(`authorization: algorithm '${algorithm}' is not ${ALGORITHM}`);
  const fields = new Map<string, string>();
  for (const part of value.slice(space + 1).split(',')) {
    const eq = part.indexOf('=');
    if (eq > 0) fields.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  const get = (k: string) => fields.get(k) ?? reject(`authorization: no ${k}= field`);
  return { credential: get('Credential'), signedHeaders: get('SignedHeaders'), signature: get('Signature') };
}

function parseAmzDate(value: string | undefined, now: Date): string {
  if (value === undefined) return reject('x-amz-date: header missing');
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(value);
  if (!m) return reject(`x-amz-date: '${value}' is not YYYYMMDDTHHMMSSZ`);
  const t = Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!);
  const skew = t - now.getTime();
  if (Math.abs(skew) > MAX_SKEW_MS) {
    const dir = skew < 0 ? 'earlier' : 'later';
    reject(`x-amz-date: ${value} is ${Math.round(Math.abs(skew) / 1000)}s ${dir} than the server clock ` +
      `${now.toISOString()} (limit 15 minutes): signature expired`);
  }
  return value;
}

function verify(input: VerifyInput): VerifyResult {
  const { headers } = input;
  const auth = parseAuthorization(single(headers, 'authorization'));

  const scope = auth.credential.split('/');
  if (scope.length !== 5) reject(`credential: '${auth.credential}' is not AKID/DATE/REGION/SERVICE/aws4_request`);
  const [accessKeyId, day, region, service, terminator] = scope as [string, string, string, string, string];
  if (region !== input.region) reject(`credential scope: region '${region}', expected '${input.region}'`);
  if (service !== input.service) reject(`credential scope: service '${service}', expected '${input.service}'`);
  if (terminator !== 'aws4_request') reject(`credential scope: terminator '${terminator}', expected 'aws4_request'`);

  const amzDate = parseAmzDate(single(headers, 'x-amz-date'), input.now ?? new Date());
  if (day !== amzDate.slice(0, 8)) reject(`credential scope: date ${day} is not the day of x-amz-date ${amzDate}`);

  const signed = auth.signedHeaders.split(';');
  const sorted = [...new Set(signed.map((h) => h.toLowerCase()))].sort();
  if (signed.join(';') !== sorted.join(';')) {
    reject(`signed headers: '${auth.signedHeaders}' is not a sorted, lower-case, duplicate-free list`);
  }
  for (const required of ['host', 'x-amz-date']) {
    if (!signed.includes(required)) reject(`signed headers: '${required}' is not signed`);
  }

  const key = input.lookupKey(accessKeyId);
  if (!key) return reject(`credential: unknown access key id '${accessKeyId}'`);
  const token = single(headers, 'x-amz-security-token');
  if (key.sessionToken !== undefined) {
    if (token === undefined) reject('x-amz-security-token: missing, and the key is temporary');
    if (token !== key.sessionToken) reject("x-amz-security-token: does not match the key's session token");
    if (!signed.includes('x-amz-security-token')) reject('x-amz-security-token: present but not signed');
  } else if (token !== undefined) {
    reject('x-amz-security-token: sent with a key that has no session token');
  }

  const payloadHash = sha256(input.body);
  const declared = single(headers, 'x-amz-content-sha256');
  if (declared !== undefined && declared !== payloadHash) {
    reject(`x-amz-content-sha256: '${declared}' is not the SHA-256 of the ${input.body.length}-byte body`);
  }

  if (!/^[0-9a-f]{64}$/.test(auth.signature)) reject('authorization: Signature is not 64 lower-case hex digits');
  const canonicalRequest = buildCanonicalRequest({
    method: input.method, path: input.path, headers, signedHeaders: signed, payloadHash,
    doubleEncodePath: input.doubleEncodePath,
  });
  const credentialScope = `${day}/${region}/${service}/aws4_request`;
  const stringToSign = [ALGORITHM, amzDate, credentialScope, sha256(canonicalRequest)].join('\n');
  const kDate = hmac('AWS4' + key.secretAccessKey, day);
  const kSigning = hmac(hmac(hmac(kDate, region), service), 'aws4_request');
  const expected = createHmac('sha256', kSigning).update(stringToSign, 'utf8').digest();
  if (!timingSafeEqual(expected, Buffer.from(auth.signature, 'hex'))) {
    return { ok: false, reason: 'signature: mismatch', canonicalRequest, stringToSign };
  }
  return { ok: true, accessKeyId, signedHeaders: signed };
}

export function verifySigV4(input: VerifyInput): VerifyResult {
  try {
    return verify(input);
  } catch (err) {
    if (err instanceof Reject) return { ok: false, reason: err.message };
    return { ok: false, reason: `verifier: unexpected input (${(err as Error)?.message ?? String(err)})` };
  }
}
