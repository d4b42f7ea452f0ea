// A throwaway certificate authority for one test run.
//
// The daemon must never turn TLS verification off, in tests either (DESIGN §4), so the fake
// Lambda presents a certificate from a CA made here, and clients trust it by passing `ca`
// (or NODE_EXTRA_CA_CERTS=caFile for a child process). EC P-256 keys keep this under ~100 ms.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface TestCA {
  dir: string;
  /** PEM file of the CA certificate, for NODE_EXTRA_CA_CERTS or --ca-file. */
  caFile: string;
  /** The server certificate and key as files, for a child process that wants paths. */
  certFile: string;
  keyFile: string;
  ca: string;
  cert: string;
  key: string;
  cleanup(): Promise<void>;
}

// Server certificate extensions. Node (OpenSSL 3) checks the chain like a browser would:
// the leaf must not be a CA, must allow serverAuth, and must name the host in subjectAltName
// (the CN is ignored). IP:::1 lets tests dial [::1] too.
const SERVER_EXT = `basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
`;

async function openssl(cwd: string, args: string[]): Promise<void> {
  try {
    await run('openssl', args, { cwd });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`openssl ${args[0]} failed: ${e.stderr || e.message}`);
  }
}

// A random positive serial: two certificates with the same issuer and serial would be
// treated as the same certificate by anything that caches them.
function serial(): string {
  const bytes = randomBytes(16);
  bytes[0] = bytes[0]! & 0x7f; // positive, as RFC 5280 §4.1.2.2 requires
  return '0x' + bytes.toString('hex');
}

export async function makeTestCA(): Promise<TestCA> {
  const dir = await mkdtemp(join(tmpdir(), 'lambda-sign-ca-'));
  const cleanup = () => rm(dir, { recursive: true, force: true });
  try {
    const ec = ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256'];
    await openssl(dir, ['genpkey', ...ec, '-out', 'ca.key']);
    await openssl(dir, [
      'req', '-x509', '-new', '-key', 'ca.key', '-sha256', '-days', '2', '-set_serial', serial(),
      '-subj', '/CN=lambda-sign test CA',
      '-addext', 'basicConstraints=critical,CA:TRUE,pathlen:0',
      '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
      '-out', 'ca.pem',
    ]);
    await openssl(dir, ['genpkey', ...ec, '-out', 'server.key']);
    await openssl(dir, ['req', '-new', '-key', 'server.key', '-subj', '/CN=localhost', '-out', 'server.csr']);
    await writeFile(join(dir, 'server.ext'), SERVER_EXT);
    await openssl(dir, [
      'x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-set_serial', serial(),
      '-days', '2', '-sha256', '-extfile', 'server.ext', '-out', 'server.pem',
    ]);
    const [ca, cert, key] = await Promise.all(
      ['ca.pem', 'server.pem', 'server.key'].map((f) => readFile(join(dir, f), 'utf8')),
    );
    return {
      dir, caFile: join(dir, 'ca.pem'), certFile: join(dir, 'server.pem'), keyFile: join(dir, 'server.key'),
      ca: ca!, cert: cert!, key: key!, cleanup,
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}
