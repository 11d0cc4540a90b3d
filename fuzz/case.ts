import { readFile, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import WebSocket from 'ws';
import type { KnownIssue, PortName, TargetName } from './config.js';
import type { Rng } from './prng.js';

/** How a case's connection ends once its bytes are written. */
export type EndMode = 'end' | 'reset' | 'linger' | 'now';

/** Bytes written on a raw TCP connection to one of the broker's ports. */
export interface RawCase {
  kind: 'raw';
  port: PortName;
  chunks: Buffer[];
  /** Wait for the first reply bytes after the first chunk (e.g. an HTTP 101) before the rest. */
  awaitReply: boolean;
  end: EndMode;
  /** What the generator built, for the failure report. */
  note: string;
}

/** Messages sent by the `ws` client after a real upgrade. */
export interface WsClientCase {
  kind: 'ws-client';
  path: string;
  protocols: string[];
  messages: Buffer[];
  binary: boolean;
  end: 'close' | 'terminate';
  note: string;
}

export type FuzzCase = RawCase | WsClientCase;

export interface Ports {
  amqp: number;
  mqtt: number;
  stomp: number;
  http: number;
}

export interface TargetContext {
  /** Known issues the generator must not trigger. */
  skip: ReadonlySet<KnownIssue>;
  /** Prefix of every name the cases use. */
  ns: string;
}

export interface Target {
  name: TargetName;
  generate(rng: Rng, ctx: TargetContext): FuzzCase;
}

/** How long a case's connection may stay open, at most. */
const CASE_TIMEOUT_MS = 1500;
/** After the last write (or reply), wait this long for the broker's answer before ending. */
const QUIET_MS = 60;

/**
 * Runs one case on its own connection and resolves when the connection is gone. Never rejects:
 * whatever the broker does to the connection (close, reset, silence) is a valid outcome; the health
 * checks decide whether the broker is still fine.
 */
export function runCase(c: FuzzCase, ports: Ports): Promise<void> {
  return c.kind === 'raw' ? runRaw(c, ports) : runWsClient(c, ports);
}

function runRaw(c: RawCase, ports: Ports): Promise<void> {
  return new Promise((resolve) => {
    let s: Socket | undefined;
    let done = false;
    let quiet: NodeJS.Timeout | undefined;
    const finish = (): void => {
      if (done) return;
      done = true;
      clearTimeout(hard);
      clearTimeout(quiet);
      if (s && !s.destroyed) {
        if (c.end === 'reset' || c.end === 'now') s.resetAndDestroy();
        else if (c.end === 'end') {
          s.end();
          setTimeout(() => s?.destroy(), 200).unref();
        } else s.destroy();
      }
      resolve();
    };
    const hard = setTimeout(finish, CASE_TIMEOUT_MS);
    const settle = (): void => {
      clearTimeout(quiet);
      quiet = setTimeout(finish, c.end === 'linger' ? QUIET_MS * 4 : QUIET_MS);
    };
    let next = 0;
    let waiting = false;
    const writeRest = (): void => {
      if (!s || s.destroyed || done) return;
      while (next < c.chunks.length) {
        const chunk = c.chunks[next++]!;
        s.write(chunk);
        if (next === 1 && c.awaitReply && c.chunks.length > 1) {
          waiting = true;
          return;
        }
        // separate writes now and then, so that the broker sees the pieces in separate reads
        if (next < c.chunks.length && (next & 7) === 0) {
          setImmediate(writeRest);
          return;
        }
      }
      if (c.end === 'now') finish();
      else settle();
    };
    s = connect({ port: ports[c.port], host: '127.0.0.1' }, writeRest);
    s.on('data', () => {
      if (waiting) {
        waiting = false;
        writeRest();
      } else if (next >= c.chunks.length) settle();
    });
    s.on('error', () => undefined);
    s.on('close', () => {
      if (waiting) {
        waiting = false;
      }
      finish();
    });
    s.setNoDelay(true);
  });
}

function runWsClient(c: WsClientCase, ports: Ports): Promise<void> {
  return new Promise((resolve) => {
    let done = false;
    const ws = new WebSocket(`ws://127.0.0.1:${ports.http}${c.path}`, c.protocols, { handshakeTimeout: CASE_TIMEOUT_MS });
    let quiet: NodeJS.Timeout | undefined;
    const finish = (): void => {
      if (done) return;
      done = true;
      clearTimeout(hard);
      clearTimeout(quiet);
      if (c.end === 'terminate' || ws.readyState !== WebSocket.OPEN) ws.terminate();
      else ws.close(1000);
      setTimeout(() => ws.terminate(), 200).unref();
      resolve();
    };
    const hard = setTimeout(finish, CASE_TIMEOUT_MS);
    const settle = (): void => {
      clearTimeout(quiet);
      quiet = setTimeout(finish, QUIET_MS);
    };
    ws.on('open', () => {
      for (const m of c.messages) ws.send(m, { binary: c.binary });
      settle();
    });
    ws.on('message', settle);
    ws.on('error', () => undefined);
    ws.on('close', finish);
  });
}

/** A case as files: the bytes in `<base>.bin`, how to send them in `<base>.json`. */
export async function saveCase(base: string, target: string, index: number, c: FuzzCase): Promise<string> {
  const bufs = c.kind === 'raw' ? c.chunks : c.messages;
  const meta = { ...c, chunks: undefined, messages: undefined, target, index, sizes: bufs.map((b) => b.length) };
  await writeFile(`${base}.bin`, Buffer.concat(bufs));
  await writeFile(`${base}.json`, JSON.stringify(meta, null, 2) + '\n');
  return `${base}.bin`;
}

/** The target a case file was saved from. */
export async function caseTarget(path: string): Promise<string> {
  const meta = JSON.parse(await readFile(`${path.replace(/\.(bin|json)$/, '')}.json`, 'utf8')) as Record<string, unknown>;
  return String(meta['target'] ?? 'unknown');
}

/** Reads a case written by saveCase (the path of its .bin or .json file). */
export async function loadCase(path: string): Promise<FuzzCase> {
  const base = path.replace(/\.(bin|json)$/, '');
  const meta = JSON.parse(await readFile(`${base}.json`, 'utf8')) as Record<string, unknown>;
  const bytes = await readFile(`${base}.bin`);
  const sizes = Array.isArray(meta['sizes']) ? (meta['sizes'] as number[]) : [bytes.length];
  const bufs: Buffer[] = [];
  let off = 0;
  for (const n of sizes) {
    bufs.push(bytes.subarray(off, off + n));
    off += n;
  }
  if (meta['kind'] === 'ws-client') {
    return {
      kind: 'ws-client',
      path: String(meta['path']),
      protocols: (meta['protocols'] as string[] | undefined) ?? [],
      messages: bufs,
      binary: meta['binary'] === true,
      end: meta['end'] === 'terminate' ? 'terminate' : 'close',
      note: String(meta['note'] ?? ''),
    };
  }
  return {
    kind: 'raw',
    port: meta['port'] as PortName,
    chunks: bufs,
    awaitReply: meta['awaitReply'] === true,
    end: (meta['end'] as EndMode | undefined) ?? 'end',
    note: String(meta['note'] ?? ''),
  };
}

export function pickEnd(rng: Rng): EndMode {
  return rng.pick(['end', 'end', 'reset', 'linger', 'now'] as const);
}
