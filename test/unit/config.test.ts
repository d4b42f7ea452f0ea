// config.ts: defaults, environment fallbacks and their precedence, the derived endpoint
// and signing host, and one ConfigError naming the flag for every invalid value.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { buildConfig, ConfigError, defaultEndpoint, type Env, type RawOptions } from '../../src/config.ts';

function configError(raw: RawOptions, env: Env = {}): ConfigError {
  try {
    buildConfig(raw, env);
  } catch (err) {
    assert.instance(err, ConfigError);
    return err as ConfigError;
  }
  assert.unreachable(`accepted ${JSON.stringify(raw)} with env ${JSON.stringify(env)}`);
  throw new Error('unreachable');
}

test('defaults', () => {
  const c = buildConfig({ region: 'us-west-2' });
  assert.equal(
    {
      region: c.region,
      socketPath: c.socketPath,
      socketMode: c.socketMode,
      listenFd: c.listenFd,
      endpoint: c.endpoint.href,
      signingHost: c.signingHost,
      allowFunctions: [...c.allowFunctions],
      maxBody: c.maxBody,
      timeoutMs: c.timeoutMs,
      logLevel: c.logLevel,
      profile: c.profile,
    },
    {
      region: 'us-west-2',
      socketPath: '/run/lambda-sign.sock',
      socketMode: 0o660,
      listenFd: undefined,
      endpoint: 'https://lambda.us-west-2.amazonaws.com/',
      signingHost: 'lambda.us-west-2.amazonaws.com',
      allowFunctions: [],
      maxBody: 6291456,
      timeoutMs: 900_000,
      logLevel: 'info',
      profile: undefined,
    },
  );
});

test('explicit values are taken as given', () => {
  const c = buildConfig(
    {
      region: 'eu-central-1',
      socket: '/tmp/ls.sock',
      socketMode: '0600',
      allowFunction: ['render-*', 'thumb?'],
      maxBody: '1024',
      timeout: '30',
      logLevel: 'debug',
      profile: 'prod',
    },
    {},
    3,
  );
  assert.is(c.socketPath, '/tmp/ls.sock');
  assert.is(c.socketMode, 0o600);
  assert.is(c.listenFd, 3);
  assert.equal([...c.allowFunctions], ['render-*', 'thumb?']);
  assert.is(c.maxBody, 1024);
  assert.is(c.timeoutMs, 30_000);
  assert.is(c.logLevel, 'debug');
  assert.is(c.profile, 'prod');
  assert.is(c.signingHost, 'lambda.eu-central-1.amazonaws.com');
});

// [what, options, env, region]
const REGIONS: [string, RawOptions, Env, string][] = [
  ['flag beats both variables', { region: 'eu-west-1' }, { AWS_REGION: 'us-east-1', AWS_DEFAULT_REGION: 'ap-south-1' }, 'eu-west-1'],
  ['AWS_REGION beats AWS_DEFAULT_REGION', {}, { AWS_REGION: 'us-east-1', AWS_DEFAULT_REGION: 'ap-south-1' }, 'us-east-1'],
  ['AWS_DEFAULT_REGION alone', {}, { AWS_DEFAULT_REGION: 'ap-south-1' }, 'ap-south-1'],
  ['empty AWS_REGION falls through', {}, { AWS_REGION: '', AWS_DEFAULT_REGION: 'ap-south-1' }, 'ap-south-1'],
];

for (const [what, raw, env, region] of REGIONS) {
  test(`region: ${what}`, () => {
    const c = buildConfig(raw, env);
    assert.is(c.region, region);
    assert.is(c.endpoint.href, `https://lambda.${region}.amazonaws.com/`);
  });
}

// [what, options, env, endpoint href]
const ENDPOINTS: [string, RawOptions, Env, string][] = [
  [
    'flag beats both variables',
    { endpoint: 'https://flag.example:8443' },
    { AWS_ENDPOINT_URL_LAMBDA: 'https://lambda-var.example', AWS_ENDPOINT_URL: 'https://generic.example' },
    'https://flag.example:8443/',
  ],
  [
    'AWS_ENDPOINT_URL_LAMBDA beats AWS_ENDPOINT_URL',
    {},
    { AWS_ENDPOINT_URL_LAMBDA: 'https://lambda-var.example', AWS_ENDPOINT_URL: 'https://generic.example' },
    'https://lambda-var.example/',
  ],
  ['AWS_ENDPOINT_URL alone', {}, { AWS_ENDPOINT_URL: 'https://generic.example' }, 'https://generic.example/'],
  ['empty variables fall back to the default', {}, { AWS_ENDPOINT_URL_LAMBDA: '', AWS_ENDPOINT_URL: '' }, 'https://lambda.us-west-2.amazonaws.com/'],
];

for (const [what, raw, env, href] of ENDPOINTS) {
  test(`endpoint: ${what}`, () => {
    assert.is(buildConfig({ region: 'us-west-2', ...raw }, env).endpoint.href, href);
  });
}

