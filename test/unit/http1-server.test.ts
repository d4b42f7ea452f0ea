// http1/server.ts: connections, framing of answers, keep-alive, pipelining, timeouts and
// drain, over a temp Unix socket with raw clients so that every byte is under the test's control.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import net from 'node:net';
import v8 from 'node:v8';
import vm from 'node:vm';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Http1Server, RESUME_PER_TURN, type Request, type Response, type Http1Options } from '../../src/http1/server.ts';

const dir = mkdtempSync(join(tmpdir(), 'lambda-sign-http1-'));
let n = 0;

type Handler = (req: Request, res: Response) => void;

const OPTIONS: Http1Options = {
  maxHeaderSize: 1024,
  headersTimeoutMs: 60_000,
  requestTimeoutMs: 60_000,
  keepAliveTimeoutMs: 60_000,
  errorPage: (status, message) => ({ headers: { 'content-type': 'text/plain', 'content-length': message.length, 'x-error': String(status) }, body: message }),
};

/** Echoes method, url and body length; the handler can be swapped per test. */
const echo: Handler = (req, res) => {
  const chunks: Buffer[] = [];
  req.read({
    data: (c) => chunks.push(c),
    end: () => {
      const text = `${req.method} ${req.url} ${Buffer.concat(chunks).length}`;
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': text.length });
      res.end(text);
    },
    abort: () => {},
  });
};

async function serve(handler: Handler, options: Partial<Http1Options> = {}): Promise<{ server: Http1Server; path: string; close(): Promise<void> }> {
  const server = new Http1Server({ ...OPTIONS, ...options }, handler);
  const path = join(dir, `s${n++}.sock`);
  await new Promise<void>((r) => server.listener.listen(path, r));
  return {
    server,
    path,
    async close() {
      server.closeAllConnections();
      await new Promise((r) => server.listener.close(r));
    },
  };
}

type Served = Awaited<ReturnType<typeof serve>>;

/** Runs `fn` against a fresh server, closed afterwards whatever happens. */
async function withServer(
  handler: Handler,
  ...rest: [fn: (s: Served) => Promise<void>] | [options: Partial<Http1Options>, fn: (s: Served) => Promise<void>]
): Promise<void> {
  const [options, fn] = rest.length === 1 ? [{}, rest[0]] : rest;
  const s = await serve(handler, options);
  try {
    await fn(s);
  } finally {
    await s.close();
  }
}

/** A raw client: what it has read so far, and whether the server closed. */
function client(path: string) {
  const sock = net.connect(path);
  const c = { sock, text: '', closed: false, wait: (re: RegExp, ms = 3000) => until(() => re.test(c.text), `${re} in ${JSON.stringify(c.text)}`, ms) };
  sock.setEncoding('latin1');
  sock.on('data', (d: string) => (c.text += d));
  sock.on('error', () => {});
  sock.on('close', () => (c.closed = true));
  return c;
}

async function until(cond: () => boolean, what: string, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const answers = (text: string): number => (text.match(/HTTP\/1\.1 \d{3} /g) ?? []).length;

test('keep-alive: requests one after another on one connection', async () => {
  await withServer(echo, async (s) => {
    const c = client(s.path);
    c.sock.write('POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc');
    await c.wait(/POST \/a 3$/);
    c.sock.write('GET /b HTTP/1.1\r\nhost: x\r\n\r\n');
    await c.wait(/GET \/b 0$/);
    assert.is(answers(c.text), 2);
    assert.not.match(c.text, /connection: close/i);
    assert.match(c.text, /\r\ndate: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT\r\n/);
    assert.is(c.closed, false);
    assert.is(s.server.connections, 1);
    c.sock.destroy();
  });
});

test('a request lets go of its body sink once the body has ended (the sink does not live through the upstream call)', async () => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  let held: { req: Request; res: Response } | undefined;
  let sinkRef: WeakRef<object> | undefined;
  let ended = false;
  const handler: Handler = (req, res) => {
    held = { req, res };
    const sink = { data: () => {}, end: () => (ended = true), abort: () => {} };
    sinkRef = new WeakRef(sink);
    req.read(sink);
  };
  await withServer(handler, async (s) => {
    const c = client(s.path);
    for (const [i, send] of [
      // The body arrives before read() (queued), and after it.
      (): void => void c.sock.write('POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc'),
      (): void => {
        c.sock.write('POST /b HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\na');
        setTimeout(() => c.sock.write('bc'), 20);
      },
    ].entries()) {
      ended = false;
      send();
      await until(() => ended, `body ${i} ended`);
      // WeakRefs hold their target until the current job ends.
      await new Promise((r) => setTimeout(r, 10));
      gc();
      assert.ok(held !== undefined, 'the request is still in progress');
      assert.is(sinkRef!.deref(), undefined, `request ${i}: the sink was collected while its request is alive`);
      held!.res.writeHead(204, {});
      held!.res.end();
      await c.wait(new RegExp(`(HTTP/1\\.1 204[^]*){${i + 1}}`));
    }
    c.sock.destroy();
  });
});

