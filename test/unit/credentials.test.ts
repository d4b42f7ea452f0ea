// credentials.ts: createCredentials over fake providers and an injected clock: pass-through,
// failure → CredentialsUnavailable 503, the failure window, one shared attempt, recovery.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from '@smithy/types';
import { createCredentials, defaultChain, staticCredentials } from '../../src/credentials.ts';
import { CredentialsUnavailableError, errorResponse } from '../../src/errors.ts';

const CREDS: AwsCredentialIdentity = { accessKeyId: 'AKIDTEST', secretAccessKey: 'secret', sessionToken: 'token' };

/** A provider whose answers the test scripts: each call takes the next behaviour. */
function fakeProvider(...script: ('ok' | 'fail' | 'throw-sync')[]) {
  const calls = { count: 0 };
  let last: 'ok' | 'fail' | 'throw-sync' = 'ok';
  const provider = ((): Promise<AwsCredentialIdentity> => {
    const step = script[calls.count] ?? last;
    last = step;
    calls.count++;
    if (step === 'throw-sync') throw new Error('no credentials (sync)');
    if (step === 'fail') return Promise.reject(new Error('Could not load credentials from any providers: secret-path'));
    return Promise.resolve({ ...CREDS, accessKeyId: `AKID${calls.count}` });
  }) as AwsCredentialIdentityProvider;
  return { provider, calls };
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  assert.unreachable('resolved');
  return undefined;
}

test('success passes the provider’s credentials through', async () => {
  const { provider, calls } = fakeProvider('ok');
  const creds = await createCredentials(provider).get();
  assert.equal(creds, { ...CREDS, accessKeyId: 'AKID1' });
  assert.is(calls.count, 1);
});

test('credentials without expiry are looked up once and then served from memory', async () => {
  const { provider, calls } = fakeProvider('ok');
  const source = createCredentials(provider);
  assert.is((await source.get()).accessKeyId, 'AKID1');
  assert.is((await source.get()).accessKeyId, 'AKID1');
  assert.is(calls.count, 1);
});

/** A provider of temporary credentials expiring `ttl` ms after the injected clock. */
function expiring(clock: { t: number }, ttl: number, script: ('ok' | 'fail')[] = []) {
  const calls: { forceRefresh?: boolean }[] = [];
  const provider = (async (o?: { forceRefresh?: boolean }) => {
    calls.push(o ?? {});
    if (script[calls.length - 1] === 'fail') throw new Error('container endpoint 500');
    return { ...CREDS, accessKeyId: `ASIA${calls.length}`, expiration: new Date(clock.t + ttl) };
  }) as AwsCredentialIdentityProvider;
  return { provider, calls };
}
const tick = () => new Promise((r) => setImmediate(r));

test('in their last five minutes, one background refresh starts; the current ones keep serving', async () => {
  const clock = { t: 0 };
  const { provider, calls } = expiring(clock, 10 * 60_000);
  const refreshes: boolean[] = [];
  const source = createCredentials(provider, { now: () => clock.t, onRefresh: (ok) => refreshes.push(ok) });
  assert.is((await source.get()).accessKeyId, 'ASIA1');
  clock.t = 4 * 60_000; // 6 minutes left: no refresh yet
  assert.is((await source.get()).accessKeyId, 'ASIA1');
  assert.is(calls.length, 1);
  clock.t = 6 * 60_000; // 4 minutes left: refresh in the background
  const during = await Promise.all([source.get(), source.get(), source.get()]);
  assert.ok(during.every((c) => c.accessKeyId === 'ASIA1'), 'no caller waits for the refresh');
  await tick();
  assert.is(calls.length, 2, 'one refresh for many callers');
  assert.is(calls[1]!.forceRefresh, true, 'the chain’s own cache is bypassed');
  assert.is((await source.get()).accessKeyId, 'ASIA2');
  assert.equal(refreshes, [true, true]);
});

test('a failed background refresh is reported, retried after a pause, and fails no request', async () => {
  const clock = { t: 0 };
  const { provider, calls } = expiring(clock, 10 * 60_000, ['ok', 'fail', 'ok']);
  const refreshes: boolean[] = [];
  const source = createCredentials(provider, { now: () => clock.t, refreshRetryMs: 10_000, onRefresh: (ok) => refreshes.push(ok) });
  await source.get();
  clock.t = 6 * 60_000;
  assert.is((await source.get()).accessKeyId, 'ASIA1');
  await tick();
  assert.equal(refreshes, [true, false]);
  clock.t += 5_000; // inside the pause: no new attempt
  assert.is((await source.get()).accessKeyId, 'ASIA1');
  await tick();
  assert.is(calls.length, 2);
  clock.t += 5_000;
  await source.get();
  await tick();
  assert.is(calls.length, 3);
  assert.is((await source.get()).accessKeyId, 'ASIA3');
});