test('profile: flag beats AWS_PROFILE; AWS_PROFILE used alone; neither → undefined', () => {
  assert.is(buildConfig({ region: 'us-west-2', profile: 'flag' }, { AWS_PROFILE: 'env' }).profile, 'flag');
  assert.is(buildConfig({ region: 'us-west-2' }, { AWS_PROFILE: 'env' }).profile, 'env');
  assert.is(buildConfig({ region: 'us-west-2' }, {}).profile, undefined);
});

const DEFAULT_ENDPOINTS: [string, string][] = [
  ['us-east-1', 'https://lambda.us-east-1.amazonaws.com/'],
  ['cn-north-1', 'https://lambda.cn-north-1.amazonaws.com.cn/'],
  ['cn-northwest-1', 'https://lambda.cn-northwest-1.amazonaws.com.cn/'],
  ['us-gov-west-1', 'https://lambda.us-gov-west-1.amazonaws.com/'],
  ['ap-southeast-2', 'https://lambda.ap-southeast-2.amazonaws.com/'],
  // Partitions with DNS suffixes of their own (the AWS SDK's partitions table); these
  // were built on amazonaws.com.
  ['eusc-de-east-1', 'https://lambda.eusc-de-east-1.amazonaws.eu/'],
  ['us-iso-east-1', 'https://lambda.us-iso-east-1.c2s.ic.gov/'],
  ['us-isob-east-1', 'https://lambda.us-isob-east-1.sc2s.sgov.gov/'],
  ['us-isof-south-1', 'https://lambda.us-isof-south-1.csp.hci.ic.gov/'],
  ['eu-isoe-west-1', 'https://lambda.eu-isoe-west-1.cloud.adc-e.uk/'],
];

for (const [region, href] of DEFAULT_ENDPOINTS) {
  test(`default endpoint for ${region}`, () => {
    assert.is(new URL(defaultEndpoint(region)).href, href);
    const c = buildConfig({ region });
    assert.is(c.endpoint.href, href);
    assert.is(c.signingHost, new URL(href).host);
  });
}

const SIGNING_HOSTS: [string, string][] = [
  ['https://127.0.0.1:8443', '127.0.0.1:8443'],
  ['https://lambda.example:443', 'lambda.example'], // the default port is not part of Host
  ['http://localhost:80', 'localhost'],
  ['http://localhost:9001', 'localhost:9001'],
  ['https://LAMBDA.Example.com/', 'lambda.example.com'],
  ['https://[::1]:8443', '[::1]:8443'],
];

for (const [endpoint, host] of SIGNING_HOSTS) {
  test(`signingHost of ${endpoint} is ${host}`, () => {
    assert.is(buildConfig({ region: 'us-west-2', endpoint }).signingHost, host);
  });
}

test('--timeout takes fractional seconds', () => {
  assert.is(buildConfig({ region: 'us-west-2', timeout: '0.5' }).timeoutMs, 500);
  assert.is(buildConfig({ region: 'us-west-2', timeout: '3600' }).timeoutMs, 3_600_000);
});

test('boundaries that are accepted: --max-body 1 and 1 GiB, socket path of 107 bytes', () => {
  assert.is(buildConfig({ region: 'us-west-2', maxBody: '1' }).maxBody, 1);
  assert.is(buildConfig({ region: 'us-west-2', maxBody: String(2 ** 30) }).maxBody, 2 ** 30);
  const path = '/tmp/' + 's'.repeat(102);
  assert.is(buildConfig({ region: 'us-west-2', socket: path }).socketPath, path);
});