test('pipelined requests are answered in order, one at a time', async () => {
  let active = 0;
  let most = 0;
  await withServer((req, res) => {
    active++;
    most = Math.max(most, active);
    // Answer later than the next request's arrival.
    setTimeout(() => {
      active--;
      echo(req, res);
    }, 10);
  }, async (s) => {
    const c = client(s.path);
    c.sock.write(
      'POST /1 HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\n\r\nx' +
        'POST /2 HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n2\r\nyy\r\n0\r\n\r\n' +
        'GET /3 HTTP/1.1\r\nhost: x\r\n\r\n',
    );
    await c.wait(/GET \/3 0$/);
    assert.match(c.text, /POST \/1 1[^]*POST \/2 2[^]*GET \/3 0$/);
    assert.is(most, 1, 'never two requests of one connection at once');
  });
});

test('HTTP/1.0: closes after the answer unless asked to keep alive', async () => {
  await withServer(echo, async (s) => {
    const c = client(s.path);
    c.sock.write('GET /x HTTP/1.0\r\n\r\n');
    await until(() => c.closed, 'closed');
    assert.match(c.text, /^HTTP\/1\.1 200 OK\r\n[^]*connection: close\r\n/);
    const k = client(s.path);
    k.sock.write('GET /y HTTP/1.0\r\nconnection: keep-alive\r\n\r\n');
    await k.wait(/GET \/y 0$/);
    assert.match(k.text, /connection: keep-alive\r\n/);
    assert.is(k.closed, false);
    k.sock.destroy();
  });
});

test('an answer without a length is chunked for HTTP/1.1, ended by the close for HTTP/1.0', async () => {
  await withServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write(Buffer.from('hello '));
    res.write(Buffer.alloc(0));
    res.end(Buffer.from('world'));
  }, async (s) => {
    const c = client(s.path);
    c.sock.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n');
    await c.wait(/0\r\n\r\n$/);
    assert.match(c.text, /transfer-encoding: chunked\r\n/);
    assert.ok(c.text.endsWith('\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n'), JSON.stringify(c.text));
    const old = client(s.path);
    old.sock.write('GET / HTTP/1.0\r\n\r\n');
    await until(() => old.closed, 'closed');
    assert.not.match(old.text, /transfer-encoding/);
    assert.ok(old.text.endsWith('connection: close\r\n\r\nhello world'), JSON.stringify(old.text));
    c.sock.destroy();
  });
});

test('HEAD, 204 and 304 answers carry no body, and the connection goes on', async () => {
  await withServer((req, res) => {
    const status = req.url === '/204' ? 204 : req.url === '/304' ? 304 : 200;
    res.writeHead(status, status === 200 ? { 'content-length': 5 } : {});
    res.end(Buffer.from('body!'));
  }, async (s) => {
    const c = client(s.path);
    c.sock.write('HEAD / HTTP/1.1\r\nhost: x\r\n\r\nGET /204 HTTP/1.1\r\nhost: x\r\n\r\nGET /304 HTTP/1.1\r\nhost: x\r\n\r\nGET / HTTP/1.1\r\nhost: x\r\n\r\n');
    await c.wait(/body!$/);
    assert.is(answers(c.text), 4);
    assert.is(c.text.split('body!').length, 2, 'only the GET carries the body');
    assert.match(c.text, /^HTTP\/1\.1 200 OK\r\ncontent-length: 5\r\n/);
    assert.not.match(c.text, /transfer-encoding/);
  });
});

test('Expect: 100-continue is answered before the body is read', async () => {
  await withServer(echo, async (s) => {
    const c = client(s.path);
    c.sock.write('POST /e HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 4\r\n\r\n');
    await c.wait(/^HTTP\/1\.1 100 Continue\r\n\r\n$/);
    c.sock.write('data');
    await c.wait(/POST \/e 4$/);
  });
});

