// An HTTP/2 peer at the frame level, over TLS on loopback, for behaviour no real server
// shows on request: one that falls silent, or sends header blocks built by hand.
// It reads the client preface and frames, sends an empty SETTINGS and acknowledges the
// client's; everything else is up to the test's `onFrame`.
import net from 'node:net';
import tls from 'node:tls';
import type { TestCA } from './tls.ts';

export interface Frame {
  type: number;
  flags: number;
  id: number;
  payload: Buffer;
}

export function frame(type: number, flags: number, id: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(id, 5);
  return Buffer.concat([head, payload]);
}

export interface RawPeer {
  port: number;
  /** Every frame each connection received, in order (one array per connection). */
  received: Frame[][];
  close(): Promise<void>;
}

const PREFACE_LENGTH = 24;

export async function rawH2Peer(ca: TestCA, onFrame: (f: Frame, socket: tls.TLSSocket) => void = () => {}): Promise<RawPeer> {
  const sockets: tls.TLSSocket[] = [];
  const received: Frame[][] = [];
  const srv = tls.createServer({ cert: ca.cert, key: ca.key, ALPNProtocols: ['h2'] }, (socket) => {
    sockets.push(socket);
    const frames: Frame[] = [];
    received.push(frames);
    socket.on('error', () => {});
    socket.write(frame(0x4, 0, 0));
    let buf = Buffer.alloc(0);
    let prefaced = false;
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (!prefaced) {
        if (buf.length < PREFACE_LENGTH) return;
        buf = buf.subarray(PREFACE_LENGTH);
        prefaced = true;
      }
      while (buf.length >= 9) {
        const length = buf.readUIntBE(0, 3);
        if (buf.length < 9 + length) break;
        const f = { type: buf[3]!, flags: buf[4]!, id: buf.readUInt32BE(5) & 0x7fffffff, payload: buf.subarray(9, 9 + length) };
        buf = buf.subarray(9 + length);
        frames.push(f);
        if (f.type === 0x4 && (f.flags & 0x1) === 0) socket.write(frame(0x4, 0x1, 0));
        onFrame(f, socket);
      }
    });
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  return {
    port: (srv.address() as net.AddressInfo).port,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        srv.close(() => resolve());
      }),
  };
}
