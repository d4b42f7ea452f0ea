// Operating the daemon, in-process against the verifying fake Lambda: metrics after real
// invocations, overload shedding (--max-inflight, --max-buffered), the DryRun health probe
// (--probe-function), and clock-skew correction from Lambda's InvalidSignatureException.
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { makeTestCA, type TestCA } from '../helpers/tls.ts';
import { startFakeLambda, type FakeLambda, type FakeAnswer } from '../helpers/fake-lambda.ts';
import { startDaemon, send, invokePath, TEST_KEY, type TestDaemon, type Reply } from '../helpers/daemon.ts';
import { staticCredentials } from '../../src/credentials.ts';
import type { RawOptions } from '../../src/config.ts';
import { createMetrics, type Metrics } from '../../src/metrics.ts';

let ca: TestCA;
let fake: FakeLambda;
const daemons: TestDaemon[] = [];

test.before(async () => {
  ca = await makeTestCA();
  fake = await startFakeLambda({ tls: { cert: ca.cert, key: ca.key } });
});
test.after(async () => {
  for (const d of daemons) await d.close();
  await fake.close();
  await ca.cleanup();
});

/** A daemon on its own socket, with its own metrics registry (no default process metrics). */
async function daemon(options: RawOptions = {}, extra: { endpoint?: string; credentials?: ReturnType<typeof staticCredentials> } = {}) {
  let d: TestDaemon | undefined;
  const metrics = createMetrics({ defaultMetrics: false, sessions: () => d?.upstream.sessions ?? 0 });
  d = await startDaemon({ endpoint: extra.endpoint ?? fake.url, ca: ca.ca, options, credentials: extra.credentials, metrics });
  daemons.push(d);
  return { d, metrics, socket: d.socketPath };
}

/** `name{k="v",…}` → value, labels sorted, from the text exposition format. */
async function scrape(metrics: Metrics): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const line of (await metrics.registry.metrics()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^(\w+)(?:\{(.*)\})? (\S+)$/.exec(line)!;
    const labels = [...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map(([, k, v]) => `${k}="${v}"`).sort();
    out.set(`${m[1]}{${labels.join(',')}}`, Number(m[3]));
  }
  return out;
}
const key = (name: string, labels: Record<string, string> = {}): string =>
  `${name}{${Object.entries(labels).map(([k, v]) => `${k}="${v}"`).sort().join(',')}}`;

/** The daemon's per-request log lines, parsed. */
const requestLines = (d: TestDaemon): Record<string, any>[] =>
  d.logs.map((l) => JSON.parse(l) as Record<string, any>).filter((l) => l.msg === 'request');

/** A fake handler that holds every invocation until `open()`. */
function gate(answer: FakeAnswer = { status: 200, body: 'released' }) {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  return { handler: async () => (await opened, answer), open };
}

async function until(cond: () => boolean, what: string, ms = 3000): Promise<void> {
  for (const end = Date.now() + ms; !cond(); await sleep(10)) if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
}

/** The promise's value, or an error once `ms` pass: a refusal that should be immediate must not hang the file. */
function within<T>(ms: number, p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)));
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/** Settles to the reply or the error, so a pending request never becomes an unhandled rejection. */
const settled = (p: Promise<Reply>): Promise<Reply> =>
  p.catch((e: Error): Reply => ({ status: 0, headers: {}, body: Buffer.from(String(e)), json: <T>() => ({}) as T }));

const invoke = (socket: string, fn: string, body: string | Buffer = '{}', headers: Record<string, string> = {}): Promise<Reply> =>
  send(socket, { path: invokePath(fn), body, headers });

// ——— metrics ———

