// route.ts: the invoke path grammar, Lambda's function-name rules, Qualifier, the
// upstream path and target, the 404/405 surface, and the --allow-function globs.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  checkAllowed,
  compileAllowlist,
  invokePath,
  parseFunctionRef,
  parseQualifier,
  route,
  type FunctionRef,
  type Route,
} from '../../src/route.ts';
import { LambdaSignError, MethodNotAllowedError } from '../../src/errors.ts';

const PREFIX = '/2015-03-31/functions/';
const SUFFIX = '/invocations';
const invoke = (segment: string, query = '') => `${PREFIX}${segment}${SUFFIX}${query}`;
const ARN = 'arn:aws:lambda:us-west-2:123456789012:function:';

type Invoke = Extract<Route, { kind: 'invoke' }>;

function invokeRoute(target: string, method = 'POST'): Invoke {
  const r = route(method, target);
  assert.is(r.kind, 'invoke', `${method} ${target} should be an invoke route`);
  return r as Invoke;
}

/** What route() threw: code, status and, for 405, allow. Fails the test if nothing was thrown. */
function failure(method: string, target: string): { code: string; status: number; allow?: string } {
  try {
    route(method, target);
  } catch (err) {
    assert.ok(err instanceof LambdaSignError, `${method} ${target}: expected a LambdaSignError, got ${String(err)}`);
    const e = err as LambdaSignError;
    return { code: e.code, status: e.status, allow: e instanceof MethodNotAllowedError ? e.allow : undefined };
  }
  assert.unreachable(`${method} ${target} was accepted`);
  throw new Error('unreachable');
}

function parseFailure(id: string): string {
  try {
    parseFunctionRef(id);
  } catch (err) {
    assert.ok(err instanceof LambdaSignError);
    return (err as LambdaSignError).code;
  }
  assert.unreachable(`${JSON.stringify(id)} was accepted`);
  throw new Error('unreachable');
}

// ---------------------------------------------------------------------------------------
// Accepted function names: the raw path segment, what it decodes to, and the wire path.

interface Accepted {
  segment: string;
  id: string;
  name: string;
  qualifier?: string;
  account?: string;
  region?: string;
  wire: string;
}

