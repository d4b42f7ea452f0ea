// A SigV4 signer specialised for the requests this daemon sends, for the hot path.
//
// @smithy/signature-v4 stays the signer of record (`--signer smithy`); this one does the
// same computation with less around it: no request cloning, no async hops per hash, the
// signing key and credential scope cached per credentials and day. It is proven to give
// byte-identical headers to smithy on AWS's SigV4 test vectors and on randomised Lambda
// requests (test/unit/fast-signer.test.ts), and anything outside the shapes it knows
// (non-lowercase names, unsignable headers) is handed to smithy.
import crypto, { createHash, createHmac } from 'node:crypto';
import type { AwsCredentialIdentity } from '@smithy/types';
import type { CredentialSource } from './credentials.js';
import { createSigner, type SignInput, type Signer, type SignerOptions } from './signer.js';

// RFC 3986 unreserved characters are kept; everything else is %XX, upper-case hex.
// encodeURIComponent also keeps !'()*, which SigV4 (like smithy's escapeUri) encodes.
const escape = (s: string): string =>
  encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

/** Smithy's canonical URI for non-S3 services: normalised segments, each encoded again. */
export function canonicalPath(path: string): string {
  const segments: string[] = [];
  for (const seg of path.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') segments.pop();
    else segments.push(seg);
  }
  const joined = (path.startsWith('/') ? '/' : '') + segments.join('/') + (segments.length > 0 && path.endsWith('/') ? '/' : '');
  return escape(joined).replace(/%2F/g, '/');
}

function canonicalQuery(query: Readonly<Record<string, string>> | undefined): string {
  if (query === undefined) return '';
  const pairs: string[] = [];
  for (const key of Object.keys(query)) pairs.push(`${escape(key)}=${escape(query[key]!)}`);
  // Keys are unique, so sorting the encoded pairs sorts by encoded key, as smithy does.
  return pairs.sort().join('&');
}