const REFUSED: [what: string, bytes: string, status: number][] = [
  ['garbage', 'HELLO\r\n\r\n', 400],
  ['a head over maxHeaderSize', `GET / HTTP/1.1\r\nhost: x\r\nx: ${'a'.repeat(2000)}\r\n\r\n`, 431],
  ['a head over maxHeaderSize, still unfinished', `GET / HTTP/1.1\r\nhost: x\r\nx: ${'a'.repeat(2000)}`, 431],
  ['HTTP/2.0', 'GET / HTTP/2.0\r\n\r\n', 505],
  ['smuggling framing', 'POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n', 400],
];
for (const [what, bytes, status] of REFUSED) {
  test(`refused: ${what} → ${status} from errorPage, then closed`, async () => {
    let called = false;
    await withServer(() => (called = true), async (s) => {
      const c = client(s.path);
      c.sock.write(bytes);
      await until(() => c.closed, 'closed');
      assert.match(c.text, new RegExp(`^HTTP/1\\.1 ${status} [^]*x-error: ${status}\\r\\n[^]*connection: close\\r\\n\\r\\n.+$`));
      assert.is(called, false, 'the handler never saw it');
    });
  });
}

test('a broken chunked body aborts the read; the answer closes the connection', async () => {
  let reason = '';
  await withServer((req, res) => {
    req.read({
      data: () => {},
      end: () => assert.unreachable('ended'),
      abort: (r) => {
        reason = r;
        res.writeHead(400, { 'content-length': 0 });
        res.end();
      },
    });
  }, async (s) => {
    const c = client(s.path);
    c.sock.write('POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n2\r\nokay\r\n0\r\n\r\nGET / HTTP/1.1\r\nhost: x\r\n\r\n');
    await until(() => c.closed, 'closed');
    assert.match(reason, /CRLF/);
    assert.is(answers(c.text), 1, 'nothing after a broken body is parsed');
  });
});

test('an answer sent before the body was read closes the connection after it', async () => {
  await withServer((req, res) => {
    res.writeHead(404, { 'content-length': 0 });
    res.end();
  }, async (s) => {
    const c = client(s.path);
    c.sock.write('POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nonly part');
    await until(() => c.closed, 'closed');
    assert.match(c.text, /^HTTP\/1\.1 404 /);
    assert.match(c.text, /connection: close\r\n/, 'the head says the connection ends');
  });
});

test('a header value that would split the response is refused before anything is sent', async () => {
  let thrown: unknown;
  await withServer((req, res) => {
    try {
      res.writeHead(200, { 'x-a': 'ok\r\nx-injected: 1' });
    } catch (err) {
      thrown = err;
    }
    try {
      res.writeHead(200, { 'bad name': 'v' });
    } catch {
      // also refused
    }
    res.writeHead(502, { 'content-length': 0 });
    res.end();
  }, async (s) => {
    const c = client(s.path);
    c.sock.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n');
    await c.wait(/\r\n\r\n$/);
    assert.instance(thrown, TypeError);
    assert.match(c.text, /^HTTP\/1\.1 502 /);
    assert.not.match(c.text, /injected/);
  });
});

test('responseClosed: once after the answer is flushed, or once when the client leaves first', async () => {
  const closes: boolean[] = [];
  let pending: Response | undefined;
  await withServer((req, res) => {
    res.owner = { responseClosed: () => closes.push(res.writableFinished), responseDrained: () => {} };
    if (req.url === '/now') {
      res.writeHead(200, { 'content-length': 2 });
      res.end('ok');
    } else pending = res;
  }, async (s) => {
    const c = client(s.path);
    c.sock.write('GET /now HTTP/1.1\r\nhost: x\r\n\r\n');
    await c.wait(/ok$/);
    await until(() => closes.length === 1, 'first close');
    c.sock.write('GET /later HTTP/1.1\r\nhost: x\r\n\r\n');
    await until(() => pending !== undefined, 'second request');
    c.sock.destroy();
    await until(() => closes.length === 2, 'second close');
    assert.equal(closes, [true, false]);
    assert.is(pending!.destroyed, true);
    pending!.end('too late'); // ignored, no throw
  });
});

test('timeouts: an unfinished head gets 408, an idle connection is closed', async () => {
  await withServer(echo, { headersTimeoutMs: 150, keepAliveTimeoutMs: 200 }, async (s) => {
    const slow = client(s.path);
    slow.sock.write('GET / HTTP/1.1\r\nhost: x\r\n');
    await until(() => slow.closed, 'closed', 2000);
    assert.match(slow.text, /^HTTP\/1\.1 408 /);
    const idle = client(s.path);
    idle.sock.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n');
    await idle.wait(/GET \/ 0$/);
    await until(() => idle.closed, 'idle closed', 2000);
  });
});

test('timeouts: a body that does not arrive in time gets 408 and the read is aborted', async () => {
  let reason = '';
  const read: Handler = (req) => req.read({ data: () => {}, end: () => {}, abort: (r) => (reason = r) });
  await withServer(read, { requestTimeoutMs: 150 }, async (s) => {
    const c = client(s.path);
    c.sock.write('POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nabc');
    await until(() => c.closed, 'closed', 2000);
    assert.match(c.text, /^HTTP\/1\.1 408 /);
    assert.match(reason, /in time/);
  });
});

