// Our HTTP/2 client (src/h2) against node:http2's server (nghttp2): an independent
// implementation of the same protocol, whose HPACK encoder uses Huffman coding and the
// dynamic table, and which enforces flow control, frame sizes and settings on its side.
import { once } from 'node:events';
import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CANCEL, H2Connection, H2StreamError, REFUSED_STREAM, SendBacklog, type H2Stream } from '../../src/h2/connection.ts';
import { makeTestCA, type TestCA } from '../helpers/tls.ts';
import { frame, rawH2Peer, type RawPeer } from '../helpers/raw-h2-peer.ts';

let ca: TestCA;
const cleanups: (() => unknown)[] = [];
test.before(async () => {
  ca = await makeTestCA();
});
test.after.each(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
test.after(async () => {
  await ca.cleanup();
});

type Handler = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, session: http2.ServerHttp2Session) => void;

async function server(handler: Handler, settings: http2.Settings = {}): Promise<{ port: number; sessions: http2.ServerHttp2Session[] }> {
  const srv = http2.createSecureServer({ cert: ca.cert, key: ca.key, settings });
  const sessions: http2.ServerHttp2Session[] = [];
  srv.on('session', (s) => sessions.push(s));
  srv.on('stream', (stream, headers) => {
    stream.on('error', () => {}); // resets are what some tests are about
    handler(stream, headers, stream.session as http2.ServerHttp2Session);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise((r) => {
    for (const s of sessions) s.destroy();
    srv.close(r);
  }));
  return { port: (srv.address() as net.AddressInfo).port, sessions };
}

async function connect(port: number, opts?: ConstructorParameters<typeof H2Connection>[1]): Promise<H2Connection> {
  const socket = tls.connect({ host: '127.0.0.1', port, ca: ca.ca, servername: 'localhost', ALPNProtocols: ['h2'] });
  await once(socket, 'secureConnect');
  const c = new H2Connection(socket, opts);
  cleanups.push(() => c.destroy());
  return c;
}

const req = (path: string, extra: string[] = []): string[] => [':method', 'POST', ':scheme', 'https', ':authority', 'localhost', ':path', path, ...extra];

/** Resolves at the response headers; rejects with the stream's error. */
function response(s: H2Stream): Promise<H2Stream> {
  return new Promise((resolve, reject) => {
    s.on('error', () => {});
    s.owner = {
      streamResponse: (_s, err) => (err === undefined ? resolve(s) : reject(err)),
      streamClosed: () => {},
    };
  });
}

async function readAll(s: H2Stream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** An echo server: the request body back, request headers reflected as x-got-*. */
const echo: Handler = (stream, headers) => {
  const chunks: Buffer[] = [];
  stream.on('data', (d: Buffer) => chunks.push(d));
  stream.on('end', () => {
    const out: http2.OutgoingHttpHeaders = { ':status': 200, 'x-path': headers[':path'], 'x-method': headers[':method'] };
    for (const [k, v] of Object.entries(headers)) if (k.startsWith('x-')) out[`x-got-${k.slice(2)}`] = v;
    stream.respond(out);
    stream.end(Buffer.concat(chunks));
  });
};

test('takeComplete: a finished, unread answer whole (and the stream ends); undefined while data is still due', async () => {
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  const { port } = await server((stream, headers) => {
    stream.respond({ ':status': 200 });
    if (headers[':path'] === '/small') return void stream.end('small answer');
    stream.write('first part ');
    void held.then(() => stream.end('second part'));
  });
  const c = await connect(port);

  const small = await response(c.request(req('/small'), Buffer.alloc(0)));
  // The DATA frame may trail the HEADERS by a read: poll (a 'readable' listener would
  // switch the stream to paused mode and make takeComplete refuse it).
  let whole: Buffer | undefined;
  for (const until = Date.now() + 5000; whole === undefined && Date.now() < until; ) {
    whole = small.takeComplete();
    if (whole === undefined) await new Promise((r) => setTimeout(r, 5));
  }
  assert.ok(whole !== undefined, 'a complete answer is handed over');
  assert.is(whole!.toString(), 'small answer');
  await once(small, 'end');

  const big = await response(c.request(req('/held'), Buffer.alloc(0)));
  await new Promise((r) => setTimeout(r, 50));
  assert.is(big.takeComplete(), undefined, 'the end has not arrived');
  release();
  assert.is((await readAll(big)).toString(), 'first part second part', 'nothing was taken from a stream still open');
});

test('300 concurrent requests: bodies up to 300 KB and every printable header byte round-trip', async () => {
  const { port } = await server(echo);
  const c = await connect(port);
  // Varied values so that nghttp2 Huffman-codes them and indexes some in its table.
  const weird = Array.from({ length: 300 }, (_, i) => String.fromCharCode(33 + ((i * 37) % 94))).join('');
  const results = await Promise.all(
    Array.from({ length: 300 }, async (_, i) => {
      const body = Buffer.alloc((i * 7919) % 300_000, i & 255);
      const value = `${i}-${weird.slice(i % 200)}`;
      const s = c.request(req(`/r/${i}?q=${'z'.repeat(i % 40)}`, ['x-value', value, 'content-length', String(body.length)]), body);
      await response(s);
      const got = await readAll(s);
      return got.equals(body) && s.status === 200 && s.headers['x-got-value'] === value && s.headers['x-path'] === `/r/${i}?q=${'z'.repeat(i % 40)}`;
    }),
  );
  assert.is(results.filter(Boolean).length, 300);
});

test('a burst of requests in one turn is written while the turn goes on, not all at its end', async () => {
  const { port } = await server(echo);
  const c = await connect(port);
  let written = 0;
  const write = c.socket.write.bind(c.socket) as (chunk: Buffer) => boolean;
  c.socket.write = ((chunk: Buffer) => {
    written += chunk.length;
    return write(chunk);
  }) as typeof c.socket.write;
  const answers: Promise<boolean>[] = [];
  const send = (n: number, tag: string): void => {
    for (let i = 0; i < n; i++) {
      const body = Buffer.alloc(1000, i);
      const s = c.request(req(`/${tag}/${i}`, ['content-length', '1000']), body);
      answers.push(response(s).then(readAll).then((got) => got.equals(body), () => false));
    }
  };
  const turnEnd = () => new Promise((r) => setImmediate(r));

  // A few requests: nothing leaves until the turn ends.
  send(5, 'few');
  assert.is(written, 0);
  await turnEnd();
  assert.ok(written > 5000, `${written} bytes after the turn`);

  // Fifty (about 52 KB of frames, within the peer's default 65,535-byte connection window, so
  // no body waits for a WINDOW_UPDATE): all but the last 16 KiB or so are written during the turn.
  written = 0;
  send(50, 'many');
  const during = written;
  await turnEnd();
  const all = written;
  assert.equal(await Promise.all(answers), Array(55).fill(true));
  assert.ok(all > 50_000, `${all} bytes in all`);
  assert.ok(during >= all - (16 << 10) - 1100, `${during} of ${all} bytes written during the turn`);
});

test('response headers: repeated names, set-cookie as a list, latin1 bytes, interim 103 skipped', async () => {
  const { port } = await server((stream) => {
    stream.additionalHeaders({ ':status': 103, link: '</a.css>; rel=preload' });
    stream.respond({ ':status': 201, 'set-cookie': ['a=1', 'b=2'], 'x-latin1': 'caf\u00e9 \u00ff', vary: 'a' });
    stream.end('done');
  });
  const c = await connect(port);
  const s = c.request(req('/'), undefined);
  await response(s);
  assert.is(s.status, 201);
  assert.equal(s.headers['set-cookie'], ['a=1', 'b=2']);
  assert.is(s.headers['x-latin1'], 'caf\u00e9 \u00ff');
  assert.is(s.headers['link'], undefined, 'the 103 headers are not the answer');
  assert.is((await readAll(s)).toString(), 'done');
});

test('an answer that arrived in several frames before anyone read is read whole and in order as a stream', async () => {
  const { port } = await server((stream) => {
    stream.respond({ ':status': 200 });
    stream.write('one ');
    stream.write('two ');
    stream.end('three');
  });
  const c = await connect(port);
  const s = await response(c.request(req('/early'), Buffer.alloc(0)));
  // Let every frame and the end arrive while nothing reads.
  await new Promise((r) => setTimeout(r, 100));
  const closed = once(s, 'close');
  assert.is((await readAll(s)).toString(), 'one two three');
  await closed;
});

test('a body in parts (odd sizes, empty parts, one past a frame) arrives whole and in order, also under a small window', async () => {
  const parts = [5, 0, 16_384, 16_385, 1, 0, 70_000, 3].map((n, i) => Buffer.alloc(n, 65 + i));
  const whole = Buffer.concat(parts);
  for (const initialWindowSize of [65_535, 1000]) {
    const { port } = await server(echo, { initialWindowSize });
    const c = await connect(port);
    const s = c.request(req('/parts'), parts);
    await response(s);
    assert.ok((await readAll(s)).equals(whole), `window ${initialWindowSize}: the echo differs`);
  }
  // Only empty parts: a request without a body (END_STREAM on HEADERS).
  const { port } = await server(echo);
  const c = await connect(port);
  const s = c.request(req('/none'), [Buffer.alloc(0), Buffer.alloc(0)]);
  await response(s);
  assert.is((await readAll(s)).length, 0);
});

test('flow control: a peer with a 1,000-byte window still receives 200 KB whole', async () => {
  let received = 0;
  const { port } = await server((stream) => {
    stream.on('data', (d: Buffer) => (received += d.length));
    stream.on('end', () => {
      stream.respond({ ':status': 200 });
      stream.end(String(received));
    });
  }, { initialWindowSize: 1000 });
  const c = await connect(port);
  const body = Buffer.alloc(200_000, 7);
  const s = c.request(req('/'), body);
  await response(s);
  assert.is((await readAll(s)).toString(), '200000');
});

test('flow control: streams waiting for window together; one cancelled while waiting, the rest arrive whole', async () => {
  const got = new Map<string, number>();
  const { port } = await server((stream, headers) => {
    let n = 0;
    stream.on('data', (d: Buffer) => (n += d.length));
    stream.on('close', () => got.set(String(headers[':path']), n));
    stream.on('end', () => {
      // The cancelled stream can end here too, already reset.
      if (stream.destroyed) return;
      stream.respond({ ':status': 200 });
      stream.end(String(n));
    });
  }, { initialWindowSize: 1000 });
  // The backlog counts what waits for window: the HTTP/1.1 side stops reading by it.
  const backlog = new SendBacklog();
  backlog.low = 100_000;
  const lows: number[] = [];
  backlog.onLow = () => lows.push(backlog.bytes);
  const c = await connect(port, { backlog });
  const sizes = [30_000, 50_000, 70_000, 20_000, 90_000];
  const streams = sizes.map((n, i) => c.request(req(`/${i}`), Buffer.alloc(n, i)));
  // What the windows did not let go at once (the peer's SETTINGS may not have come yet).
  const unsent = (ss: H2Stream[]) => ss.reduce((n, st, i) => n + sizes[i]! - st.bodySent, 0);
  assert.ok(backlog.bytes >= 260_000 - 65_535, `${backlog.bytes} bytes wait`);
  assert.is(backlog.bytes, unsent(streams));
  const answers = streams.map((s) => response(s));
  const cancelled = streams[1]!;
  answers[1]!.catch(() => {});
  const before = backlog.bytes;
  const itsUnsent = sizes[1]! - cancelled.bodySent;
  assert.ok(itsUnsent > 0, 'the cancelled stream had more to send');
  cancelled.cancel(new Error('client went away'));
  // What the cancelled stream had not sent leaves the backlog with it.
  assert.is(backlog.bytes, before - itsUnsent);
  for (const i of [0, 2, 3, 4]) {
    const s = await answers[i]!;
    assert.is((await readAll(s)).toString(), String(sizes[i]), `stream ${i}`);
  }
  assert.is(c.active, 0);
  assert.is(backlog.bytes, 0);
  assert.ok(lows.length > 0 && lows.every((b) => b < 100_000), `onLow called at ${lows.join(', ')}`);
  for (let i = 0; i < 50 && !got.has('/1'); i++) await new Promise((r) => setTimeout(r, 10));
  const partial = got.get('/1');
  assert.ok(partial === undefined || partial < sizes[1]!, `the cancelled stream sent ${partial} bytes, its whole body`);
});

test('flow control: an unread answer stops at our stream window until it is read', async () => {
  let written = 0;
  let finished = false;
  const { port } = await server((stream) => {
    stream.respond({ ':status': 200, 'content-length': 1 << 20 });
    const chunk = Buffer.alloc(16 << 10, 1);
    const pump = (): void => {
      while (written < 1 << 20) {
        written += chunk.length;
        if (!stream.write(chunk)) return void stream.once('drain', pump);
      }
      stream.end(() => (finished = true));
    };
    pump();
  });
  const c = await connect(port, { streamWindow: 64 << 10 });
  const s = c.request(req('/'), undefined);
  await response(s);
  s.pause();
  await new Promise((r) => setTimeout(r, 300));
  assert.not.ok(finished, 'the server could not finish while we did not read');
  // Readable asks for more until its buffer holds a high-water mark; then only one window
  // more can be in flight.
  const bound = s.readableHighWaterMark + (64 << 10);
  assert.ok(s.readableLength <= bound, `buffered ${s.readableLength} bytes, more than ${bound}`);
  s.resume();
  assert.is((await readAll(s)).length, 1 << 20);
});

test('SETTINGS: the peer’s MAX_CONCURRENT_STREAMS is seen; its PING is answered', async () => {
  const { port, sessions } = await server(echo, { maxConcurrentStreams: 7 });
  const c = await connect(port);
  await once(c, 'remoteSettings');
  assert.is(c.maxConcurrentStreams, 7);
  const rtt = await new Promise<number>((resolve, reject) =>
    sessions[0]!.ping((err, ms) => (err ? reject(err) : resolve(ms))),
  );
  assert.ok(rtt >= 0);
});

test('REFUSED_STREAM is reported as unprocessed, with its code', async () => {
  const { port } = await server((stream) => stream.close(http2.constants.NGHTTP2_REFUSED_STREAM));
  const c = await connect(port);
  const err = await response(c.request(req('/'), Buffer.from('x'))).catch((e: unknown) => e);
  assert.instance(err, H2StreamError);
  assert.is((err as H2StreamError).rstCode, REFUSED_STREAM);
  assert.ok((err as H2StreamError).unprocessed);
});

test('a reset after the request was taken (INTERNAL_ERROR) is not unprocessed', async () => {
  const { port } = await server((stream) => stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR));
  const c = await connect(port);
  const err = (await response(c.request(req('/'), Buffer.from('x'))).catch((e: unknown) => e)) as H2StreamError;
  assert.is(err.rstCode, http2.constants.NGHTTP2_INTERNAL_ERROR);
  assert.not.ok(err.unprocessed);
});

test('GOAWAY: streams above its last id fail as unprocessed, those below finish', async () => {
  const held: http2.ServerHttp2Stream[] = [];
  const { port } = await server((stream, _h, session) => {
    held.push(stream);
    if (held.length === 3) {
      // Accept the first stream only (id 1); 3 and 5 were never processed.
      session.goaway(http2.constants.NGHTTP2_NO_ERROR, 1);
      held[0]!.respond({ ':status': 200 });
      held[0]!.end('first');
    }
  });
  const c = await connect(port);
  const goaway = once(c, 'goaway');
  const streams = [1, 2, 3].map(() => c.request(req('/'), Buffer.from('x')));
  const outcomes = await Promise.all(streams.map((s) => response(s).then(readAll).then((b) => b.toString(), (e: H2StreamError) => e)));
  assert.is(outcomes[0], 'first');
  for (const e of outcomes.slice(1)) assert.ok(e instanceof H2StreamError && e.unprocessed, String(e));
  assert.equal((await goaway)[1], 1);
  assert.throws(() => c.request(req('/'), undefined), (e: unknown) => e instanceof H2StreamError && e.unprocessed);
});

test('regression: RST_STREAM(NO_ERROR) short of Content-Length is a cut answer, never a clean end', async () => {
  const { port } = await server((stream) => {
    stream.respond({ ':status': 200, 'content-length': 100 });
    stream.write(Buffer.alloc(50), () => setTimeout(() => stream.close(http2.constants.NGHTTP2_NO_ERROR), 20));
  });
  const c = await connect(port);
  const s = c.request(req('/'), undefined);
  await response(s);
  const err = await readAll(s).catch((e: unknown) => e);
  assert.instance(err, H2StreamError);
});

test('an answer whose DATA does not add up to its Content-Length is an error (RFC 9113 §8.1.1)', async () => {
  const { port } = await server((stream, headers) => {
    stream.respond({ ':status': 200, 'content-length': 10 }, { waitForTrailers: false });
    stream.end(headers[':path'] === '/short' ? 'abc' : 'abcdefghijklmnop');
  });
  const c = await connect(port);
  for (const path of ['/short', '/long']) {
    const s = c.request(req(path), undefined);
    const err = await response(s).then(readAll).catch((e: unknown) => e);
    assert.instance(err, H2StreamError, path);
  }
});

test('cancel sends RST_STREAM(CANCEL) and ends the body with the reason', async () => {
  let serverSaw: number | undefined;
  const { port } = await server((stream) => {
    stream.respond({ ':status': 200 });
    stream.write('partial');
    stream.on('close', () => (serverSaw = stream.rstCode));
  });
  const c = await connect(port);
  const s = c.request(req('/'), undefined);
  await response(s);
  const reason = new Error('client went away');
  const ended = new Promise((resolve) => s.once('close', () => resolve(s.readableEnded)));
  s.cancel(reason);
  assert.is(await ended, false, 'never a clean end');
  for (let i = 0; i < 50 && serverSaw === undefined; i++) await new Promise((r) => setTimeout(r, 10));
  assert.is(serverSaw, CANCEL);
  assert.is(c.active, 0);
});

async function rawPeer(onFrame?: Parameters<typeof rawH2Peer>[1]): Promise<RawPeer> {
  const peer = await rawH2Peer(ca, onFrame);
  cleanups.push(() => peer.close());
  return peer;
}

/** HPACK literal with incremental indexing, new name (RFC 7541 §6.2.1); lengths < 16,384. */
function indexed(name: string, value: string): Buffer {
  const str = (s: string) => Buffer.concat([Buffer.from(s.length < 127 ? [s.length] : [127, ((s.length - 127) % 128) | 0x80, Math.floor((s.length - 127) / 128)]), Buffer.from(s)]);
  return Buffer.concat([Buffer.from([0x40]), str(name), str(value)]);
}

test('regression: a response header list decoding past 64 KiB resets its stream, and the table stays in step', async () => {
  // One 4,000-byte entry named again by 16,000 one-byte references (about 20 KB on the
  // wire) decoded to 64 MB of header text: the encoded size was all that was bounded.
  const peer = await rawPeer((f, sock) => {
    if (f.type !== 0x1) return;
    const block =
      f.id === 1
        ? Buffer.concat([Buffer.from([0x88]), indexed('x-a', 'a'.repeat(4000)), Buffer.alloc(16_000, 0xbe)])
        : Buffer.from([0x88, 0xbe]); // the second answer names the entry the first one added
    const out: Buffer[] = [];
    for (let at = 0; at < block.length; at += 16_384) {
      const last = at + 16_384 >= block.length;
      out.push(frame(at === 0 ? 0x1 : 0x9, (last ? 0x4 : 0) | (last && f.id !== 1 ? 0x1 : 0), f.id, block.subarray(at, at + 16_384)));
    }
    sock.write(Buffer.concat(out));
  });
  const c = await connect(peer.port);
  const err = await response(c.request(req('/'), undefined)).catch((e: unknown) => e);
  assert.instance(err, H2StreamError);
  assert.match((err as Error).message, 'too large');
  const ok = await response(c.request(req('/'), undefined));
  assert.is(ok.status, 200);
  assert.is(ok.headers['x-a'], 'a'.repeat(4000));
  assert.not.ok(c.destroyed);
  const frames = peer.received[0]!;
  // Our SETTINGS announce the limit (SETTINGS_MAX_HEADER_LIST_SIZE, 0x6).
  const settings = frames.find((f) => f.type === 0x4 && (f.flags & 0x1) === 0)!.payload;
  const announced = [];
  for (let at = 0; at < settings.length; at += 6) if (settings.readUInt16BE(at) === 0x6) announced.push(settings.readUInt32BE(at + 2));
  assert.equal(announced, [65_536]);
  for (let i = 0; i < 50 && !frames.some((f) => f.type === 0x3 && f.id === 1); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(frames.some((f) => f.type === 0x3 && f.id === 1), 'RST_STREAM for the oversized answer');
});

test('liveness: a silent peer is sent a PING after the quiet period, and dropped when no answer comes', async () => {
  // A peer that vanished without a FIN (a NAT entry dropped) looks like one that is slow;
  // until PINGs, its streams waited for their whole time limit (900 s by default).
  const peer = await rawPeer();
  const c = await connect(peer.port);
  await once(c, 'remoteSettings');
  // Then the peer acknowledges our SETTINGS, and falls silent.
  for (let i = 0; i < 50 && !peer.received[0]!.some((f) => f.type === 0x4); i++) await new Promise((r) => setTimeout(r, 10));
  await new Promise((r) => setTimeout(r, 50));
  const s = c.request(req('/'), Buffer.from('{}'));
  const failed = response(s).catch((e: unknown) => e);
  const t = c.heardAt;
  const pings = () => peer.received[0]!.filter((f) => f.type === 0x6).length;
  c.checkAlive(t + 999, 1000, 500);
  await new Promise((r) => setTimeout(r, 50));
  assert.is(pings(), 0, 'no PING before the quiet period');
  c.checkAlive(t + 1001, 1000, 500);
  for (let i = 0; i < 50 && pings() === 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.is(pings(), 1);
  c.checkAlive(t + 1500, 1000, 500);
  c.checkAlive(t + 1502, 1000, 500, false);
  assert.not.ok(c.destroyed, 'not before the deadline, nor on a late tick');
  c.checkAlive(t + 1502, 1000, 500);
  assert.ok(c.destroyed);
  const err = await failed;
  assert.instance(err, H2StreamError);
  assert.is((err as H2StreamError).unprocessed, false, 'the request may have run: never retried');
  assert.match((err as Error).message, 'PING');
});

test('liveness: anything heard after a PING (its ACK, or other frames) keeps the connection; no streams, no PING', async () => {
  let answer = true;
  let peerSocket: tls.TLSSocket | undefined;
  const peer = await rawPeer((f, sock) => {
    peerSocket = sock;
    if (f.type === 0x6 && (f.flags & 0x1) === 0 && answer) sock.write(frame(0x6, 0x1, 0, f.payload));
  });
  const c = await connect(peer.port);
  await once(c, 'remoteSettings');
  const pings = () => peer.received[0]!.filter((f) => f.type === 0x6).length;
  c.checkAlive(c.heardAt + 5000, 1000, 500);
  await new Promise((r) => setTimeout(r, 50));
  assert.is(pings(), 0, 'an idle connection is not pinged');
  const s = c.request(req('/'), Buffer.from('{}'));
  s.on('error', () => {});
  c.checkAlive(c.heardAt + 1001, 1000, 500);
  assert.ok(c.pingAt > 0);
  for (let i = 0; i < 50 && c.pingAt !== 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.is(c.pingAt, 0, 'the ACK answers the PING');
  c.checkAlive(c.heardAt + 999, 1000, 500);
  assert.not.ok(c.destroyed);
  // A PING the peer does not answer, but it sends something else: a WINDOW_UPDATE.
  answer = false;
  c.checkAlive(c.heardAt + 1001, 1000, 500);
  const sentAt = c.pingAt;
  assert.ok(sentAt > 0);
  for (let i = 0; i < 50 && pings() < 2; i++) await new Promise((r) => setTimeout(r, 10));
  assert.is(pings(), 2);
  peerSocket!.write(frame(0x8, 0, 0, Buffer.from([0, 0, 0, 1])));
  for (let i = 0; i < 50 && c.pingAt !== 0; i++) await new Promise((r) => setTimeout(r, 10));
  c.checkAlive(sentAt + 501, 1000, 500);
  assert.not.ok(c.destroyed);
});

/** A connection to a peer that answers PINGs and nothing else (its windows stay as they are). */
async function pingAnsweringPeer(): Promise<{ peer: RawPeer; c: H2Connection; peerSocket: () => tls.TLSSocket }> {
  let socket: tls.TLSSocket | undefined;
  const peer = await rawPeer((f, sock) => {
    socket = sock;
    if (f.type === 0x6 && (f.flags & 0x1) === 0) sock.write(frame(0x6, 0x1, 0, f.payload));
  });
  const c = await connect(peer.port);
  await once(c, 'remoteSettings');
  return { peer, c, peerSocket: () => socket! };
}

test('liveness: a body that gets no send window for the limit has its stream reset; with the connection window shut, the connection takes no more', async () => {
  // A peer that answers PINGs but never opens its window held the uploads (and, through
  // the backlog, the daemon's read gate) until --timeout.
  const { peer, c, peerSocket } = await pingAnsweringPeer();
  const s = c.request(req('/'), Buffer.alloc(100_000, 0x61)); // more than the 65,535 the peer allows
  const failed = response(s).catch((e: unknown) => e);
  c.checkAlive(performance.now() + 1000, 60_000, 60_000, true, 5000);
  assert.not.ok(s.over, 'not before the limit');
  // The peer opens both windows a little, 300 ms later: the body moves, and its clock starts again.
  await new Promise((r) => setTimeout(r, 300));
  peerSocket().write(Buffer.concat([frame(0x8, 0, 0, Buffer.from([0, 0, 0x10, 0])), frame(0x8, 0, 1, Buffer.from([0, 0, 0x10, 0]))]));
  const moved = performance.now();
  for (let i = 0; i < 100 && peer.received[0]!.filter((f) => f.type === 0x0).reduce((n, f) => n + f.payload.length, 0) <= 65_535; i++) {
    await new Promise((r) => setTimeout(r, 10));
  }
  c.checkAlive(moved + 4800, 60_000, 60_000, true, 5000);
  assert.not.ok(s.over, 'the clock started again when the body moved');
  c.checkAlive(performance.now() + 5000, 60_000, 60_000, false, 5000);
  assert.not.ok(s.over, 'nor on a late tick');
  c.checkAlive(performance.now() + 5000, 60_000, 60_000, true, 5000);
  const err = await failed;
  assert.instance(err, H2StreamError);
  assert.match((err as Error).message, 'send window');
  assert.ok(c.closing, 'the connection window is shut: no new streams on it');
  assert.not.ok(c.destroyed);
});

test('liveness: a body stuck on its own stream window is reset alone; the other streams and the connection go on', async () => {
  // One clock for the whole connection closed it, failing every stream on it, when one
  // stream's window stayed shut; and other uploads moving kept a stuck one waiting.
  const { peer, c, peerSocket } = await pingAnsweringPeer();
  // The peer opens the connection window wide; stream windows stay at 65,535.
  peerSocket().write(frame(0x8, 0, 0, Buffer.from([0, 0x7f, 0, 0])));
  await new Promise((r) => setTimeout(r, 50));
  const stuck = c.request(req('/stuck'), Buffer.alloc(100_000, 0x61));
  const stuckFailed = response(stuck).catch((e: unknown) => e);
  const waiting = c.request(req('/waiting'), Buffer.from('{}')); // sent whole; waits for its answer
  const answered = response(waiting);
  const t = performance.now();
  const later = c.request(req('/later'), Buffer.alloc(1000, 0x62)); // another upload that moves
  later.on('error', () => {});
  c.checkAlive(t + 5001, 60_000, 60_000, true, 5000);
  const err = await stuckFailed;
  assert.instance(err, H2StreamError);
  assert.match((err as Error).message, 'send window');
  assert.not.ok(c.closing, 'the connection window is open: the connection goes on');
  assert.not.ok(waiting.over, 'the stream waiting for its answer is untouched');
  peerSocket().write(frame(0x1, 0x5, 3, Buffer.from([0x88]))); // :status 200, END_STREAM
  assert.is((await answered).status, 200);
});

test('a peer speaking garbage: the connection fails its streams and closes', async () => {
  const srv = tls.createServer({ cert: ca.cert, key: ca.key, ALPNProtocols: ['h2'] }, (sock) => {
    // A frame header announcing 2 MB, larger than any SETTINGS we allow.
    sock.write(Buffer.from([0x20, 0x00, 0x00, 0x04, 0, 0, 0, 0, 0]));
    sock.on('error', () => {});
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const sockets: tls.TLSSocket[] = [];
  srv.on('secureConnection', (s) => sockets.push(s));
  cleanups.push(() => {
    for (const s of sockets) s.destroy();
    srv.close();
  });
  const c = await connect((srv.address() as net.AddressInfo).port);
  const closed = once(c, 'close');
  const err = await response(c.request(req('/'), Buffer.from('x'))).catch((e: unknown) => e);
  assert.instance(err, H2StreamError);
  await closed;
  assert.ok(c.destroyed);
});

test.run();
