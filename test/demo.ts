// npm run demo: see lambda-sign work on this machine, with no AWS account.
//
// Starts a local Lambda look-alike (test/helpers/fake-lambda.ts: HTTPS with a CA made for this
// run, checks every SigV4 signature, runs two sample functions), the built CLI against it with
// dummy credentials, and varnishd in front with vcl/lambda-sign.vcl when varnishd is installed
// (otherwise requests go straight to lambda-sign's socket). Sends a few requests, prints the
// answers, stops everything and removes its files. Exits 0 when every answer was as expected.
//
// Not a test file (it does not end in .test.ts); it reuses the test helpers.
import type { IncomingHttpHeaders } from 'node:http';
import { makeTestCA, type TestCA } from './helpers/tls.ts';
import { startFakeLambda, type FakeLambda, type Invocation } from './helpers/fake-lambda.ts';
import { send, invokePath } from './helpers/daemon.ts';
import type { DaemonProcess } from './helpers/process.ts';
import { lambdaSignVcl, spawnCli, startOrigin, stopAll, type Origin } from './helpers/e2e.ts';
import { request, startVarnish, stopEveryVarnish, VARNISHD, type Varnish } from './helpers/varnish.ts';

const say = (line = ''): boolean => process.stdout.write(`${line}\n`);
const dim = (s: string): string => (process.stdout.isTTY ? `\x1b[2m${s}\x1b[0m` : s);

let ca: TestCA | undefined;
let fake: FakeLambda | undefined;
let daemon: DaemonProcess | undefined;
let origin: Origin | undefined;
let varnish: Varnish | undefined;

const cleanup = (): Promise<void> =>
  stopAll(() => stopEveryVarnish(), () => daemon?.cleanup(), () => origin?.close(), () => fake?.close(), () => ca?.cleanup());

// The sample functions, as a Lambda runtime would run them.
function hello(inv: Invocation) {
  let name = 'world';
  try {
    const payload = JSON.parse(inv.body.toString() || '{}') as { name?: unknown };
    if (typeof payload.name === 'string' && payload.name !== '') name = payload.name;
  } catch {
    // not JSON: greet the world
  }
  return { status: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ greeting: `Hello, ${name}!` }) };
}
function flaky() {
  // What Lambda answers when a function throws: 200, with X-Amz-Function-Error.
  return {
    status: 200,
    headers: { 'content-type': 'application/json', 'x-amz-function-error': 'Unhandled' },
    body: JSON.stringify({ errorType: 'Error', errorMessage: 'something broke' }),
  };
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
}

let unexpected = 0;

async function show(label: string, note: string, expectStatus: number, call: () => Promise<Answer>, mustInclude?: string): Promise<void> {
  say(label);
  const res = await call();
  const body = res.text.length > 100 ? `${res.text.slice(0, 100)}…` : res.text;
  const extra = ['x-lambda-sign-error', 'x-amz-function-error', 'x-lambda-fallback']
    .filter((h) => res.headers[h] !== undefined)
    .map((h) => `${h}: ${res.headers[h]}`);
  say(`  → ${res.status} ${body}${extra.length ? `   [${extra.join('; ')}]` : ''}`);
  say(dim(`    ${note}`));
  if (res.status !== expectStatus || (mustInclude !== undefined && !res.text.includes(mustInclude))) {
    unexpected++;
    say(`  !! expected ${expectStatus}${mustInclude ? ` with ${JSON.stringify(mustInclude)}` : ''}`);
  }
}