const ACCEPTED: Accepted[] = [
  { segment: 'my-fn', id: 'my-fn', name: 'my-fn', wire: 'my-fn' },
  { segment: 'My_Fn-2', id: 'My_Fn-2', name: 'My_Fn-2', wire: 'My_Fn-2' },
  { segment: 'a'.repeat(64), id: 'a'.repeat(64), name: 'a'.repeat(64), wire: 'a'.repeat(64) },
  { segment: 'my-fn:prod', id: 'my-fn:prod', name: 'my-fn', qualifier: 'prod', wire: 'my-fn%3Aprod' },
  { segment: 'my-fn%3Aprod', id: 'my-fn:prod', name: 'my-fn', qualifier: 'prod', wire: 'my-fn%3Aprod' },
  { segment: 'my-fn%3aprod', id: 'my-fn:prod', name: 'my-fn', qualifier: 'prod', wire: 'my-fn%3Aprod' },
  { segment: 'my-fn:$LATEST', id: 'my-fn:$LATEST', name: 'my-fn', qualifier: '$LATEST', wire: 'my-fn%3A%24LATEST' },
  { segment: 'my-fn%3A%24LATEST', id: 'my-fn:$LATEST', name: 'my-fn', qualifier: '$LATEST', wire: 'my-fn%3A%24LATEST' },
  { segment: 'my-fn:7', id: 'my-fn:7', name: 'my-fn', qualifier: '7', wire: 'my-fn%3A7' },
  {
    segment: '123456789012:function:my-fn',
    id: '123456789012:function:my-fn',
    name: 'my-fn',
    account: '123456789012',
    wire: '123456789012%3Afunction%3Amy-fn',
  },
  {
    segment: '123456789012%3Afunction%3Amy-fn%3Aprod',
    id: '123456789012:function:my-fn:prod',
    name: 'my-fn',
    qualifier: 'prod',
    account: '123456789012',
    wire: '123456789012%3Afunction%3Amy-fn%3Aprod',
  },
  {
    segment: `${ARN}my-fn`,
    id: `${ARN}my-fn`,
    name: 'my-fn',
    account: '123456789012',
    region: 'us-west-2',
    wire: 'arn%3Aaws%3Alambda%3Aus-west-2%3A123456789012%3Afunction%3Amy-fn',
  },
  {
    segment: 'arn%3Aaws%3Alambda%3Aus-west-2%3A123456789012%3Afunction%3Amy-fn%3Alive',
    id: `${ARN}my-fn:live`,
    name: 'my-fn',
    qualifier: 'live',
    account: '123456789012',
    region: 'us-west-2',
    wire: 'arn%3Aaws%3Alambda%3Aus-west-2%3A123456789012%3Afunction%3Amy-fn%3Alive',
  },
  {
    segment: 'arn%3aaws%3alambda%3aus-west-2%3a123456789012%3afunction%3amy-fn%3a%24LATEST',
    id: `${ARN}my-fn:$LATEST`,
    name: 'my-fn',
    qualifier: '$LATEST',
    account: '123456789012',
    region: 'us-west-2',
    wire: 'arn%3Aaws%3Alambda%3Aus-west-2%3A123456789012%3Afunction%3Amy-fn%3A%24LATEST',
  },
  {
    segment: 'arn:aws-cn:lambda:cn-north-1:123456789012:function:my-fn',
    id: 'arn:aws-cn:lambda:cn-north-1:123456789012:function:my-fn',
    name: 'my-fn',
    account: '123456789012',
    region: 'cn-north-1',
    wire: 'arn%3Aaws-cn%3Alambda%3Acn-north-1%3A123456789012%3Afunction%3Amy-fn',
  },
  {
    segment: 'arn:aws-us-gov:lambda:us-gov-west-1:123456789012:function:my-fn:3',
    id: 'arn:aws-us-gov:lambda:us-gov-west-1:123456789012:function:my-fn:3',
    name: 'my-fn',
    qualifier: '3',
    account: '123456789012',
    region: 'us-gov-west-1',
    wire: 'arn%3Aaws-us-gov%3Alambda%3Aus-gov-west-1%3A123456789012%3Afunction%3Amy-fn%3A3',
  },
  // Regions of more than one word after the prefix were refused as invalid names.
  {
    segment: 'arn:aws-eusc:lambda:eusc-de-east-1:123456789012:function:my-fn',
    id: 'arn:aws-eusc:lambda:eusc-de-east-1:123456789012:function:my-fn',
    name: 'my-fn',
    account: '123456789012',
    region: 'eusc-de-east-1',
    wire: 'arn%3Aaws-eusc%3Alambda%3Aeusc-de-east-1%3A123456789012%3Afunction%3Amy-fn',
  },
  {
    segment: 'arn:aws-iso-b:lambda:us-isob-east-1:123456789012:function:my-fn',
    id: 'arn:aws-iso-b:lambda:us-isob-east-1:123456789012:function:my-fn',
    name: 'my-fn',
    account: '123456789012',
    region: 'us-isob-east-1',
    wire: 'arn%3Aaws-iso-b%3Alambda%3Aus-isob-east-1%3A123456789012%3Afunction%3Amy-fn',
  },
];

for (const c of ACCEPTED) {
  test(`accepts ${c.segment}: parts, bare name and upstream path`, () => {
    const r = invokeRoute(invoke(c.segment));
    assert.equal(
      { id: r.fn.id, name: r.fn.name, qualifier: r.fn.qualifier, account: r.fn.account, region: r.fn.region },
      { id: c.id, name: c.name, qualifier: c.qualifier, account: c.account, region: c.region },
    );
    assert.is(r.qualifier, undefined, 'no ?Qualifier= was given');
    assert.is(r.upstreamPath, `${PREFIX}${c.wire}${SUFFIX}`);
    assert.is(r.upstreamTarget, r.upstreamPath);
  });
}

test('upstream path encodes the id exactly once (no %25), and is what invokePath returns', () => {
  for (const c of ACCEPTED) {
    const r = invokeRoute(invoke(c.segment));
    assert.not.ok(r.upstreamPath.includes('%25'), r.upstreamPath);
    assert.not.ok(r.upstreamPath.slice(PREFIX.length).includes(':'), r.upstreamPath);
    assert.is(invokePath(r.fn), r.upstreamPath);
    assert.is(decodeURIComponent(r.upstreamPath.slice(PREFIX.length, -SUFFIX.length)), c.id);
  }
});