test('expired credentials are not served: callers wait for a new lookup', async () => {
  const clock = { t: 0 };
  const { provider, calls } = expiring(clock, 60_000);
  const source = createCredentials(provider, { now: () => clock.t, refreshRetryMs: 1e9 });
  await source.get();
  clock.t = 61_000;
  assert.is((await source.get()).accessKeyId, 'ASIA2');
  assert.ok(calls.length >= 2);
});

test('failure → CredentialsUnavailableError, 503, cause kept', async () => {
  const { provider } = fakeProvider('fail');
  const err = await rejection(createCredentials(provider).get());
  assert.instance(err, CredentialsUnavailableError);
  const e = err as CredentialsUnavailableError;
  assert.is(e.status, 503);
  assert.is(e.code, 'CredentialsUnavailable');
  assert.instance(e.cause, Error);
  assert.match((e.cause as Error).message, 'Could not load credentials');
  assert.is(errorResponse(e).status, 503);
  assert.not.ok(errorResponse(e).body.includes('secret-path'));
});

test('a failure is remembered for failureTtlMs, then the provider is asked again', async () => {
  let t = 1_000_000;
  const { provider, calls } = fakeProvider('fail', 'fail', 'ok');
  const source = createCredentials(provider, { failureTtlMs: 1000, now: () => t });

  const first = await rejection(source.get());
  assert.is(calls.count, 1);
  for (const dt of [0, 1, 500, 999]) {
    t = 1_000_000 + dt;
    const again = await rejection(source.get());
    assert.is(again, first, `at +${dt} ms the remembered error is answered`);
    assert.is(calls.count, 1, `at +${dt} ms the provider is not called`);
  }

  t = 1_000_000 + 1000;
  const second = await rejection(source.get());
  assert.is(calls.count, 2, 'window over: provider called again');
  assert.is.not(second, first, 'a new failure, a new error');

  t += 999;
  await rejection(source.get());
  assert.is(calls.count, 2, 'the second failure opened a new window');

  t += 1;
  assert.is((await source.get()).accessKeyId, 'AKID3');
  assert.is(calls.count, 3);
});

test('default failure window is short but real (1 s)', async () => {
  let t = 0;
  const { provider, calls } = fakeProvider('fail', 'ok');
  const source = createCredentials(provider, { now: () => t });
  await rejection(source.get());
  t = 999;
  await rejection(source.get());
  assert.is(calls.count, 1);
  t = 1000;
  assert.is((await source.get()).accessKeyId, 'AKID2');
});

test('concurrent calls share one provider call (success)', async () => {
  // Every call waits until release(); release() frees all that are waiting.
  let waiting: (() => void)[] = [];
  const release = () => {
    for (const r of waiting) r();
    waiting = [];
  };
  let count = 0;
  const provider: AwsCredentialIdentityProvider = async () => {
    count++;
    await new Promise<void>((r) => waiting.push(r));
    return CREDS;
  };
  const source = createCredentials(provider);
  const all = Promise.all(Array.from({ length: 10 }, () => source.get()));
  await new Promise((r) => setImmediate(r));
  assert.is(count, 1);
  release();
  for (const c of await all) assert.equal(c, CREDS);
  assert.is(count, 1);
  // Once settled, credentials without expiry are served from memory.
  await source.get();
  assert.is(count, 1);
});

test('concurrent calls share one provider call (failure), all get the same 503', async () => {
  let waiting: (() => void)[] = [];
  const fail = () => waiting.splice(0).forEach((r) => r());
  let count = 0;
  const provider: AwsCredentialIdentityProvider = async () => {
    count++;
    await new Promise<void>((r) => waiting.push(r));
    throw new Error('IMDS timed out');
  };
  const source = createCredentials(provider, { failureTtlMs: 60_000 });
  const all = Array.from({ length: 5 }, () => rejection(source.get()));
  await new Promise((r) => setImmediate(r));
  fail();
  const errors = await Promise.all(all);
  assert.is(count, 1);
  for (const e of errors) {
    assert.instance(e, CredentialsUnavailableError);
    assert.is(e, errors[0]);
  }
});