async function main(): Promise<void> {
  say('lambda-sign demo: requests signed with SigV4 and checked by a local Lambda look-alike.');
  say(dim('No AWS account is used: the credentials are dummies (AKIDTEST), the endpoint is on 127.0.0.1.'));
  say();

  ca = await makeTestCA();
  fake = await startFakeLambda({ tls: { cert: ca.cert, key: ca.key } });
  fake.on('hello', hello);
  fake.on('flaky', flaky);
  const allow = ['--allow-function', 'hello', '--allow-function', 'flaky'];
  daemon = spawnCli({ fake, ca, args: allow });
  await daemon.waitFor(/"msg":"listening"/);
  say(`  Lambda look-alike  ${fake.url}  (checks every signature; functions "hello" and "flaky")`);
  say(`  lambda-sign        ${daemon.socketPath}  (dist/cli.js ${allow.join(' ')})`);

  // DEMO_WITHOUT_VARNISH=1 shows the other path on a machine that has varnishd.
  if (VARNISHD !== undefined && !process.env.DEMO_WITHOUT_VARNISH) {
    try {
      origin = await startOrigin();
      varnish = await startVarnish({ vcl: lambdaSignVcl(daemon.socketPath, origin.port) });
      await varnish.waitHealthy('lambda_sign');
      say(`  varnishd           ${varnish.url}  (vcl/lambda-sign.vcl; origin on 127.0.0.1:${origin.port})`);
    } catch (err) {
      say(`  varnishd           could not start (${(err as Error).message.split('\n')[0]}); going straight to the socket`);
      await varnish?.stop();
      varnish = undefined;
    }
  } else {
    const why = VARNISHD === undefined ? 'not installed (apt-get install varnish)' : 'skipped (DEMO_WITHOUT_VARNISH)';
    say(`  varnishd           ${why}; going straight to the socket`);
  }
  say();

  const socketPath = daemon.socketPath;
  if (varnish !== undefined) {
    const url = varnish.url;
    const post = (path: string, body: string) => async (): Promise<Answer> => {
      const r = await request(url, { path, headers: { 'content-type': 'application/json' }, body });
      return { status: r.status, headers: r.headers, text: r.text() };
    };
    await show('POST /lambda/hello {"name":"Varnish"}', 'Varnish → lambda-sign (signs) → Lambda runs "hello"', 200,
      post('/lambda/hello', '{"name":"Varnish"}'), 'Hello, Varnish!');
    await show('POST /lambda/hello?Qualifier=live {"name":"alias"}', 'the same function, its "live" alias', 200,
      post('/lambda/hello?Qualifier=live', '{"name":"alias"}'), 'Hello, alias!');
    await show('POST /lambda/admin-tool {}', 'refused by lambda-sign: not in --allow-function; nothing reached Lambda', 403,
      post('/lambda/admin-tool', '{}'));
    await show('POST /lambda/flaky {}', 'the function threw, so the VCL served the origin\'s page instead', 200,
      post('/lambda/flaky', '{}'), 'origin');
    await show('GET /lambda/hello', 'refused by the VCL: invocations are POSTs', 405, async () => {
      const r = await request(url, { method: 'GET', path: '/lambda/hello' });
      return { status: r.status, headers: r.headers, text: r.text() };
    });
  } else {
    const post = (fn: string, body: string) => async (): Promise<Answer> => {
      const r = await send(socketPath, { path: invokePath(fn), headers: { 'content-type': 'application/json' }, body });
      return { status: r.status, headers: r.headers, text: r.body.toString() };
    };
    await show(`POST ${invokePath('hello')} {"name":"socket"}`, 'lambda-sign signs it → Lambda runs "hello"', 200,
      post('hello', '{"name":"socket"}'), 'Hello, socket!');
    await show(`POST ${invokePath('admin-tool')} {}`, 'refused: not in --allow-function; nothing reached Lambda', 403,
      post('admin-tool', '{}'));
    await show(`POST ${invokePath('flaky')} {}`, "Lambda's answer when a function throws, passed through as is", 200,
      post('flaky', '{}'), 'something broke');
  }
  const health = await send(socketPath, { method: 'GET', path: '/healthz' });
  await show('GET /healthz (on the socket)', 'what Varnish\'s probe asks; never calls Lambda', 200,
    async () => ({ status: health.status, headers: health.headers, text: health.body.toString() }));

  say();
  const scope = /Credential=[^/]+\/\d{8}\/([^,]+)/.exec(String(fake.invocations[0]?.headers.authorization))?.[1];
  say(`Lambda received ${fake.invocations.length + fake.failures.length} invocations: ` +
    `${fake.invocations.length} signatures verified${scope ? ` (scope ${scope})` : ''}, ${fake.failures.length} rejected.`);
  if (fake.failures.length > 0 || fake.invocations.length === 0) unexpected++;
}

let interrupted = false;
process.once('SIGINT', () => {
  interrupted = true;
  void cleanup().then(() => process.exit(130));
});

try {
  await main();
} catch (err) {
  unexpected++;
  say(`demo failed: ${(err as Error).stack ?? err}`);
} finally {
  if (!interrupted) await cleanup();
}
if (!interrupted) {
  say(unexpected === 0 ? 'Everything stopped and removed. Next: README.md, "Install as a service".' : `${unexpected} unexpected answer(s).`);
  process.exit(unexpected === 0 ? 0 : 1);
}