test('metrics after a mix of invocations: counts, labels, durations, bytes; the inflight gauge back to 0', async () => {
  const { d, metrics, socket } = await daemon({ allowFunction: ['m-*'] });
  fake.on('m-missing', () => ({
    status: 404, headers: { 'content-type': 'application/json', 'x-amzn-errortype': 'ResourceNotFoundException' },
    body: '{"Type":"User","message":"Function not found"}',
  }));
  fake.on('m-denied', () => ({
    status: 403, headers: { 'content-type': 'application/json', 'x-amzn-errortype': 'AccessDeniedException' },
    body: '{"Message":"not authorized to perform: lambda:InvokeFunction"}',
  }));
  let flaky = 0;
  fake.on('m-flaky', () => (++flaky === 1 ? { status: 200, reset: 'refused' } : { status: 200, body: 'second time' }));
  const before = fake.invocations.length + fake.failures.length;

  const sent: [fn: string, body: string, varnishId: string][] = [
    ['m-ok', '{"a":1}', '101'],
    ['m-ok', '{"bb":22}', '102'],
    ['m-ok', '{"ccc":333}', '103'],
    ['blocked', '{"not":"sent"}', '104'],
    ['m-missing', '{}', '105'],
    ['m-flaky', '{"retry":true}', '106'],
    ['m-denied', '{}', '107'],
  ];
  const replies: Reply[] = [];
  for (const [fn, body, id] of sent) replies.push(await invoke(socket, fn, body, { 'x-varnish': id }));
  assert.equal(replies.map((r) => r.status), [200, 200, 200, 403, 404, 200, 403]);
  assert.is(replies[3]!.json().error, 'FunctionNotAllowed');
  assert.is(fake.invocations.length + fake.failures.length - before, 7, 'six invocations, one of them sent twice');
  assert.equal(d.retries, ['refused_stream']);

  const s = await scrape(metrics);
  const expect: [string, Record<string, string>, number | undefined][] = [
    ['lambda_sign_requests_total', { function: 'm-ok', status: '200' }, 3],
    // Names refused by us, or that Lambda does not know, take no label of their own: a
    // client making names up once used up the 500 labels (a regression test).
    ['lambda_sign_requests_total', { function: 'other', status: '403' }, 2],
    ['lambda_sign_requests_total', { function: 'blocked', status: '403' }, undefined],
    ['lambda_sign_requests_total', { function: 'm-denied', status: '403' }, undefined],
    ['lambda_sign_requests_total', { function: 'other', status: '404' }, 1],
    ['lambda_sign_requests_total', { function: 'm-missing', status: '404' }, undefined],
    ['lambda_sign_requests_total', { function: 'm-flaky', status: '200' }, 1],
    ['lambda_sign_errors_total', { code: 'FunctionNotAllowed' }, 1],
    ['lambda_sign_upstream_duration_seconds_count', { function: 'm-ok' }, 3],
    ['lambda_sign_upstream_duration_seconds_count', { function: 'other' }, 2],
    ['lambda_sign_upstream_duration_seconds_count', { function: 'm-flaky' }, 1],
    ['lambda_sign_upstream_duration_seconds_count', { function: 'blocked' }, undefined],
    ['lambda_sign_inflight_requests', {}, 0],
    ['lambda_sign_upstream_sessions', {}, 1],
  ];
  for (const [name, labels, n] of expect) assert.is(s.get(key(name, labels)), n, key(name, labels));
  const requests = [...s].filter(([k]) => k.startsWith('lambda_sign_requests_total{')).reduce((n, [, v]) => n + v, 0);
  assert.is(requests, 7, 'one count per request, the retried one included once');
  const errors = [...s].filter(([k]) => k.startsWith('lambda_sign_errors_total{'));
  assert.equal(errors, [[key('lambda_sign_errors_total', { code: 'FunctionNotAllowed' }), 1]], 'Lambda\'s own 404 is not our error');
  const upstreamBodies = sent.filter(([fn]) => fn !== 'blocked').reduce((n, [, body]) => n + body.length, 0);
  assert.is(s.get('lambda_sign_request_bytes_total{}'), upstreamBodies, 'bytes sent to Lambda');
  // Every response body sent to Varnish, the daemon's own 403 error body included.
  const answers = replies.reduce((n, r) => n + r.body.length, 0);
  assert.is(s.get('lambda_sign_response_bytes_total{}'), answers, 'response body bytes sent to Varnish');

  // One log line per request, keyed by X-Varnish.
  const lines = requestLines(d);
  assert.equal(lines.map((l) => l.id), sent.map(([, , id]) => id));
  const byId = new Map(lines.map((l) => [l.id, l]));
  assert.is(byId.get('101')!.fn, 'm-ok');
  assert.is(byId.get('101')!.status, 200);
  assert.is(byId.get('101')!.upstreamStatus, 200);
  assert.is(byId.get('101')!.retries, 0);
  assert.is(byId.get('101')!.bytesIn, 7);
  assert.type(byId.get('101')!.ms, 'number');
  assert.is(byId.get('104')!.status, 403);
  assert.is(byId.get('104')!.error, 'FunctionNotAllowed');
  assert.is(byId.get('104')!.upstreamStatus, undefined, 'never sent');
  assert.is(byId.get('105')!.upstreamStatus, 404);
  assert.is(byId.get('106')!.retries, 1, 'the refused stream shows as a retry');
});