// [what, options, env, flag the message starts with]
const INVALID: [string, RawOptions, Env, string][] = [
  ['no region anywhere', {}, {}, '--region'],
  ['region not a region', { region: 'mars' }, {}, '--region'],
  ['region with upper case', { region: 'US-WEST-2' }, {}, '--region'],
  ['region from AWS_REGION invalid', {}, { AWS_REGION: 'us west 2' }, '--region'],
  ['endpoint not a URL', { region: 'us-west-2', endpoint: 'lambda.example' }, {}, '--endpoint'],
  ['endpoint with a path', { region: 'us-west-2', endpoint: 'https://lambda.example/prefix' }, {}, '--endpoint'],
  ['endpoint with a query', { region: 'us-west-2', endpoint: 'https://lambda.example/?a=1' }, {}, '--endpoint'],
  ['endpoint with a fragment', { region: 'us-west-2', endpoint: 'https://lambda.example/#x' }, {}, '--endpoint'],
  ['endpoint with credentials', { region: 'us-west-2', endpoint: 'https://user:pass@lambda.example' }, {}, '--endpoint'],
  ['endpoint with a user only', { region: 'us-west-2', endpoint: 'https://user@lambda.example' }, {}, '--endpoint'],
  ['endpoint over ftp', { region: 'us-west-2', endpoint: 'ftp://lambda.example' }, {}, '--endpoint'],
  ['endpoint from AWS_ENDPOINT_URL with a path', { region: 'us-west-2' }, { AWS_ENDPOINT_URL: 'https://x.example/p' }, 'AWS_ENDPOINT_URL'],
  ['endpoint from AWS_ENDPOINT_URL_LAMBDA not a URL', { region: 'us-west-2' }, { AWS_ENDPOINT_URL_LAMBDA: 'nope' }, 'AWS_ENDPOINT_URL_LAMBDA'],
  ['socket mode not octal', { region: 'us-west-2', socketMode: '888' }, {}, '--socket-mode'],
  ['socket mode letters', { region: 'us-west-2', socketMode: 'rw' }, {}, '--socket-mode'],
  ['socket mode too long', { region: 'us-west-2', socketMode: '06600' }, {}, '--socket-mode'],
  ['max body 0', { region: 'us-west-2', maxBody: '0' }, {}, '--max-body'],
  ['max body -1', { region: 'us-west-2', maxBody: '-1' }, {}, '--max-body'],
  ['max body abc', { region: 'us-west-2', maxBody: 'abc' }, {}, '--max-body'],
  ['max body 1.5', { region: 'us-west-2', maxBody: '1.5' }, {}, '--max-body'],
  ['max body over 1 GiB', { region: 'us-west-2', maxBody: String(2 ** 30 + 1) }, {}, '--max-body'],
  ['max body empty', { region: 'us-west-2', maxBody: '' }, {}, '--max-body'],
  ['timeout 0', { region: 'us-west-2', timeout: '0' }, {}, '--timeout'],
  ['timeout 0.0', { region: 'us-west-2', timeout: '0.0' }, {}, '--timeout'],
  ['timeout abc', { region: 'us-west-2', timeout: 'abc' }, {}, '--timeout'],
  ['timeout -5', { region: 'us-west-2', timeout: '-5' }, {}, '--timeout'],
  ['timeout over an hour', { region: 'us-west-2', timeout: '3601' }, {}, '--timeout'],
  ['log level unknown', { region: 'us-west-2', logLevel: 'verbose' }, {}, '--log-level'],
  ['log level in upper case', { region: 'us-west-2', logLevel: 'INFO' }, {}, '--log-level'],
  ['allow-function with a dot', { region: 'us-west-2', allowFunction: ['my.fn'] }, {}, '--allow-function'],
  ['allow-function with a slash', { region: 'us-west-2', allowFunction: ['ok', 'a/b'] }, {}, '--allow-function'],
  ['allow-function with a class', { region: 'us-west-2', allowFunction: ['[ab]'] }, {}, '--allow-function'],
  ['allow-function with an alternation', { region: 'us-west-2', allowFunction: ['a|b'] }, {}, '--allow-function'],
  ['allow-function with a colon', { region: 'us-west-2', allowFunction: ['fn:prod'] }, {}, '--allow-function'],
  ['allow-function empty', { region: 'us-west-2', allowFunction: [''] }, {}, '--allow-function'],
  ['allow-function of 65 characters', { region: 'us-west-2', allowFunction: ['a'.repeat(65)] }, {}, '--allow-function'],
  ['socket path of 108 bytes', { region: 'us-west-2', socket: '/tmp/' + 's'.repeat(103) }, {}, '--socket'],
  ['socket path of 108 bytes in UTF-8', { region: 'us-west-2', socket: '/tmp/' + 'é'.repeat(51) + 's' }, {}, '--socket'],
  ['socket path empty', { region: 'us-west-2', socket: '' }, {}, '--socket'],
];

for (const [what, raw, env, flag] of INVALID) {
  test(`rejects ${what} with a ${flag} ConfigError`, () => {
    const e = configError(raw, env);
    assert.is(e.option, flag);
    assert.ok(e.message.startsWith(`${flag}: `), e.message);
  });
}

// Regression: `--timeout 0.0001` passed the "more than 0" check, then rounded to
// timeoutMs 0, a timer that fires at once: every invocation would be a 504.
test('a --timeout that rounds to 0 ms is rejected or kept above 0', () => {
  let timeoutMs: number | undefined;
  try {
    timeoutMs = buildConfig({ region: 'us-west-2', timeout: '0.0001' }).timeoutMs;
  } catch (err) {
    assert.instance(err, ConfigError);
    assert.ok((err as Error).message.startsWith('--timeout'));
    return;
  }
  assert.ok(timeoutMs > 0, `timeoutMs is ${timeoutMs}`);
});

test('the result is frozen, its allowlist too', () => {
  const c = buildConfig({ region: 'us-west-2', allowFunction: ['a-*'] });
  assert.ok(Object.isFrozen(c));
  assert.ok(Object.isFrozen(c.allowFunctions));
  // ES modules are strict: writing to a frozen object throws.
  assert.throws(() => {
    (c as { region: string }).region = 'eu-west-1';
  }, TypeError);
  assert.throws(() => (c.allowFunctions as string[]).push('*'), TypeError);
  assert.is(c.region, 'us-west-2');
  assert.equal([...c.allowFunctions], ['a-*']);
});

test('the caller’s allow-function array is not the one kept', () => {
  const globs = ['a-*'];
  const c = buildConfig({ region: 'us-west-2', allowFunction: globs });
  globs.push('*');
  assert.equal([...c.allowFunctions], ['a-*']);
});

test.run();
