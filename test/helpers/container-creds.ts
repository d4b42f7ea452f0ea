// A fake ECS container credentials endpoint (AWS_CONTAINER_CREDENTIALS_FULL_URI), so tests can
// watch the daemon rotate temporary credentials. Each GET mints a new key and tells the fake
// Lambda about it through the shared `keys` map.
//
// Response shape: what @aws-sdk/credential-provider-http (fromHttp) and
// @smithy/credential-provider-imds (fromContainerMetadata) both require — AccessKeyId,
// SecretAccessKey, Token and Expiration as RFC 3339 strings. The SDK accepts plain http here
// only because the host is loopback (127.0.0.0/8).
import http from 'node:http';
import { randomBytes } from 'node:crypto';

type Keys = Map<string, { secretAccessKey: string; sessionToken?: string }>;

export interface ContainerCredentialsOptions {
  keys: Keys;
  ttlMs: number;
  /** When set, requests must carry it as `Authorization` (AWS_CONTAINER_AUTHORIZATION_TOKEN). */
  authToken?: string;
}

export interface ContainerCredentials {
  url: string;
  /** Credentials handed out so far. */
  issued: number;
  /** Mutable: while true, answer 500, as an endpoint in trouble would. */
  failing: boolean;
  close(): Promise<void>;
}

// RFC 3339 without milliseconds, the form ECS itself sends.
const rfc3339 = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

export async function startContainerCredentials(opts: ContainerCredentialsOptions): Promise<ContainerCredentials> {
  const state: ContainerCredentials = { url: '', issued: 0, failing: false, close };

  const server = http.createServer((req, res) => {
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    };
    if (req.method !== 'GET') return send(405, { Code: 'MethodNotAllowed', Message: 'GET only' });
    if (opts.authToken !== undefined && req.headers.authorization !== opts.authToken) {
      return send(401, { Code: 'AccessDenied', Message: 'bad authorization token' });
    }
    if (state.failing) return send(500, { Code: 'InternalError', Message: 'fake outage' });
    // ASIA is the prefix AWS uses for temporary access key ids.
    const AccessKeyId = 'ASIA' + randomBytes(8).toString('hex').toUpperCase();
    const SecretAccessKey = randomBytes(30).toString('base64');
    const Token = randomBytes(48).toString('base64');
    opts.keys.set(AccessKeyId, { secretAccessKey: SecretAccessKey, sessionToken: Token });
    state.issued++;
    send(200, { AccessKeyId, SecretAccessKey, Token, Expiration: rfc3339(Date.now() + opts.ttlMs) });
  });

  async function close(): Promise<void> {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  state.url = `http://127.0.0.1:${(server.address() as { port: number }).port}/v2/credentials/test`;
  return state;
}