test('close(): idle connections close now, a busy one after its answer, new ones are refused', async () => {
  let hold: Response | undefined;
  const s = await serve((req, res) => (hold = res));
  try {
    const idle = client(s.path);
    const busy = client(s.path);
    await until(() => s.server.connections === 2, 'two connections');
    busy.sock.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n');
    await until(() => hold !== undefined, 'request');
    s.server.close();
    await until(() => idle.closed, 'idle closed');
    assert.is(busy.closed, false);
    hold!.writeHead(200, { 'content-length': 2 });
    hold!.end('ok');
    await until(() => busy.closed, 'busy closed after its answer');
    assert.match(busy.text, /connection: close\r\n\r\nok$/);
  } finally {
    await s.close().catch(() => {});
  }
});

test('a large answer with a length goes out whole and the connection goes on', async () => {
  const big = Buffer.alloc(300_000, 'z');
  await withServer((req, res) => {
    res.writeHead(200, { 'content-length': big.length });
    res.end(big);
  }, async (s) => {
    const c = client(s.path);
    c.sock.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n');
    await c.wait(/z{300000}$/);
    assert.is(c.text.length - c.text.indexOf('\r\n\r\n') - 4, big.length);
    c.sock.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n');
    await until(() => answers(c.text) === 2, 'second answer');
  });
});

test('empty lines before a request line are ignored (RFC 9112 §2.2)', async () => {
  await withServer(echo, async (s) => {
    const c = client(s.path);
    c.sock.write('\r\n\r\nGET /after-blank HTTP/1.1\r\nhost: x\r\n\r\n');
    await c.wait(/GET \/after-blank 0$/);
  });
});

test('requests sent a byte at a time, body and a pipelined second request included, read whole', async () => {
  await withServer((req, res) => {
    const chunks: Buffer[] = [];
    req.read({
      data: (c) => chunks.push(c),
      end: () => {
        // Held until the next request is under way, so reused storage would show.
        setTimeout(() => {
          const text = `${req.url}=${Buffer.concat(chunks).toString()};`;
          res.writeHead(200, { 'content-length': text.length });
          res.end(text);
        }, 30);
      },
      abort: () => {},
    });
  }, async (s) => {
    const c = client(s.path);
    const bytes =
      'POST /slow HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\n0123456789' +
      'POST /next HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n';
    for (const ch of bytes) {
      c.sock.write(ch);
      await new Promise((r) => setImmediate(r));
    }
    await c.wait(/\/next=abc;$/);
    assert.match(c.text, /\/slow=0123456789;[^]*\/next=abc;$/);
  });
});

test('a large body is read into buffers bought for it, read after read: pieces share them, capped at 256 KiB, and stay intact', async () => {
  // Bytes that differ from place to place and from request to request, so that a piece whose
  // storage was read into again (heads are read into one buffer shared by all) would not match.
  const pattern = (seed: number, length: number): Buffer => {
    const b = Buffer.allocUnsafe(length);
    for (let i = 0; i < length; i++) b[i] = (i * 7 + seed + (i >> 9)) & 0xff;
    return b;
  };
  const BIG = (3 << 19) + 123; // 1.5 MiB and a bit: several bought buffers
  const bodies: Record<string, Buffer> = { '/a': pattern(1, 100), '/big': pattern(2, BIG), '/c': pattern(3, 40_000), '/d': pattern(4, 5) };
  const got: Record<string, Buffer[]> = {};
  await withServer((req, res) => {
    const pieces: Buffer[] = (got[req.url] = []);
    req.read({
      data: (c) => pieces.push(c),
      end: () => res.end(`${req.url};`),
      abort: () => {},
    });
  }, async (s) => {
    const c = client(s.path);
    const head = (url: string) => Buffer.from(`POST ${url} HTTP/1.1\r\nhost: x\r\ncontent-length: ${bodies[url]!.length}\r\n\r\n`);
    const big = bodies['/big']!;
    c.sock.write(Buffer.concat([head('/a'), bodies['/a']!]));
    await c.wait(/\/a;$/);
    // As Varnish sends: the next request once the answer is in. The big body in two writes,
    // the second once the first has been read, so that one buffer is read into twice.
    c.sock.write(Buffer.concat([head('/big'), big.subarray(0, 600_000)]));
    const received = () => (got['/big'] ?? []).reduce((sum, p) => sum + p.length, 0);
    await until(() => received() === 600_000, 'the first part read');
    c.sock.write(Buffer.concat([big.subarray(600_000), head('/c'), bodies['/c']!, head('/d'), bodies['/d']!]));
    await c.wait(/\/d;$/, 5000);
  });
  // Checked after every read, so that storage read into again would show.
  for (const [url, body] of Object.entries(bodies)) assert.ok(Buffer.concat(got[url]!).equals(body), `${url} arrived intact`);
  const pieces = got['/big']!;
  const stores = new Set(pieces.map((p) => p.buffer));
  const largest = Math.max(...[...stores].map((b) => b.byteLength));
  // Node's own reads give every piece storage of its own, of 64 KiB at most.
  assert.ok(stores.size < pieces.length, `the big body's ${pieces.length} pieces share storage (${stores.size} stores)`);
  assert.ok(largest > 64 << 10, `reads larger than Node's 64 KiB (largest store ${largest})`);
  assert.ok(largest <= 256 << 10, `no store over 256 KiB (${largest})`);
});