test('recovery: after a failure and its window, a working provider is used again', async () => {
  let t = 0;
  let broken = true;
  let count = 0;
  const provider: AwsCredentialIdentityProvider = async () => {
    count++;
    if (broken) throw new Error('expired SSO token');
    return CREDS;
  };
  const source = createCredentials(provider, { failureTtlMs: 100, now: () => t });
  await rejection(source.get());
  broken = false;
  t = 50;
  await rejection(source.get()); // still inside the window
  t = 100;
  assert.equal(await source.get(), CREDS);
  assert.equal(await source.get(), CREDS); // and the failure is forgotten
  assert.is(count, 2);
});

// Regression: a provider that throws synchronously (a plain function, not an async one)
// leaves `pending` set to the rejected promise of that attempt: attempt()'s `finally`
// clears `pending` before `pending ??= attempt()` assigns it, so once the failure
// window passes, get() returns the same stale rejection forever and never asks again.
test('a provider that throws synchronously is asked again after the failure window', async () => {
  let t = 0;
  const { provider, calls } = fakeProvider('throw-sync', 'ok');
  const source = createCredentials(provider, { failureTtlMs: 100, now: () => t });
  const err = await rejection(source.get());
  assert.instance(err, CredentialsUnavailableError);
  t = 100;
  const creds = await source.get().catch((e: unknown) => e);
  assert.is(calls.count, 2, 'provider was not called again after the window');
  assert.equal(creds, { ...CREDS, accessKeyId: 'AKID2' });
});

test('a lookup that hangs fails after lookupTimeoutMs: a 503, not a hung request', async () => {
  const provider = (() => new Promise(() => {})) as AwsCredentialIdentityProvider;
  const source = createCredentials(provider, { lookupTimeoutMs: 30 });
  const t0 = Date.now();
  const err = await rejection(source.get());
  assert.instance(err, CredentialsUnavailableError);
  assert.ok(Date.now() - t0 < 1000);
});

test('regression: after a lookup times out, the next one goes to a new provider, not to the hung call', async () => {
  // The SDK's chain joins a forced refresh to the one still running: after one hung call,
  // every lookup timed out with it until it ended, although the source answered again.
  const hung = { calls: 0 };
  const provider = (() => (hung.calls++, new Promise(() => {}))) as AwsCredentialIdentityProvider;
  let renewed = 0;
  const source = createCredentials(provider, {
    lookupTimeoutMs: 30,
    failureTtlMs: 0,
    renew: () => (renewed++, (async () => ({ ...CREDS, accessKeyId: 'AKIDNEW' })) as AwsCredentialIdentityProvider),
  });
  assert.instance(await rejection(source.get()), CredentialsUnavailableError);
  assert.is(renewed, 1);
  assert.is((await source.get()).accessKeyId, 'AKIDNEW');
  assert.is(hung.calls, 1, 'the hung provider was not asked again');
});

test('renewals stop while two given-up lookups still run: a source that keeps hanging piles nothing up', async () => {
  // Each renewal walks a new chain, and the call given up on goes on (credential_process has
  // no time limit of its own): renewing at every timeout started one more process each time.
  const pending: (() => void)[] = [];
  const hanging = (() => new Promise((_, reject) => pending.push(() => reject(new Error('ended'))))) as AwsCredentialIdentityProvider;
  let renewed = 0;
  const source = createCredentials(hanging, { lookupTimeoutMs: 20, failureTtlMs: 0, renew: () => (renewed++, hanging) });
  for (let i = 0; i < 5; i++) await rejection(source.get());
  assert.is(renewed, 2, 'two renewals, then the lookups wait on the last chain');
  for (const end of pending.splice(0)) end();
  await tick();
  await rejection(source.get());
  assert.is(renewed, 3, 'once the hung calls end, a timeout renews again');
});

/** Runs `fn` with the AWS environment replaced by `env` and https.request recording the hosts asked; no request leaves. */
async function hostsAsked(env: Record<string, string>, fn: () => Promise<unknown>): Promise<string[]> {
  const saved = { ...process.env };
  const hosts: string[] = [];
  const original = https.request;
  try {
    for (const k of Object.keys(process.env)) if (k.startsWith('AWS_')) delete process.env[k];
    Object.assign(process.env, { AWS_EC2_METADATA_DISABLED: 'true' }, env);
    (https as { request: unknown }).request = (opts: https.RequestOptions) => {
      hosts.push(String(opts.hostname ?? opts.host));
      throw new Error('no network in tests');
    };
    await fn().catch(() => undefined);
  } finally {
    (https as { request: unknown }).request = original;
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
  }
  return hosts;
}