test('a 170-character id is accepted (Lambda maximum)', () => {
  const id = `${ARN}${'n'.repeat(64)}:${'q'.repeat(58)}`;
  assert.is(id.length, 170);
  const fn = parseFunctionRef(id);
  assert.is(fn.name, 'n'.repeat(64));
  assert.is(invokeRoute(invoke(encodeURIComponent(id))).fn.id, id);
});

// ---------------------------------------------------------------------------------------
// Rejected function names.

const ID_171 = `${ARN}${'n'.repeat(64)}:${'q'.repeat(59)}`;

const REJECTED_IDS: [string, string][] = [
  ['empty', ''],
  ['65-character name', 'a'.repeat(65)],
  ['171-character id', ID_171],
  ['129-character qualifier', `my-fn:${'q'.repeat(129)}`],
  ['dot', 'my.fn'],
  ['dot-dot', '..'],
  ['single dot', '.'],
  ['slash', 'my/fn'],
  ['space', 'my fn'],
  ['unicode', 'fonctión'],
  ['empty qualifier', 'my-fn:'],
  ['two qualifiers', 'my-fn:a:b'],
  ['$latest in lower case', 'my-fn:$latest'],
  ['dollar elsewhere', 'my-fn:$PROD'],
  ['ARN without account', 'arn:aws:lambda:us-west-2:function:my-fn'],
  ['ARN without region', 'arn:aws:lambda::123456789012:function:my-fn'],
  ['ARN of another service', 'arn:aws:s3:us-west-2:123456789012:function:my-fn'],
  ['ARN of a layer', 'arn:aws:lambda:us-west-2:123456789012:layer:my-fn'],
  ['11-digit account', '12345678901:function:my-fn'],
  ['partial ARN with two qualifiers', '123456789012:function:my-fn:a:b'],
  ['percent sign', 'my%fn'],
  ['newline', 'my-fn\n'],
];

for (const [what, id] of REJECTED_IDS) {
  test(`parseFunctionRef rejects ${what}`, () => {
    assert.is(parseFailure(id), 'InvalidFunctionName');
  });
}

const REJECTED_SEGMENTS: [string, string][] = [
  ['65-character name', 'a'.repeat(65)],
  ['171-character id', encodeURIComponent(ID_171)],
  ['dot', 'my.fn'],
  ['dot-dot', '..'],
  ['encoded dot-dot', '%2E%2E'],
  ['encoded slash', 'my%2Ffn'],
  ['encoded slash, lower case', 'my%2ffn'],
  ['double-encoded slash', 'my%252Ffn'],
  ['bad percent-encoding', 'my%ZZfn'],
  ['truncated percent-encoding', 'my-fn%3'],
  ['invalid UTF-8', 'my%C3fn'],
  ['encoded space', 'my%20fn'],
  ['encoded unicode', 'fonct%C3%AEon'],
  ['raw unicode', 'fonctíon'],
  ['ARN without account', 'arn%3Aaws%3Alambda%3Aus-west-2%3Afunction%3Amy-fn'],
  ['ARN of another service', 'arn:aws:sqs:us-west-2:123456789012:function:my-fn'],
  ['encoded NUL', 'my-fn%00'],
];

for (const [what, segment] of REJECTED_SEGMENTS) {
  test(`route answers 400 InvalidFunctionName for ${what}`, () => {
    assert.equal(failure('POST', invoke(segment)), { code: 'InvalidFunctionName', status: 400, allow: undefined });
  });
}

// ---------------------------------------------------------------------------------------
// Qualifier.

const QUALIFIERS: [string, string | undefined, string][] = [
  // query, qualifier, query as forwarded
  ['?Qualifier=prod', 'prod', '?Qualifier=prod'],
  ['?Qualifier=7', '7', '?Qualifier=7'],
  ['?Qualifier=$LATEST', '$LATEST', '?Qualifier=%24LATEST'],
  ['?Qualifier=%24LATEST', '$LATEST', '?Qualifier=%24LATEST'],
  ['?Qualifier=' + 'q'.repeat(128), 'q'.repeat(128), '?Qualifier=' + 'q'.repeat(128)],
  ['?cb=123&Qualifier=live&x', 'live', '?Qualifier=live'],
  ['?Qualifier=live&X-Amz-Signature=abc&X-Amz-Credential=AKID', 'live', '?Qualifier=live'],
  ['?cb=123', undefined, ''],
  ['?qualifier=prod', undefined, ''], // parameter names are case-sensitive
  ['?', undefined, ''],
  ['', undefined, ''],
];