test('a head whose body has not come buys no buffer for it; a chunked body is read 64 KiB at a time', async () => {
  let pieces = 0;
  await withServer((req, res) => req.read({ data: () => pieces++, end: () => res.end('done'), abort: () => {} }), async (s) => {
    // Forty uploads of 1 MiB that stall after their heads.
    const stalled = [];
    global.gc?.();
    const before = process.memoryUsage().arrayBuffers;
    for (let i = 0; i < 40; i++) {
      const c = client(s.path);
      c.sock.write(`POST /stalled HTTP/1.1\r\nhost: x\r\ncontent-length: ${1 << 20}\r\n\r\n${'x'.repeat(1000)}`);
      stalled.push(c);
    }
    await until(() => pieces === 40, 'every stalled upload began');
    const grew = process.memoryUsage().arrayBuffers - before;
    assert.ok(grew < 40 * (16 << 10), `40 stalled uploads hold ${(grew / 2 ** 20).toFixed(1)} MiB of buffers`);
    for (const c of stalled) c.sock.destroy();

    // 1 MiB in 64 KiB chunks: Node read it in about 19 reads; 16 KiB reads would take 64.
    pieces = 0;
    const parts = [Buffer.from('POST /chunked HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n')];
    const body = Buffer.alloc(1 << 20, 97);
    for (let i = 0; i < body.length; i += 1 << 16) parts.push(Buffer.from('10000\r\n'), body.subarray(i, i + (1 << 16)), Buffer.from('\r\n'));
    parts.push(Buffer.from('0\r\n\r\n'));
    const c = client(s.path);
    c.sock.write(Buffer.concat(parts));
    await c.wait(/done$/);
    assert.ok(pieces <= 40, `1 MiB chunked arrived in ${pieces} pieces`);
  });
});

test('own reads keep net.Server\'s count of connections: getConnections, and close() waits for them', async () => {
  const s = await serve((_req, res) => res.end('x'));
  const c = client(s.path);
  await until(() => s.server.connections === 1, 'accepted');
  const count = await new Promise<number>((r) => s.server.listener.getConnections((_e, k) => r(k)));
  assert.is(count, 1);
  let closed = false;
  s.server.listener.close(() => (closed = true));
  await new Promise((r) => setTimeout(r, 50));
  assert.not.ok(closed, 'close waits for the connection');
  c.sock.destroy();
  await until(() => closed, 'the close callback once the client left');
});

test('acceptFrom: another listener serves like the main one; one that starts after close() closes at once', async () => {
  const echo: Handler = (req, res) => res.end(`${req.method} ${req.url}`);
  const s = await serve(echo);
  const extraPath = join(dir, `s${n++}.sock`);
  const extra = net.createServer();
  s.server.acceptFrom(extra);
  await new Promise<void>((r) => extra.listen(extraPath, r));
  try {
    const c = client(extraPath);
    c.sock.write('GET /via-extra HTTP/1.1\r\nHost: x\r\n\r\n');
    await c.wait(/GET \/via-extra$/);
    c.sock.destroy();
    // A listener still being set up when the server closes (a SIGTERM during start-up).
    s.server.close();
    const late = net.createServer();
    s.server.acceptFrom(late);
    let lateClosed = false;
    late.once('close', () => (lateClosed = true));
    late.listen(join(dir, `s${n++}.sock`));
    await until(() => lateClosed, 'the late listener closed itself');
    assert.not.ok(late.listening, 'it does not stay open to reset connections');
    assert.not.ok(extra.listening, 'close() closed the listener added before');
  } finally {
    if (extra.listening) extra.close();
    await s.close();
  }
});