test('regression: a request whose client hung up before any answer is not counted as a 200', async () => {
  // Nothing was sent to Varnish, yet res.statusCode defaults to 200, which the
  // requests counter would record as "status sent to Varnish".
  const { metrics, socket } = await daemon();
  let calls = 0;
  fake.on('m-hangup', () => (++calls === 1 ? { status: 200, body: 'at once' } : { status: 200, body: 'too late', delayMs: 5000 }));
  // Answered once, so that the function has a label of its own (a name Lambda never
  // answered for counts as "other").
  assert.is((await invoke(socket, 'm-hangup')).status, 200);
  const c = net.connect(socket);
  c.on('error', () => {});
  c.write(`POST ${invokePath('m-hangup')} HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}`);
  await until(() => fake.inflight > 0, 'the invocation to reach Lambda');
  c.destroy();
  await until(() => fake.inflight === 0, 'Lambda to see the cancel');
  await sleep(50);
  const s = await scrape(metrics);
  const counted = [...s].filter(([k]) => k.startsWith('lambda_sign_requests_total{') && k.includes('function="m-hangup"'));
  assert.is(counted.length, 2, 'the hung-up request is counted apart from the answered one');
  assert.is(s.get(key('lambda_sign_requests_total', { function: 'm-hangup', status: '200' })), 1, 'only the answered one as a 200');
  assert.is(s.get('lambda_sign_inflight_requests{}'), 0);
});

// ——— overload ———

test('--max-inflight 5: the 6th invocation gets 503 Overloaded at once, Lambda is not called; later ones pass', async () => {
  const { d, metrics, socket } = await daemon({ maxInflight: '5' });
  const g = gate();
  fake.on('held', g.handler);
  const before = fake.invocations.length;
  const held = Array.from({ length: 5 }, () => settled(invoke(socket, 'held')));
  await until(() => fake.invocations.length - before === 5, 'five held invocations at Lambda');
  assert.is((await scrape(metrics)).get('lambda_sign_inflight_requests{}'), 5);

  const t0 = Date.now();
  const sixth = await within(2000, invoke(socket, 'held', '{"sixth":true}'), 'the 6th invocation');
  assert.ok(Date.now() - t0 < 1000, `answered at once (${Date.now() - t0} ms)`);
  assert.is(sixth.status, 503);
  assert.is(sixth.json().error, 'Overloaded');
  assert.is(sixth.headers['x-lambda-sign-error'], 'Overloaded');
  assert.ok(Number(sixth.headers['retry-after']) >= 1, 'Retry-After present');
  // Another function is refused too: the bound is on the daemon, not per function.
  assert.is((await within(2000, invoke(socket, 'other-fn'), 'another function')).status, 503);
  await sleep(50);
  assert.is(fake.invocations.length - before, 5, 'Lambda never saw the refused ones');

  g.open();
  assert.equal((await Promise.all(held)).map((r) => r.status), [200, 200, 200, 200, 200]);
  await until(() => d.server.inflight === 0, 'slots to be released');
  const after = await Promise.all(Array.from({ length: 5 }, () => invoke(socket, 'f')));
  assert.equal(after.map((r) => r.status), [200, 200, 200, 200, 200], 'all five slots came back');
  const s = await scrape(metrics);
  // Refused before Lambda ever answered for 'held': no label of its own yet (see labelled in server.ts).
  assert.is(s.get(key('lambda_sign_requests_total', { function: 'other', status: '503' })), 2);
  assert.is(s.get(key('lambda_sign_requests_total', { function: 'held', status: '200' })), 5);
  assert.is(s.get(key('lambda_sign_errors_total', { code: 'Overloaded' })), 2);
  assert.is(s.get('lambda_sign_inflight_requests{}'), 0);
});