// Headers smithy never signs, and the patterns it skips; a request carrying any of them
// is signed by smithy itself so the two can never differ.
const UNSIGNABLE = /^(?:authorization|cache-control|connection|expect|from|keep-alive|max-forwards|pragma|referer|te|trailer|transfer-encoding|upgrade|user-agent|x-amzn-trace-id|proxy-.*|sec-.*)$/;
const LOWER_TOKEN = /^[a-z0-9!#$%&'*+.^_`|~-]+$/;

// x-amz-date has one-second resolution: format it once per second, not per request.
let dateCache = { second: -1, text: '' };
function amzDate(ms: number): string {
  const second = Math.floor(ms / 1000);
  if (second !== dateCache.second) {
    // 2026-11-21T12:40:00.000Z → 20261121T124000Z
    const iso = new Date(second * 1000).toISOString();
    dateCache = { second, text: iso.slice(0, 4) + iso.slice(5, 7) + iso.slice(8, 13) + iso.slice(14, 16) + iso.slice(17, 19) + 'Z' };
  }
  return dateCache.text;
}

// crypto.hash (Node 20.12+) hashes in one call, without a Hash object per digest; at
// 10,000+ requests per second those objects showed in allocation profiles.
const oneShot = typeof crypto.hash === 'function';
const sha256Hex: (data: string | Buffer) => string = oneShot
  ? (data) => crypto.hash('sha256', data, 'hex')
  : (data) => createHash('sha256').update(data).digest('hex');

function sha256HexParts(parts: readonly Buffer[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('hex');
}

/**
 * HMAC-SHA256 with a fixed key, as RFC 2104 defines it, from two one-shot hashes:
 * H((K ^ opad) || H((K ^ ipad) || m)). An Hmac object per signature (a stream with a native
 * handle) was the signer's largest cost after the hashing itself. The padded keys are
 * computed once per signing key; the scratch buffers are filled and hashed synchronously.
 */
export function fixedKeyHmac(key: Buffer): (message: string) => string {
  if (!oneShot || key.length > 64) return (message) => createHmac('sha256', key).update(message).digest('hex');
  // The key is a SHA-256 output (32 bytes), shorter than the 64-byte block: zero-padded.
  const inner = Buffer.alloc(64 + 512);
  const outer = Buffer.alloc(64 + 32);
  for (let i = 0; i < 64; i++) {
    const k = i < key.length ? key[i]! : 0;
    inner[i] = k ^ 0x36;
    outer[i] = k ^ 0x5c;
  }
  return (message) => {
    const len = Buffer.byteLength(message);
    const data = len <= 512 ? inner : Buffer.concat([inner.subarray(0, 64), Buffer.alloc(len)]);
    data.write(message, 64);
    crypto.hash('sha256', data.subarray(0, 64 + len), 'buffer').copy(outer, 64);
    return crypto.hash('sha256', outer, 'hex');
  };
}

/**
 * A header value as smithy canonicalises it: CR and LF become spaces, runs of spaces and
 * tabs one space, then one leading and one trailing space go. Other whitespace (NBSP, …)
 * stays. Most values need none of it, so they skip the three regexes.
 */
const NEEDS_CANONICAL = /[\t\r\n]|  |^ | $/;
function canonicalValue(v: string): string {
  if (!NEEDS_CANONICAL.test(v)) return v;
  return v.replace(/[\r\n]/g, ' ').replace(/[ \t]+/g, ' ').replace(/^ | $/g, '');
}

/** Object.keys sorted by code unit, as SigV4 wants; insertion sort, as a request has a handful. */
function sortedKeys(o: Record<string, string>): string[] {
  const keys = Object.keys(o);
  for (let i = 1; i < keys.length; i++) {
    const k = keys[i]!;
    let j = i - 1;
    while (j >= 0 && keys[j]! > k) {
      keys[j + 1] = keys[j]!;
      j--;
    }
    keys[j + 1] = k;
  }
  return keys;
}

// Header names already seen to fit the fast path (checked with two regexes otherwise).
const fastNames = new Set<string>();
const fitsFastPath = (name: string): boolean => {
  if (fastNames.has(name)) return true;
  if (!LOWER_TOKEN.test(name) || UNSIGNABLE.test(name) || name === 'x-amz-date' || name === 'x-amz-security-token') return false;
  if (fastNames.size < 256) fastNames.add(name);
  return true;
};

export function createFastSigner(opts: SignerOptions): Signer {
  const service = opts.service ?? 'lambda';
  const region = opts.region;
  const now = opts.now ?? Date.now;
  const smithy = createSigner(opts);
  const credentials: CredentialSource = opts.credentials;
  let keyCache: { creds: AwsCredentialIdentity; day: string; hmac: (message: string) => string; scope: string; credential: string } | undefined;
  const pathCache = new Map<string, string>();

  const signingKey = (creds: AwsCredentialIdentity, day: string) => {
    if (keyCache !== undefined && keyCache.creds === creds && keyCache.day === day) return keyCache;
    const kDate = createHmac('sha256', `AWS4${creds.secretAccessKey}`).update(day).digest();
    const kRegion = createHmac('sha256', kDate).update(region).digest();
    const kService = createHmac('sha256', kRegion).update(service).digest();
    const key = createHmac('sha256', kService).update('aws4_request').digest();
    const scope = `${day}/${region}/${service}/aws4_request`;
    keyCache = { creds, day, hmac: fixedKeyHmac(key), scope, credential: `${creds.accessKeyId}/${scope}` };
    return keyCache;
  };

  const canonical = (path: string): string => {
    let c = pathCache.get(path);
    if (c === undefined) {
      c = canonicalPath(path);
      if (pathCache.size > 10_000) pathCache.clear(); // bounded: paths come from clients
      pathCache.set(path, c);
    }
    return c;
  };

  let offset = 0;
  const fits = (input: SignInput): boolean => {
    for (const name in input.headers) if (!fitsFastPath(name)) return false;
    return true;
  };

  const signWith = (creds: AwsCredentialIdentity, input: SignInput): Record<string, string> => {
    const longDate = amzDate(now() + offset);
    const k = signingKey(creds, longDate.slice(0, 8));

    const headers: Record<string, string> = { ...input.headers, 'x-amz-date': longDate };
    if (creds.sessionToken) headers['x-amz-security-token'] = creds.sessionToken;
    const names = sortedKeys(headers);
    let canonicalHeaders = '';
    let signedHeaders = '';
    for (let i = 0; i < names.length; i++) {
      const n = names[i]!;
      canonicalHeaders += `${n}:${canonicalValue(headers[n]!)}\n`;
      signedHeaders += i === 0 ? n : `;${n}`;
    }
    const payloadHash = Buffer.isBuffer(input.body) ? sha256Hex(input.body) : sha256HexParts(input.body);
    const request =
      `${input.method}\n${canonical(input.path)}\n${canonicalQuery(input.query)}\n` +
      `${canonicalHeaders}\n${signedHeaders}\n${payloadHash}`;
    const stringToSign = `AWS4-HMAC-SHA256\n${longDate}\n${k.scope}\n${sha256Hex(request)}`;
    const signature = k.hmac(stringToSign);
    headers.authorization = `AWS4-HMAC-SHA256 Credential=${k.credential}, SignedHeaders=${signedHeaders}, Signature=${signature}`;
    return headers;
  };

  return {
    async sign(input: SignInput) {
      if (!fits(input)) return smithy.sign(input);
      return signWith(await credentials.get(), input);
    },
    signNow(input: SignInput) {
      if (!fits(input)) return undefined;
      const creds = credentials.peek?.();
      return creds === undefined ? undefined : signWith(creds, input);
    },
    get clockOffsetMs() {
      return offset;
    },
    correctClock(serverDate, at = now()) {
      const skew = serverDate.getTime() - at;
      if (Number.isFinite(skew)) {
        offset = skew;
        smithy.correctClock(serverDate, at);
      }
    },
  };
}