test('acceptFrom: the other listener\'s connections read into buffers their connection chooses, as the main one\'s', async () => {
  const pieces: Buffer[] = [];
  const s = await serve((req, res) => req.read({ data: (c) => pieces.push(c), end: () => res.end('done'), abort: () => {} }));
  const extraPath = join(dir, `s${n++}.sock`);
  const extra = net.createServer();
  s.server.acceptFrom(extra);
  await new Promise<void>((r) => extra.listen(extraPath, r));
  try {
    const body = Buffer.alloc(600_000);
    for (let i = 0; i < body.length; i++) body[i] = (i * 13 + (i >> 10)) & 0xff;
    const c = client(extraPath);
    c.sock.write(Buffer.concat([Buffer.from(`POST /x HTTP/1.1\r\nhost: x\r\ncontent-length: ${body.length}\r\n\r\n`), body]));
    await c.wait(/done$/, 5000);
    c.sock.destroy();
    assert.ok(Buffer.concat(pieces).equals(body), 'the body arrived intact');
    // Node's own reads give every piece storage of its own, of 64 KiB at most.
    const stores = new Set(pieces.map((p) => p.buffer));
    assert.ok(stores.size < pieces.length, `${pieces.length} pieces share storage (${stores.size} stores)`);
    assert.ok(Math.max(...[...stores].map((b) => b.byteLength)) > 64 << 10, 'reads larger than Node\'s 64 KiB');
  } finally {
    if (extra.listening) extra.close();
    await s.close();
  }
});

// ---------------------------------------------------------------------------------------
// The gate (mayStart): while it is shut, requests wait in a queue, in the order they arrived,
// on connections that stop reading.

/**
 * A gate that lets `limit` requests be served at once: each request answers when the test
 * says so, and the gate reopens after each answer. `order` is the order requests began in.
 */
function gated(limit: number) {
  const g = {
    active: 0,
    order: [] as string[],
    pending: [] as Array<() => void>,
    server: undefined as Http1Server | undefined,
    mayStart: () => g.active < limit,
    handler: ((req, res) => {
      g.active++;
      g.order.push(req.url);
      req.read({
        data: () => {},
        end: () =>
          g.pending.push(() => {
            g.active--;
            res.writeHead(200, { 'content-length': req.url.length });
            res.end(req.url);
            g.server!.reopen();
          }),
        abort: () => {},
      });
    }) as Handler,
    /** Answers every request begun so far. */
    answerAll: () => {
      for (const answer of g.pending.splice(0)) answer();
    },
  };
  return g;
}

const post = (url: string): string => `POST ${url} HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc`;

/** A handler that records the order requests began in and answers each with its URL once its body is read. */
function recorder() {
  const started: string[] = [];
  const handler: Handler = (req, res) => {
    started.push(req.url);
    req.read({ data: () => {}, end: () => res.end(req.url), abort: () => {} });
  };
  return { started, handler };
}

/** Starts a request that holds the gate's one place until answerAll(); returns its client. */
async function occupy(g: ReturnType<typeof gated>, s: Served) {
  g.server = s.server;
  const first = client(s.path);
  first.sock.write(post('/first'));
  await until(() => g.active === 1, 'the first request began');
  return first;
}

test('gate: requests wait while it is shut and are let in in the order they arrived, not their connections\' order', async () => {
  const g = gated(1);
  await withServer(g.handler, { mayStart: g.mayStart }, async (s) => {
    const first = await occupy(g, s);
    // Two batches' worth of connections, connected one after another while the gate is shut:
    // a connection with nothing to send does not wait.
    const conns = [];
    for (let i = 0; i < 2 * RESUME_PER_TURN; i++) {
      conns.push(client(s.path));
      await until(() => s.server.connections === i + 2, `connection ${i} accepted`);
    }
    assert.is(s.server.waiting, 0);
    // Requests sent on the newest connection first, one at a time.
    const arrived: string[] = [];
    for (let i = conns.length - 1; i >= 0; i--) {
      conns[i]!.sock.write(post(`/w${i}`));
      arrived.push(`/w${i}`);
      await until(() => s.server.waiting === arrived.length, `request ${i} waits`);
    }
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(g.order, ['/first'], 'nothing was read while the gate was shut');
    g.answerAll();
    await first.wait(/\/first$/);
    // The first batch is let in together; the gate shuts on it, and the next batch waits.
    await until(() => g.order.length === 1 + RESUME_PER_TURN, 'the first batch began');
    await new Promise((r) => setTimeout(r, 50));
    assert.is(g.order.length, 1 + RESUME_PER_TURN, 'the second batch waited for the gate');
    assert.equal([...g.order.slice(1)].sort(), arrived.slice(0, RESUME_PER_TURN).sort());
    while (g.order.length < 1 + conns.length) {
      g.answerAll();
      await new Promise((r) => setTimeout(r, 10));
    }
    g.answerAll();
    assert.equal([...g.order.slice(1 + RESUME_PER_TURN)].sort(), arrived.slice(RESUME_PER_TURN).sort());
    for (let i = 0; i < conns.length; i++) await conns[i]!.wait(new RegExp(`/w${i}$`));
    assert.is(s.server.waiting, 0);
    for (const c of [first, ...conns]) c.sock.destroy();
  });
});

