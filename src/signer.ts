// SigV4 for Lambda through @smithy/signature-v4, with one shared, immutable signer.
// Each call signs a complete request; nothing is added to it afterwards (DESIGN §4).
import { Hash } from '@smithy/hash-node';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import { joinBody, type Body } from './body.js';
import type { CredentialSource } from './credentials.js';

export interface SignInput {
  readonly method: string;
  /** The path as sent on the wire, without query. */
  readonly path: string;
  readonly query?: Readonly<Record<string, string>>;
  /** Everything that will be sent, lower-case names, host included. */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Body;
}

export interface Signer {
  /** The headers to send: the input's plus x-amz-date, the token and authorization. */
  sign(input: SignInput): Promise<Record<string, string>>;
  /**
   * The same headers at once, when that needs no waiting (credentials in hand); undefined
   * means call sign(). Saves the hot path a promise and a turn of the microtask queue.
   */
  signNow?(input: SignInput): Record<string, string> | undefined;
  /** Milliseconds added to the local clock when signing (clock-skew correction). */
  readonly clockOffsetMs: number;
  /** Adopts the offset between the server's Date and ours, as the AWS SDKs do. */
  correctClock(serverDate: Date, now?: number): void;
}

export interface SignerOptions {
  region: string;
  service?: string;
  credentials: CredentialSource;
  now?: () => number;
}

export function createSigner(opts: SignerOptions): Signer {
  const now = opts.now ?? Date.now;
  const sigv4 = new SignatureV4({
    service: opts.service ?? 'lambda',
    region: opts.region,
    credentials: () => opts.credentials.get(),
    sha256: Hash.bind(null, 'sha256'),
    // Non-S3 services: the canonical URI encodes the (already encoded) path again.
    uriEscapePath: true,
    // Lambda does not need x-amz-content-sha256; the payload hash is still signed.
    applyChecksum: false,
  });
  let offset = 0;

  return {
    async sign(input) {
      const request = new HttpRequest({
        method: input.method,
        protocol: 'https:',
        hostname: input.headers.host,
        path: input.path,
        query: input.query as Record<string, string> | undefined,
        headers: { ...input.headers },
        body: joinBody(input.body),
      });
      const signed = await sigv4.sign(request, { signingDate: new Date(now() + offset) });
      return signed.headers as Record<string, string>;
    },
    get clockOffsetMs() {
      return offset;
    },
    correctClock(serverDate, at = now()) {
      const skew = serverDate.getTime() - at;
      if (Number.isFinite(skew)) offset = skew;
    },
  };
}