for (const [query, qualifier, forwarded] of QUALIFIERS) {
  test(`Qualifier from ${JSON.stringify(query)}`, () => {
    const r = invokeRoute(invoke('my-fn', query));
    assert.is(r.qualifier, qualifier);
    assert.is(r.upstreamPath, `${PREFIX}my-fn${SUFFIX}`);
    assert.is(r.upstreamTarget, `${PREFIX}my-fn${SUFFIX}${forwarded}`);
  });
}

const BAD_QUALIFIERS: [string, string][] = [
  ['empty', '?Qualifier='],
  ['no value', '?Qualifier'],
  ['dot', '?Qualifier=v1.2'],
  ['encoded slash', '?Qualifier=a%2Fb'],
  ['plus (a space)', '?Qualifier=a+b'],
  ['bad percent-encoding', '?Qualifier=%ZZ'],
  ['129 characters', '?Qualifier=' + 'q'.repeat(129)],
  ['$latest in lower case', '?Qualifier=$latest'],
  ['duplicated', '?Qualifier=prod&Qualifier=prod'],
  ['duplicated, second one bad', '?Qualifier=prod&Qualifier=..'],
];

for (const [what, query] of BAD_QUALIFIERS) {
  test(`route answers 400 InvalidQualifier for a Qualifier that is ${what}`, () => {
    assert.equal(failure('POST', invoke('my-fn', query)), { code: 'InvalidQualifier', status: 400, allow: undefined });
  });
}

test('parseQualifier returns valid values and rejects invalid ones', () => {
  for (const ok of ['$LATEST', '1', 'prod', 'Blue_Green-2', 'q'.repeat(128)]) assert.is(parseQualifier(ok), ok);
  for (const bad of ['', '$latest', 'a.b', 'a b', 'a/b', 'q'.repeat(129), 'é']) {
    assert.throws(() => parseQualifier(bad), (e: unknown) => (e as LambdaSignError).code === 'InvalidQualifier', bad);
  }
});

test('a Qualifier in the name and one in the query are both kept as given', () => {
  const r = invokeRoute(invoke('my-fn%3Aprod', '?Qualifier=prod'));
  assert.is(r.fn.qualifier, 'prod');
  assert.is(r.qualifier, 'prod');
  assert.is(r.upstreamTarget, `${PREFIX}my-fn%3Aprod${SUFFIX}?Qualifier=prod`);
});

// ---------------------------------------------------------------------------------------
// Routing statuses.

const STATUSES: [string, string, { code: string; status: number; allow?: string }][] = [
  ['GET', '/', { code: 'NotFound', status: 404 }],
  ['POST', '/', { code: 'NotFound', status: 404 }],
  ['GET', '/favicon.ico', { code: 'NotFound', status: 404 }],
  ['POST', '/2015-03-31/functions//invocations', { code: 'NotFound', status: 404 }],
  ['GET', '/2015-03-31/functions//invocations', { code: 'NotFound', status: 404 }],
  ['POST', '/2015-03-31/functions/invocations', { code: 'NotFound', status: 404 }],
  ['POST', '/2015-03-31/functions/a/b/invocations', { code: 'NotFound', status: 404 }],
  ['POST', '/2015-03-31/functions/my-fn/invocations/extra', { code: 'NotFound', status: 404 }],
  ['POST', '/2015-03-31/functions/my-fn/invocations/', { code: 'NotFound', status: 404 }],
  ['POST', '/2015-03-31/functions/my-fn', { code: 'NotFound', status: 404 }],
  ['POST', '/2015-03-31/functions/my-fn/configuration', { code: 'NotFound', status: 404 }],
  ['POST', '/2016-01-01/functions/my-fn/invocations', { code: 'NotFound', status: 404 }],
  ['POST', '//2015-03-31/functions/my-fn/invocations', { code: 'NotFound', status: 404 }],
  ['POST', '/x/2015-03-31/functions/my-fn/invocations', { code: 'NotFound', status: 404 }],
  ['GET', '/healthz/', { code: 'NotFound', status: 404 }],
  ['GET', '/healthzz', { code: 'NotFound', status: 404 }],
  ['GET', '/2015-03-31/functions/my-fn/invocations', { code: 'MethodNotAllowed', status: 405, allow: 'POST' }],
  ['PUT', '/2015-03-31/functions/my-fn/invocations', { code: 'MethodNotAllowed', status: 405, allow: 'POST' }],
  ['HEAD', '/2015-03-31/functions/my-fn/invocations?Qualifier=1', { code: 'MethodNotAllowed', status: 405, allow: 'POST' }],
  ['DELETE', '/2015-03-31/functions/my-fn/invocations', { code: 'MethodNotAllowed', status: 405, allow: 'POST' }],
  ['POST', '/healthz', { code: 'MethodNotAllowed', status: 405, allow: 'GET, HEAD' }],
  ['PUT', '/healthz?x=1', { code: 'MethodNotAllowed', status: 405, allow: 'GET, HEAD' }],
];

