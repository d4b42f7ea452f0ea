// A throwaway certificate authority for one benchmark run, made with openssl in a temp dir.
//
// TLS is verified on every path (DESIGN §4: never turn verification off): lambda-sign and the
// naive SDK proxy trust the CA through NODE_EXTRA_CA_CERTS, the nginx relay through
// proxy_ssl_trusted_certificate. EC P-256 keys: fast to make, and the handshake cost is the
// same for every path anyway. Same shape as test/helpers/tls.ts.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

// Leaf checks done by OpenSSL 3 (Node) and nginx: not a CA, serverAuth, the host in
// subjectAltName (the CN is ignored). nginx checks the DNS name `localhost`
// (proxy_ssl_name); Node dials 127.0.0.1 and checks the IP entry.
const SERVER_EXT = `basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
`;

// RFC 5280 §4.1.2.2: positive serials; random so that no cache mistakes two runs' certs.
const serial = () => {
  const b = randomBytes(16);
  b[0] &= 0x7f;
  return '0x' + b.toString('hex');
};

function openssl(cwd, args) {
  try {
    execFileSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000 });
  } catch (err) {
    throw new Error(`openssl ${args[0]} failed: ${err.stderr?.toString() || err.message}`);
  }
}

/** Writes ca.pem, server.pem and server.key under `dir`; returns their paths. */
export function makeCA(dir) {
  fs.mkdirSync(dir, { recursive: true });
  const ec = ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256'];
  openssl(dir, ['genpkey', ...ec, '-out', 'ca.key']);
  openssl(dir, [
    'req', '-x509', '-new', '-key', 'ca.key', '-sha256', '-days', '2', '-set_serial', serial(),
    '-subj', '/CN=lambda-sign bench CA',
    '-addext', 'basicConstraints=critical,CA:TRUE,pathlen:0',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    '-out', 'ca.pem',
  ]);
  openssl(dir, ['genpkey', ...ec, '-out', 'server.key']);
  openssl(dir, ['req', '-new', '-key', 'server.key', '-subj', '/CN=localhost', '-out', 'server.csr']);
  fs.writeFileSync(path.join(dir, 'server.ext'), SERVER_EXT);
  openssl(dir, [
    'x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-set_serial', serial(),
    '-days', '2', '-sha256', '-extfile', 'server.ext', '-out', 'server.pem',
  ]);
  return {
    caFile: path.join(dir, 'ca.pem'),
    certFile: path.join(dir, 'server.pem'),
    keyFile: path.join(dir, 'server.key'),
  };
}