test('gate: a connection that fell idle while it was shut still waits for it with its next request', async () => {
  const g = gated(1);
  await withServer(g.handler, { mayStart: g.mayStart }, async (s) => {
    const first = await occupy(g, s);
    const idle = client(s.path);
    await until(() => s.server.connections === 2, 'accepted');
    g.answerAll();
    await first.wait(/\/first$/);
    // The gate opened and shut again on another request, with nothing from the idle connection.
    const second = client(s.path);
    second.sock.write(post('/second'));
    await until(() => g.active === 1 && g.order.includes('/second'), 'the second request began');
    idle.sock.write(post('/late'));
    await until(() => s.server.waiting === 1, 'the late request waits');
    await new Promise((r) => setTimeout(r, 50));
    assert.is(g.active, 1, 'the gate let one request in at a time');
    assert.not.ok(g.order.includes('/late'));
    g.answerAll();
    await until(() => g.order.includes('/late'), 'the late request began once the gate opened');
    g.answerAll();
    await idle.wait(/\/late$/);
    for (const c of [first, second, idle]) c.sock.destroy();
  });
});

test('gate: a client that hangs up while its connection waits is let go at once', async () => {
  await withServer((_req, res) => res.end('x'), { mayStart: () => false }, async (s) => {
    const c = client(s.path);
    c.sock.write('POST /x HTTP/1.1\r\n');
    await until(() => s.server.waiting === 1, 'waiting');
    c.sock.destroy();
    await until(() => s.server.connections === 0, 'the dead connection closed', 1000);
    assert.is(s.server.waiting, 0);
  });
});

test('gate: a waiting connection reads no more than 16 KiB and a read; the rest waits in the socket', async () => {
  await withServer((_req, res) => res.end('x'), { mayStart: () => false }, async (s) => {
    const c = client(s.path);
    const body = Buffer.alloc(4 << 20, 98);
    c.sock.write(Buffer.concat([Buffer.from(`POST /big HTTP/1.1\r\nhost: x\r\ncontent-length: ${body.length}\r\n\r\n`), body]));
    await until(() => s.server.waiting === 1, 'waiting');
    await new Promise((r) => setTimeout(r, 200));
    // The socket itself holds a few hundred KiB; without the stop the server would take it all.
    assert.ok(c.sock.writableLength > 3 << 20, `${c.sock.writableLength} bytes still unsent by the client`);
    c.sock.destroy();
  });
});

test('gate: a connection with nothing to send does not wait, nor hold up the requests behind it', async () => {
  const g = gated(1);
  await withServer(g.handler, { mayStart: g.mayStart }, async (s) => {
    const first = await occupy(g, s);
    // More silent connections than one turn resumes, then one with a request.
    const silent = [];
    for (let i = 0; i < RESUME_PER_TURN + 1; i++) {
      silent.push(client(s.path));
      await until(() => s.server.connections === i + 2, `connection ${i} accepted`);
    }
    const last = client(s.path);
    await until(() => s.server.connections === silent.length + 2, 'the last connection accepted');
    last.sock.write(post('/last'));
    g.answerAll();
    await until(() => g.active === 1 && g.order.includes('/last'), 'the last request began');
    g.answerAll();
    await last.wait(/\/last$/);
    for (const c of [first, last, ...silent]) c.sock.destroy();
  });
});

test('gate: a waiting connection is not closed as idle, however long it waits', async () => {
  const g = gated(1);
  await withServer(g.handler, { mayStart: g.mayStart, keepAliveTimeoutMs: 100 }, async (s) => {
    const first = await occupy(g, s);
    const held = client(s.path);
    await until(() => s.server.connections === 2, 'accepted');
    held.sock.write(post('/held'));
    // Four keep-alive timeouts; the first connection is busy, the second waits.
    await new Promise((r) => setTimeout(r, 400));
    assert.is(held.closed, false);
    g.answerAll();
    await until(() => g.order.includes('/held'), 'the held request began');
    g.answerAll();
    await held.wait(/\/held$/);
    for (const c of [first, held]) c.sock.destroy();
  });
});