for (const [method, target, expected] of STATUSES) {
  test(`${method} ${target} → ${expected.status} ${expected.code}`, () => {
    assert.equal(failure(method, target), { allow: undefined, ...expected });
  });
}

for (const [method, target] of [
  ['GET', '/healthz'],
  ['HEAD', '/healthz'],
  ['GET', '/healthz?verbose=1'],
]) {
  test(`${method} ${target} is the health route`, () => {
    assert.equal(route(method!, target!), { kind: 'health' });
  });
}

// ---------------------------------------------------------------------------------------
// Allowlist.

test('no glob: no predicate, every function allowed', () => {
  assert.is(compileAllowlist([]), undefined);
  checkAllowed(undefined, parseFunctionRef('anything'));
});

const GLOBS: [string[], string, boolean][] = [
  [['*'], 'anything', true],
  [['*'], 'a', true],
  [['my-fn'], 'my-fn', true],
  [['my-fn'], 'my-fn2', false],
  [['my-fn'], 'x-my-fn', false],
  [['my-fn'], 'MY-FN', false],
  [['my-*'], 'my-fn', true],
  [['my-*'], 'my-', true],
  [['my-*'], 'your-fn', false],
  [['*-render'], 'pdf-render', true],
  [['*-render'], 'pdf-render-2', false],
  [['a*b*c'], 'a-x-b-y-c', true],
  [['a*b*c'], 'acb', false],
  [['fn-?'], 'fn-1', true],
  [['fn-?'], 'fn-12', false],
  [['fn-?'], 'fn-', false],
  [['fn-??'], 'fn-12', true],
  [['alpha', 'beta-*'], 'alpha', true],
  [['alpha', 'beta-*'], 'beta-1', true],
  [['alpha', 'beta-*'], 'gamma', false],
  [['alpha', 'beta-*'], 'alphabeta-1', false],
  [['alpha', 'beta-*'], 'alphabeta-', false],
  // Regex metacharacters in a glob are literal, never syntax.
  [['.*'], 'anything', false],
  [['.*'], '.x', true],
  [['a.c'], 'abc', false],
  [['a|b'], 'a', false],
  [['a|b'], 'b', false],
  [['(a)'], 'a', false],
  [['[ab]'], 'a', false],
  [['a{2}'], 'aa', false],
  [['a+'], 'aa', false],
  [['^a$'], 'a', false],
  [['a\\d'], 'a1', false],
  [['x)|(.*'], 'anything', false],
];

for (const [globs, name, expected] of GLOBS) {
  test(`allowlist ${JSON.stringify(globs)} ${expected ? 'allows' : 'refuses'} ${name}`, () => {
    const allowed = compileAllowlist(globs);
    assert.ok(allowed !== undefined);
    assert.is(allowed!(name), expected);
  });
}

for (const c of ACCEPTED.filter((a) => a.name === 'my-fn')) {
  test(`allowlist matches the bare name of ${c.segment}`, () => {
    const fn: FunctionRef = invokeRoute(invoke(c.segment)).fn;
    checkAllowed(compileAllowlist(['my-fn']), fn);
    checkAllowed(compileAllowlist(['my-*']), fn);
    // A glob that would match only the whole id (ARN prefix or qualifier) does not allow it.
    for (const globs of [['other'], ['arn*'], ['123456789012*'], ['*:prod'], ['my-fn:*'], ['*live'], ['*LATEST']]) {
      try {
        checkAllowed(compileAllowlist(globs), fn);
        assert.unreachable(`${JSON.stringify(globs)} allowed ${c.segment}`);
      } catch (err) {
        assert.instance(err, LambdaSignError);
        assert.is((err as LambdaSignError).code, 'FunctionNotAllowed');
        assert.is((err as LambdaSignError).status, 403);
        assert.match((err as Error).message, 'my-fn');
      }
    }
  });
}

test.run();