test('--max-buffered: a body past the bound is Overloaded, smaller ones pass, and the bytes come back', async () => {
  const { d, socket } = await daemon({ maxBuffered: '10000' });
  const before = fake.invocations.length;
  const big = await invoke(socket, 'f', Buffer.alloc(20_000, 'x'));
  assert.is(big.status, 503);
  assert.is(big.json().error, 'Overloaded');
  assert.ok(big.headers['retry-after'] !== undefined);
  assert.is(fake.invocations.length, before, 'nothing was sent');

  // Chunked, so the daemon only learns the size as it reads.
  const chunked = await send(socket, { path: invokePath('f'), chunks: Array.from({ length: 4 }, () => Buffer.alloc(5000, 'y')) });
  assert.is(chunked.status, 503);
  assert.is(chunked.json().error, 'Overloaded');
  assert.is(fake.invocations.length, before);

  assert.is((await invoke(socket, 'f', Buffer.alloc(4000, 'a'))).status, 200);
  // Exactly the bound, three times in a row: each one's bytes were given back.
  for (let i = 0; i < 3; i++) assert.is((await invoke(socket, 'f', Buffer.alloc(10_000, 'b'))).status, 200, `full-size body #${i + 1}`);

  // Bytes held by a waiting invocation count against others until it finishes.
  const g = gate();
  fake.on('buf-held', g.handler);
  const held = settled(invoke(socket, 'buf-held', Buffer.alloc(6000, 'c')));
  await until(() => fake.inflight === 1, 'the held invocation at Lambda');
  const over = await within(2000, invoke(socket, 'f', Buffer.alloc(6000, 'd')), 'the second 6000-byte body');
  assert.is(over.status, 503, '6000 held + 6000 > 10000');
  assert.is((await invoke(socket, 'f', Buffer.alloc(4000, 'e'))).status, 200, '6000 held + 4000 fits');
  g.open();
  assert.is((await held).status, 200);
  await until(() => d.server.inflight === 0, 'the held request to finish');
  assert.is((await invoke(socket, 'f', Buffer.alloc(10_000, 'f'))).status, 200, 'back to 0 buffered bytes');
  const logged = requestLines(d).filter((l) => l.error === 'Overloaded').length;
  assert.is(logged, 3, 'each refusal is logged with its code');
});

// ——— health probe ———

const dryRuns = (fn: string): number =>
  fake.invocations.filter((i) => i.functionName === fn && i.headers['x-amz-invocation-type'] === 'DryRun').length;
const health = (socket: string): Promise<Reply> => send(socket, { method: 'GET', path: '/healthz' });

test('--probe-function: /healthz makes one signed DryRun, cached for repeated and concurrent probes', async () => {
  fake.on('probe-ok', (inv) =>
    inv.headers['x-amz-invocation-type'] === 'DryRun' ? { status: 204 } : { status: 500, body: 'the function ran' });
  const { socket } = await daemon({ probeFunction: 'probe-ok' });
  const failuresBefore = fake.failures.length;
  const first = await health(socket);
  assert.is(first.status, 200, first.body.toString());
  assert.is(first.json().status, 'ok');
  assert.is(dryRuns('probe-ok'), 1);
  const inv = fake.invocations.find((i) => i.functionName === 'probe-ok')!;
  assert.ok(inv.verified, 'the DryRun was signed');
  assert.is(inv.method, 'POST');
  assert.is(fake.failures.length, failuresBefore);
  for (let i = 0; i < 5; i++) assert.is((await health(socket)).status, 200);
  const burst = await Promise.all(Array.from({ length: 10 }, () => health(socket)));
  assert.ok(burst.every((r) => r.status === 200));
  assert.is(dryRuns('probe-ok'), 1, 'sixteen probes within 5 s, one DryRun');
  assert.is(fake.invocations.filter((i) => i.functionName === 'probe-ok').length, 1, 'never a real invocation');
});