test('gate: close() serves the requests that wait, and closes the connections that hold nothing', async () => {
  const g = gated(1);
  await withServer(g.handler, { mayStart: g.mayStart }, async (s) => {
    const first = await occupy(g, s);
    const held = client(s.path);
    await until(() => s.server.connections === 2, 'accepted');
    const silent = client(s.path);
    await until(() => s.server.connections === 3, 'accepted');
    held.sock.write(post('/held'));
    await new Promise((r) => setTimeout(r, 50));
    await s.server.close();
    assert.ok(g.order.includes('/held'), 'the waiting request was read');
    await until(() => silent.closed, 'the silent connection closed');
    g.answerAll();
    await held.wait(/\/held$/);
    assert.match(held.text, /connection: close/i);
    await until(() => held.closed && first.closed, 'both closed after their answers');
  });
});

test('gate: a pipelined request waits at a shut gate like any other', async () => {
  let open = true;
  const started: string[] = [];
  const answers: Array<() => void> = [];
  await withServer(
    (req, res) => {
      started.push(req.url);
      req.read({ data: () => {}, end: () => answers.push(() => res.end(req.url)), abort: () => {} });
    },
    { mayStart: () => open },
    async (s) => {
      const a = client(s.path);
      a.sock.write(post('/a'));
      await until(() => started.includes('/a'), '/a began');
      open = false; // the gate shuts (bodies pile up for Lambda elsewhere)
      const c = client(s.path);
      c.sock.write(post('/c'));
      await until(() => s.server.waiting === 1, '/c waits');
      a.sock.write(post('/b')); // pipelined on a, after /c arrived
      await new Promise((r) => setTimeout(r, 50));
      answers.shift()!(); // /a answered; the gate is still shut
      await a.wait(/\/a$/);
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(started, ['/a'], 'nothing started while the gate was shut');
      a.sock.destroy();
      c.sock.destroy();
    },
  );
});

test('gate: an empty line after a request does not let the next one skip a shut gate', async () => {
  let open = true;
  const { started, handler } = recorder();
  await withServer(
    handler,
    { mayStart: () => open },
    async (s) => {
      const a = client(s.path);
      a.sock.write(post('/a') + '\r\n');
      await a.wait(/\/a$/);
      await new Promise((r) => setTimeout(r, 50));
      open = false;
      a.sock.write(post('/b'));
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(started, ['/a'], 'the gate is shut: /b waits');
      a.sock.destroy();
    },
  );
});

test('keep-alive: an empty line after a request leaves the connection idle, not timed as a request head', async () => {
  await withServer(
    (req, res) => req.read({ data: () => {}, end: () => res.end('ok'), abort: () => {} }),
    { headersTimeoutMs: 100, keepAliveTimeoutMs: 10_000 },
    async (s) => {
      const a = client(s.path);
      a.sock.write(post('/a') + '\r\n');
      await a.wait(/ok$/);
      await new Promise((r) => setTimeout(r, 400));
      assert.not.match(a.text, /408/, 'no 408 on an idle keep-alive connection');
      assert.is(a.closed, false);
      a.sock.destroy();
    },
  );
});

test('gate: close() serves a request sent on an idle connection just before it, while the gate is shut', async () => {
  const { started, handler } = recorder();
  await withServer(
    handler,
    { mayStart: () => false },
    async (s) => {
      const c = client(s.path);
      await until(() => s.server.connections === 1, 'accepted');
      await new Promise((r) => setTimeout(r, 20));
      c.sock.write(post('/late'));
      const closed = s.server.close();
      await closed;
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(started, ['/late'], 'the request sent before close() is served');
    },
  );
});

test('gate: requests whose clients hang up while they wait hold up none of the others, which start in arrival order', async () => {
  let open = false;
  const { started, handler } = recorder();
  await withServer(
    handler,
    { mayStart: () => open },
    async (s) => {
      const cs = [];
      for (let i = 0; i < 50; i++) {
        const c = client(s.path);
        cs.push(c);
        c.sock.write(post(`/r${i}`));
        await until(() => s.server.waiting === i + 1, `r${i} waits`);
      }
      for (let i = 0; i < 50; i += 5) cs[i]!.sock.destroy();
      await until(() => s.server.waiting === 40, '40 wait');
      open = true;
      s.server.reopen();
      await until(() => started.length === 40, 'all started');
      const expect = Array.from({ length: 50 }, (_, i) => i).filter((i) => i % 5 !== 0).map((i) => `/r${i}`);
      assert.equal(started, expect);
      assert.is(s.server.waiting, 0);
      for (const c of cs) c.sock.destroy();
    },
  );
});

test.after(() => rmSync(dir, { recursive: true, force: true }));

test.run();
