// admission.ts: the --max-inflight slot count and the --max-buffered byte account.
// Past either bound the answer is OverloadedError (503, Retry-After), and nothing is counted.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createAdmission } from '../../src/admission.ts';
import { errorResponse, OverloadedError } from '../../src/errors.ts';

/** Runs fn and returns what it threw (failing the test when it threw nothing). */
function thrown(fn: () => void): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  assert.unreachable('expected an error');
}

for (const max of [1, 3, 5]) {
  test(`enter: ${max} slot(s), then Overloaded until one leaves`, () => {
    const a = createAdmission(max, 1000);
    for (let i = 0; i < max; i++) a.enter();
    assert.is(a.inflight, max);
    const err = thrown(() => a.enter());
    assert.instance(err, OverloadedError);
    assert.match((err as Error).message, /--max-inflight/);
    assert.is(a.inflight, max, 'a refused enter takes no slot');
    assert.instance(thrown(() => a.enter()), OverloadedError, 'still full');
    a.leave();
    assert.is(a.inflight, max - 1);
    a.enter();
    assert.is(a.inflight, max);
    for (let i = 0; i < max; i++) a.leave();
    assert.is(a.inflight, 0);
  });
}

test('OverloadedError renders as 503 Overloaded with Retry-After', () => {
  const a = createAdmission(1, 10);
  a.enter();
  const out = errorResponse(thrown(() => a.enter()));
  assert.is(out.status, 503);
  assert.is(out.headers['x-lambda-sign-error'], 'Overloaded');
  assert.ok(Number(out.headers['retry-after']) >= 1, 'Retry-After present');
  assert.is(JSON.parse(String(out.body)).error, 'Overloaded');
});

test('hold: take counts bytes up to --max-buffered inclusive, release gives them back', () => {
  const a = createAdmission(10, 100);
  const h1 = a.hold();
  const h2 = a.hold();
  h1.take(30);
  h1.take(20);
  h2.take(50);
  assert.is(a.buffered, 100, 'exactly the bound is allowed');
  h1.take(0);
  assert.is(a.buffered, 100);
  h1.release();
  assert.is(a.buffered, 50, 'only h1\'s 50 bytes were returned');
  h2.release();
  assert.is(a.buffered, 0);
});

test('hold: a refused take counts nothing, in the pool or in the hold', () => {
  const a = createAdmission(10, 100);
  const h1 = a.hold();
  const h2 = a.hold();
  h1.take(60);
  const err = thrown(() => h2.take(41));
  assert.instance(err, OverloadedError);
  assert.match((err as Error).message, /--max-buffered/);
  assert.is(a.buffered, 60, 'the refused 41 bytes were not counted');
  h2.take(40);
  assert.is(a.buffered, 100, 'the rest still fits');
  h2.release();
  assert.is(a.buffered, 60, 'h2 returns 40, not 81');
  h1.release();
  assert.is(a.buffered, 0);
});

test('hold: one body larger than the whole bound is refused even when nothing else is held', () => {
  const a = createAdmission(10, 100);
  const h = a.hold();
  assert.instance(thrown(() => h.take(101)), OverloadedError);
  assert.is(a.buffered, 0);
  h.release();
  assert.is(a.buffered, 0);
});

test('hold: release is idempotent, and a hold can take again after it', () => {
  const a = createAdmission(10, 100);
  const h1 = a.hold();
  const h2 = a.hold();
  h1.take(40);
  h2.take(30);
  h1.release();
  h1.release();
  h1.release();
  assert.is(a.buffered, 30, 'a second release returns nothing more');
  h1.take(10);
  assert.is(a.buffered, 40);
  h1.release();
  h2.release();
  h2.release();
  assert.is(a.buffered, 0);
});

test('the two bounds are independent', () => {
  const a = createAdmission(1, 100);
  a.enter();
  assert.instance(thrown(() => a.enter()), OverloadedError);
  const h = a.hold();
  h.take(100);
  assert.is(a.buffered, 100, 'bytes are not refused because slots are full');
  h.release();
  a.leave();
  const b = createAdmission(2, 10);
  b.hold().take(10);
  b.enter();
  b.enter();
  assert.is(b.inflight, 2, 'slots are not refused because bytes are full');
});

test.run();
