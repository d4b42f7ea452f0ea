// Cancel: the one-listener stand-in for AbortController between the server and upstream.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Cancel, type CancelListener } from '../../src/upstream.ts';

const listener = (fn: (reason: Error) => void): CancelListener => ({ cancelled: fn });

test('a listener hears the cancel, once, with its reason', () => {
  const c = new Cancel();
  const heard: Error[] = [];
  c.listen(listener((r) => heard.push(r)));
  const reason = new Error('timeout');
  c.cancel(reason);
  c.cancel(new Error('again'));
  assert.equal(heard, [reason]);
  assert.is(c.reason, reason);
});

test('regression: a listener added after the cancel is called at once', () => {
  // A cancel that came while a session was still connecting had no listener yet; the one
  // added afterwards was never called, and the invocation was sent anyway.
  const c = new Cancel();
  const reason = new Error('client gone');
  c.cancel(reason);
  let heard: Error | undefined;
  c.listen(listener((r) => (heard = r)));
  assert.is(heard, reason);
});

test('regression: a finished attempt cannot unhook the next attempt’s listener', () => {
  // After a clock-skew retry, the first stream's close cleared the retry's listener, so
  // neither --timeout nor a hang-up could cancel the retried invocation.
  const c = new Cancel();
  const first = listener(() => {});
  let second = 0;
  const retry = listener(() => void second++);
  c.listen(first);
  c.listen(retry);
  c.unlisten(first);
  c.cancel(new Error('timeout'));
  assert.is(second, 1);
});

test('unlisten of the current listener removes it', () => {
  const c = new Cancel();
  let n = 0;
  const fn = listener(() => void n++);
  c.listen(fn);
  c.unlisten(fn);
  c.cancel(new Error('x'));
  assert.is(n, 0);
});

test.run();