test('defaultChain: SSO still asks the profile’s sso_region, whatever --region says', async () => {
  // Our region given as the chain's clientConfig.region overrode sso_region: IAM Identity
  // Center answers in its home region only, so SSO users elsewhere got no credentials.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lambda-sign-sso-'));
  try {
    fs.writeFileSync(
      path.join(dir, 'config'),
      '[profile dev]\nsso_session = corp\nsso_account_id = 123456789012\nsso_role_name = Dev\n\n' +
        '[sso-session corp]\nsso_region = us-east-1\nsso_start_url = https://example.awsapps.com/start\n',
    );
    const cache = path.join(dir, 'home', '.aws', 'sso', 'cache');
    fs.mkdirSync(cache, { recursive: true });
    const token = { accessToken: 'token', expiresAt: new Date(Date.now() + 3600_000).toISOString(), region: 'us-east-1', startUrl: 'https://example.awsapps.com/start' };
    fs.writeFileSync(path.join(cache, `${createHash('sha1').update('corp').digest('hex')}.json`), JSON.stringify(token));
    const hosts = await hostsAsked(
      { AWS_CONFIG_FILE: path.join(dir, 'config'), AWS_SHARED_CREDENTIALS_FILE: path.join(dir, 'none'), HOME: path.join(dir, 'home') },
      () => defaultChain({ profile: 'dev', region: 'eu-west-1' })(),
    );
    assert.ok(hosts.length > 0, 'the SSO portal was asked');
    assert.ok(hosts.every((h) => h === 'portal.sso.us-east-1.amazonaws.com'), hosts.join(', '));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('defaultChain hands our region to the chain’s STS client (web identity in aws-cn)', async () => {
  // Without it, STS went to us-east-1 whatever --region said, where an aws-cn role cannot
  // be assumed. The token file is read; the STS call is stopped before it leaves.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lambda-sign-wi-'));
  try {
    fs.writeFileSync(path.join(dir, 'token'), 'eyJhbGciOiJub25lIn0.e30.');
    const hosts = await hostsAsked(
      {
        AWS_WEB_IDENTITY_TOKEN_FILE: path.join(dir, 'token'),
        AWS_ROLE_ARN: 'arn:aws-cn:iam::123456789012:role/lambda-sign',
        AWS_CONFIG_FILE: path.join(dir, 'none'),
        AWS_SHARED_CREDENTIALS_FILE: path.join(dir, 'none'),
      },
      () => defaultChain({ region: 'cn-north-1' })(),
    );
    assert.ok(hosts.length > 0, 'STS was asked');
    assert.ok(hosts.every((h) => h.endsWith('cn-north-1.amazonaws.com.cn')), hosts.join(', '));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('staticCredentials always answers the same credentials', async () => {
  const source = staticCredentials(CREDS);
  assert.equal(await source.get(), CREDS);
  assert.equal(await source.get(), CREDS);
  assert.is(source.peek?.(), CREDS);
});

test('peek: the credentials in hand while valid, nothing before the first lookup or after expiry', async () => {
  const clock = { t: 0 };
  const { provider, calls } = expiring(clock, 10 * 60_000);
  const source = createCredentials(provider, { now: () => clock.t, refreshRetryMs: 1e9 });
  assert.is(source.peek?.(), undefined, 'nothing looked up yet');
  assert.is(calls.length, 0, 'peek never starts a lookup of its own');
  const first = await source.get();
  assert.is(source.peek?.(), first, 'the same object get() answers');
  clock.t = 11 * 60_000; // expired
  assert.is(source.peek?.(), undefined, 'expired credentials are never handed out');
});

test('peek in the last five minutes starts the one background refresh, as get() does', async () => {
  const clock = { t: 0 };
  const { provider, calls } = expiring(clock, 10 * 60_000);
  const source = createCredentials(provider, { now: () => clock.t });
  await source.get();
  clock.t = 6 * 60_000; // 4 minutes left
  assert.is(source.peek?.()?.accessKeyId, 'ASIA1', 'the current ones keep serving');
  assert.is(source.peek?.()?.accessKeyId, 'ASIA1');
  await tick();
  assert.is(calls.length, 2, 'one refresh for both peeks');
  assert.is(source.peek?.()?.accessKeyId, 'ASIA2');
});

test('peek after a failed lookup: undefined (get() answers the 503)', async () => {
  const { provider } = fakeProvider('fail');
  const source = createCredentials(provider);
  await rejection(source.get());
  assert.is(source.peek?.(), undefined);
});

test.run();