test('--probe-function: concurrent first probes share one DryRun', async () => {
  fake.on('probe-slow', () => ({ status: 204, delayMs: 200 }));
  const { socket } = await daemon({ probeFunction: 'probe-slow' });
  const burst = await Promise.all(Array.from({ length: 10 }, () => health(socket)));
  assert.equal([...new Set(burst.map((r) => r.status))], [200]);
  assert.is(dryRuns('probe-slow'), 1);
});

const PROBE_FAILURES: [name: string, answer: FakeAnswer][] = [
  ['403 AccessDeniedException', {
    status: 403, headers: { 'content-type': 'application/json', 'x-amzn-errortype': 'AccessDeniedException' },
    body: '{"Message":"User is not authorized to perform: lambda:InvokeFunction"}',
  }],
  ['404 ResourceNotFoundException', {
    status: 404, headers: { 'content-type': 'application/json', 'x-amzn-errortype': 'ResourceNotFoundException' },
    body: '{"Message":"Function not found"}',
  }],
];
for (const [name, answer] of PROBE_FAILURES) {
  test(`--probe-function answering ${name}: /healthz is 503 ProbeFailed, and the failure is cached`, async () => {
    const fn = `probe-${answer.status}`;
    fake.on(fn, () => answer);
    const { socket } = await daemon({ probeFunction: fn });
    const res = await health(socket);
    assert.is(res.status, 503);
    assert.is(res.json().error, 'ProbeFailed');
    assert.is(res.headers['x-lambda-sign-error'], 'ProbeFailed');
    assert.ok(res.headers['retry-after'] !== undefined);
    assert.not.match(res.body.toString(), /not authorized|not found/i, 'Lambda\'s message is not repeated');
    assert.is((await health(socket)).status, 503);
    assert.is(dryRuns(fn), 1, 'the failure is cached too');
  });
}

test('--probe-function with Lambda unreachable: /healthz is 503 ProbeFailed', async () => {
  const closed = net.createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const port = (closed.address() as net.AddressInfo).port;
  await new Promise((r) => closed.close(r));
  const { socket } = await daemon({ probeFunction: 'probe-any' }, { endpoint: `https://127.0.0.1:${port}` });
  const res = await health(socket);
  assert.is(res.status, 503);
  assert.is(res.json().error, 'ProbeFailed');
});

test('regression: a DryRun that hangs does not hold /healthz for the invocation --timeout', async () => {
  // The DryRun runs under --timeout (default 900 s, sized for a function's run). While it
  // hangs, every probe waits on the shared DryRun: Varnish's probes pile up and /healthz
  // cannot report a recovery for up to 15 minutes. A probe answer is due in seconds.
  fake.on('probe-hang', () => ({ status: 204, delayMs: 60_000 }));
  const { socket } = await daemon({ probeFunction: 'probe-hang' });
  const t0 = Date.now();
  const res = await within(5000, health(socket), '/healthz with a hanging DryRun').catch((e: Error) => e);
  assert.not.instance(res, Error, `${(res as Error).message}; the DryRun runs under the default --timeout of 900 s`);
  assert.is((res as Reply).status, 503);
  assert.is((res as Reply).json().error, 'ProbeFailed');
  assert.ok(Date.now() - t0 < 5000);
});

test('without --probe-function /healthz stays local: Lambda is never called', async () => {
  const { socket } = await daemon();
  const before = fake.invocations.length + fake.failures.length;
  for (let i = 0; i < 5; i++) assert.is((await health(socket)).status, 200);
  await sleep(20);
  assert.is(fake.invocations.length + fake.failures.length, before);
});

// ——— clock skew ———

// The fake, like AWS, accepts an x-amz-date up to 15 minutes from its clock; a skew has to
// be beyond that for the signature to be refused at all. 30 minutes, both ways.
const SKEW_MS = 30 * 60_000;

