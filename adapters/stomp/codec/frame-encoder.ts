import { Escaping } from './constants.js';
import { escapeHeader } from './escape.js';

/** Header name/value pairs in wire order. */
export type HeaderList = ReadonlyArray<readonly [string, string]>;

const EMPTY = Buffer.alloc(0);

/**
 * Encodes a frame: command, headers (escaped for the version, except in CONNECT/CONNECTED),
 * `content-length` whenever there is a body, the body and the NUL. One buffer, one copy of the
 * body. `content-length` in `headers` is ignored: the encoder writes the true one.
 */
export function encodeFrame(command: string, headers: HeaderList, body: Buffer = EMPTY, escaping = Escaping.V12): Buffer {
  const esc = command === 'CONNECTED' || command === 'CONNECT' || command === 'STOMP' ? Escaping.NONE : escaping;
  let head = `${command}\n`;
  for (const [k, v] of headers) {
    if (k === 'content-length') continue;
    head += `${escapeHeader(k, esc)}:${escapeHeader(v, esc)}\n`;
  }
  if (body.length > 0) head += `content-length:${body.length}\n`;
  head += '\n';
  return encodeRaw(head, body);
}

/** `head` (command, headers and the blank line, already escaped) + body + NUL in one buffer. */
export function encodeRaw(head: string, body: Buffer): Buffer {
  const headLen = Buffer.byteLength(head);
  const out = Buffer.allocUnsafe(headLen + body.length + 1);
  out.write(head, 0, headLen, 'utf8');
  if (body.length > 0) body.copy(out, headLen);
  out[headLen + body.length] = 0;
  return out;
}

/** A heart-beat: one EOL. */
export const HEARTBEAT: Buffer = Buffer.from('\n');
