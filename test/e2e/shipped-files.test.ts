// The files users install: every vcl/*.vcl compiles with `varnishd -C`, the systemd units
// pass `systemd-analyze verify` and carry the settings the README promises, and the example
// environment file starts the daemon.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DEFAULTS } from '../../src/config.ts';
import { isolatedEnv, spawnDaemon, type DaemonProcess } from '../helpers/process.ts';
import { within } from '../helpers/e2e.ts';
import { compileVcl, VCL_DIR, which } from '../helpers/varnish.ts';

const run = promisify(execFile);
const SYSTEMD_DIR = fileURLToPath(new URL('../../systemd', import.meta.url));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lambda-sign-shipped-'));
const procs: DaemonProcess[] = [];

test.after(async () => {
  for (const p of procs) await p.cleanup();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const vclFiles = fs.readdirSync(VCL_DIR).filter((f) => f.endsWith('.vcl'));

// Every shipped example; each is exercised end to end (varnish, url-mapping, gateway-* tests).
const SHIPPED = ['lambda-sign.vcl', 'url-mapping.vcl', 'site.vcl', 'render.vcl'];

test(`vcl/ ships ${SHIPPED.join(', ')}`, () => {
  for (const f of SHIPPED) assert.ok(vclFiles.includes(f), f);
});

for (const file of vclFiles) {
  test(`vcl/${file} compiles with varnishd -C`, async () => {
    const r = await compileVcl(path.join(VCL_DIR, file));
    assert.ok(r.ok, r.messages);
    // The one expected warning: /run/lambda-sign.sock does not exist on a build machine.
    const warnings = r.messages.split('(That was just a warning)').map((w) => w.trim()).filter(Boolean);
    for (const w of warnings) assert.match(w, /Backend path: Cannot stat/, w);
  });

}

for (const file of SHIPPED) {
  test(`vcl/${file} talks to /run/lambda-sign.sock with long timeouts and a /healthz probe`, () => {
    const vcl = fs.readFileSync(path.join(VCL_DIR, file), 'utf8');
    assert.match(vcl, /\.path = "\/run\/lambda-sign\.sock";/);
    assert.match(vcl, /\.url = "\/healthz";/);
    const fbt = /\.first_byte_timeout = (\d+)s;/.exec(vcl);
    assert.ok(fbt, 'first_byte_timeout set');
    assert.ok(Number(fbt![1]) > Number(DEFAULTS.timeout), "first_byte_timeout is above lambda-sign's --timeout default");
    // Invocations with a request body are passed (streamed, never stored); render.vcl has none.
    if (file !== 'render.vcl') assert.match(vcl, /return \(pass\);/);
    for (const h of ['X-Lambda-Function', 'X-Lambda-Payload', 'X-Lambda-Response']) {
      assert.match(vcl, `unset req.http.${h};`, `removes a client's ${h}`);
    }
  });
}

/**
 * The blocks of VCL source enclosing each `set …http.X-Lambda-{Function,Payload,Response}`,
 * outermost first, each as the text before its `{` (`sub vcl_backend_fetch`, `if (…)`).
 * Comments and strings are skipped, so a header named in a comment or a string is not counted.
 */
function gatewaySets(src: string): { statement: string; enclosing: string[] }[] {
  const out: { statement: string; enclosing: string[] }[] = [];
  const stack: string[] = [];
  let code = ''; // the current statement or block header, strings blanked
  for (let i = 0; i < src.length; i++) {
    const c = src[i]!;
    if (c === '#' || (c === '/' && src[i + 1] === '/')) {
      i = src.indexOf('\n', i);
      if (i === -1) break;
    } else if (c === '{' && src[i + 1] === '"') {
      i = src.indexOf('"}', i + 2) + 1;
      if (i === 0) throw new Error('unterminated {"…"} string');
      code += '""';
    } else if (c === '"') {
      i = src.indexOf('"', i + 1);
      if (i === -1) throw new Error('unterminated "…" string');
      code += '""';
    } else if (c === '{') {
      stack.push(code.trim());
      code = '';
    } else if (c === '}') {
      stack.pop();
      code = '';
    } else if (c === ';') {
      const m = /^set\s+(\w+)\.http\.(X-Lambda-(?:Function|Payload|Response))\b/i.exec(code.trim());
      if (m) out.push({ statement: code.trim().replace(/\s+/g, ' '), enclosing: [...stack] });
      code = '';
    } else code += c;
  }
  return out;
}

for (const file of SHIPPED) {
  test(`vcl/${file} sets X-Lambda-* only on requests to lambda_sign, in vcl_backend_fetch`, () => {
    for (const { statement, enclosing } of gatewaySets(fs.readFileSync(path.join(VCL_DIR, file), 'utf8'))) {
      assert.match(statement, /^set bereq\.http\./i, statement);
      assert.is(enclosing[0], 'sub vcl_backend_fetch', statement);
      assert.ok(enclosing.some((h) => /^if \(bereq\.backend == lambda_sign\b/.test(h)), `${statement}: not under if (bereq.backend == lambda_sign …)`);
    }
  });
}

test('the X-Lambda-* check finds sets, and those outside vcl_backend_fetch (it can fail)', () => {
  const sets = gatewaySets(
    'sub vcl_recv { # set req.http.X-Lambda-Function = "c";\n set req.http.X-Lambda-Function = "a"; }\n' +
      'sub vcl_backend_fetch { if (bereq.backend == lambda_sign) { set bereq.http.X-Lambda-Payload = {"{"u":""} + "}"; } }',
  );
  assert.equal(sets, [
    { statement: 'set req.http.X-Lambda-Function = ""', enclosing: ['sub vcl_recv'] },
    { statement: 'set bereq.http.X-Lambda-Payload = "" + ""', enclosing: ['sub vcl_backend_fetch', 'if (bereq.backend == lambda_sign)'] },
  ]);
});

test('a VCL that does not compile is reported (the check can fail)', async () => {
  const bad = path.join(tmp, 'bad.vcl');
  fs.writeFileSync(bad, 'vcl 4.1;\nbackend b { .path = "/run/x.sock"; }\nsub vcl_recv { set req.nonsense = 1; }\n');
  const r = await compileVcl(bad);
  assert.not.ok(r.ok);
  assert.match(r.messages, /nonsense/, r.messages);
});

/** A unit file as key → values (repeated keys collect), comments dropped. */
function unit(name: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const raw of fs.readFileSync(path.join(SYSTEMD_DIR, name), 'utf8').split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith('[')) continue;
    const i = line.indexOf('=');
    const [k, v] = [line.slice(0, i), line.slice(i + 1)];
    out.set(k, [...(out.get(k) ?? []), v]);
  }
  return out;
}
const one = (u: Map<string, string[]>, k: string): string | undefined => u.get(k)?.at(-1);

test('lambda-sign.socket: /run/lambda-sign.sock, root:varnish 0660, a large backlog', () => {
  const u = unit('lambda-sign.socket');
  assert.is(one(u, 'ListenStream'), '/run/lambda-sign.sock');
  assert.is(one(u, 'SocketUser'), 'root');
  assert.is(one(u, 'SocketGroup'), 'varnish');
  assert.is(one(u, 'SocketMode'), '0660');
  assert.ok(Number(one(u, 'Backlog')) >= 4096, 'Backlog');
});

test('lambda-sign.service: exec of the installed binary, EnvironmentFile, hardening, stop after the drain', () => {
  const u = unit('lambda-sign.service');
  assert.is(one(u, 'Type'), 'exec');
  assert.match(one(u, 'ExecStart')!, /^(\/usr\/(local\/)?bin\/)?lambda-sign( |$)/);
  assert.ok(one(u, 'EnvironmentFile'), 'EnvironmentFile');
  assert.ok(one(u, 'DynamicUser') === 'yes' || one(u, 'User') !== undefined, 'a dedicated or dynamic user');
  for (const [k, v] of [
    ['NoNewPrivileges', 'yes'], ['ProtectSystem', 'strict'], ['ProtectHome', 'yes'], ['PrivateTmp', 'yes'],
    ['RestrictAddressFamilies', 'AF_UNIX AF_INET AF_INET6'], ['Restart', 'on-failure'],
  ]) assert.is(one(u, k!), v, k);
  assert.not.ok(u.has('MemoryDenyWriteExecute'), "MemoryDenyWriteExecute breaks V8's JIT");
  assert.not.ok(u.has('RuntimeDirectory'), 'the socket must not live in a RuntimeDirectory');
  assert.ok(Number(one(u, 'TimeoutStopSec')) > Number(DEFAULTS.drainTimeout), 'TimeoutStopSec above the drain deadline');
  assert.ok(u.get('Requires')?.some((v) => v.includes('lambda-sign.socket')));
});

const analyze = which('systemd-analyze', ['/usr/bin', '/bin']);

test('systemd-analyze verify finds nothing to complain about', async () => {
  assert.ok(analyze, 'systemd-analyze not found (Debian: apt-get install systemd)');
  // verify wants ExecStart's binary to exist; the real one is installed only on a server.
  const dir = path.join(tmp, 'units');
  fs.mkdirSync(dir, { recursive: true });
  fs.copyFileSync(path.join(SYSTEMD_DIR, 'lambda-sign.socket'), path.join(dir, 'lambda-sign.socket'));
  const service = fs.readFileSync(path.join(SYSTEMD_DIR, 'lambda-sign.service'), 'utf8');
  fs.writeFileSync(path.join(dir, 'lambda-sign.service'), service.replace(/^ExecStart=lambda-sign /m, 'ExecStart=/bin/true '));
  const { stdout, stderr } = await run(analyze!, ['verify', 'lambda-sign.socket', 'lambda-sign.service'], { cwd: dir });
  assert.is((stdout + stderr).trim(), '', 'no warnings (unknown keys, bad values)');
  // Exposure on systemd's 0-10 scale ("OK" is under 4.5); --threshold counts tenths.
  const sec = await run(analyze!, ['security', '--offline=true', '--threshold=20', 'lambda-sign.service'], { cwd: dir }).then(
    (r) => r,
    (e: { stdout: string }) => assert.unreachable(`exposure above 2.0:\n${e.stdout}`),
  );
  assert.match(String(sec?.stdout), /Overall exposure level for lambda-sign\.service: [01]\.\d/);
});

test('the example EnvironmentFile (systemd/lambda-sign.env) starts the daemon', async () => {
  const env: Record<string, string> = {};
  for (const line of fs.readFileSync(path.join(SYSTEMD_DIR, 'lambda-sign.env'), 'utf8').split('\n')) {
    const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line);
    if (m) env[m[1]!] = m[2]!;
    else assert.ok(line === '' || line.startsWith('#'), `not NAME=value: ${line}`);
  }
  assert.ok(env.AWS_REGION, 'AWS_REGION');
  assert.ok(env.LAMBDA_SIGN_OPTS, 'LAMBDA_SIGN_OPTS');
  const dir = fs.mkdtempSync(path.join(tmp, 'env-'));
  // As systemd expands $LAMBDA_SIGN_OPTS: split on whitespace.
  const args = [...env.LAMBDA_SIGN_OPTS!.split(/\s+/).filter(Boolean), '--socket', '{socket}'];
  const p = spawnDaemon(args, isolatedEnv(dir, { AWS_REGION: env.AWS_REGION! }), { dir });
  procs.push(p);
  const line = await p.waitFor(/"msg":"listening"/);
  assert.is(JSON.parse(line).region, env.AWS_REGION);
  // Logged after the CLI has installed its signal handlers (it installs them after
  // "listening": a SIGTERM in between would kill it outright).
  await p.waitFor(/credentials (resolved|unavailable)/);
  p.kill('SIGTERM');
  assert.is(await within(p.exited, 15_000, 'p exit'), 0, p.lines.join('\n'));
});

test.run();