for (const skew of [SKEW_MS, -SKEW_MS]) {
  test(`clock skew (Lambda ${skew > 0 ? 'ahead' : 'behind'} by 30 min): retried once with Lambda's clock, later ones direct`, async () => {
    const { d, metrics, socket } = await daemon();
    const inv0 = fake.invocations.length;
    const fail0 = fake.failures.length;
    fake.clockSkewMs = skew;
    try {
      const res = await invoke(socket, 'f', '{}', { 'x-varnish': '201' });
      assert.is(res.status, 200, res.body.toString());
      assert.is(fake.failures.length - fail0, 1, 'one refused signature');
      assert.match(fake.failures[fake.failures.length - 1]!.reason ?? '', /signature expired/);
      assert.is(fake.invocations.length - inv0, 1, 'one verified invocation');
      const next = await invoke(socket, 'f', '{}', { 'x-varnish': '202' });
      assert.is(next.status, 200);
      assert.is(fake.failures.length - fail0, 1, 'the next one needed no retry');
      assert.is(fake.invocations.length - inv0, 2);
    } finally {
      fake.clockSkewMs = 0;
    }
    const [first, second] = requestLines(d);
    assert.is(first!.retries, 1);
    assert.is(first!.upstreamStatus, 200);
    assert.is(second!.retries, 0);
    const warn = d.logs.map((l) => JSON.parse(l)).find((l) => typeof l.offsetMs === 'number');
    assert.ok(warn, 'the correction is logged');
    assert.ok(Math.abs(warn.offsetMs - skew) < 3000, `offset ${warn.offsetMs} ≈ ${skew}`);
    const s = await scrape(metrics);
    assert.is(s.get(key('lambda_sign_retries_total', { reason: 'clock_skew' })), 1);
    assert.is(s.get('lambda_sign_clock_skew_corrections_total{}'), 1);
    assert.is(s.get(key('lambda_sign_requests_total', { function: 'f', status: '200' })), 2);
  });
}

test('a refused signature with Lambda\'s Date within 5 minutes (a wrong secret) is passed through, not retried', async () => {
  const { d, metrics, socket } = await daemon({}, { credentials: staticCredentials({ ...TEST_KEY, secretAccessKey: 'wrong-secret' }) });
  const fail0 = fake.failures.length;
  fake.clockSkewMs = 4 * 60_000; // a clock a little off, as real ones are: still no correction
  let res: Reply;
  try {
    res = await invoke(socket, 'f');
  } finally {
    fake.clockSkewMs = 0;
  }
  assert.is(res.status, 403);
  assert.is(res.headers['x-amzn-errortype'], 'InvalidSignatureException');
  assert.is(res.headers['x-lambda-sign-error'], undefined, 'Lambda\'s answer, passed through');
  assert.is(fake.failures.length - fail0, 1, 'sent once');
  assert.is(requestLines(d)[0]!.retries, 0);
  const s = await scrape(metrics);
  assert.is(s.get(key('lambda_sign_retries_total', { reason: 'clock_skew' })), undefined);
  // 'f' never ran in this daemon: no label of its own yet.
  assert.is(s.get(key('lambda_sign_requests_total', { function: 'other', status: '403' })), 1);
});

test('a wrong secret on a skewed clock is retried once only, then passed through', async () => {
  const { socket } = await daemon({}, { credentials: staticCredentials({ ...TEST_KEY, secretAccessKey: 'wrong-secret' }) });
  const fail0 = fake.failures.length;
  fake.clockSkewMs = SKEW_MS;
  let res: Reply;
  try {
    res = await invoke(socket, 'f');
  } finally {
    fake.clockSkewMs = 0;
  }
  assert.is(res.status, 403);
  assert.is(res.headers['x-amzn-errortype'], 'InvalidSignatureException');
  assert.is(fake.failures.length - fail0, 2, 'the first try and one retry, no more');
});

test('a 403 that is not InvalidSignatureException is never retried, whatever its Date', async () => {
  const { d, socket } = await daemon();
  const far = new Date(Date.now() + SKEW_MS).toUTCString();
  fake.on('denied-skewed', () => ({
    status: 403, headers: { 'content-type': 'application/json', 'x-amzn-errortype': 'AccessDeniedException', date: far },
    body: '{"Message":"denied"}',
  }));
  const before = fake.invocations.length;
  const res = await invoke(socket, 'denied-skewed');
  assert.is(res.status, 403);
  assert.is(res.headers['x-amzn-errortype'], 'AccessDeniedException');
  assert.is(fake.invocations.length - before, 1);
  assert.is(requestLines(d)[0]!.retries, 0);
  // …and the clock was not touched: the next invocation is signed with ours and accepted.
  assert.is((await invoke(socket, 'f')).status, 200);
});

test.run();
