/** STOMP versions the server speaks, lowest first. */
export const SUPPORTED_VERSIONS = ['1.0', '1.1', '1.2'] as const;
export type StompVersion = (typeof SUPPORTED_VERSIONS)[number];

/**
 * How header names and values are escaped on the wire. STOMP 1.0 has no escaping; 1.1 escapes
 * `\\`, LF and `:`; 1.2 adds CR. CONNECT and CONNECTED frames are never escaped (STOMP 1.2 "Value
 * Encoding").
 */
export enum Escaping {
  NONE = 0,
  V11 = 1,
  V12 = 2,
}

export function escapingFor(version: StompVersion): Escaping {
  return version === '1.0' ? Escaping.NONE : version === '1.1' ? Escaping.V11 : Escaping.V12;
}

export const LF = 0x0a;
export const CR = 0x0d;
export const NUL = 0x00;
export const COLON = 0x3a;
export const BACKSLASH = 0x5c;

/** Limits of the frame decoder; everything is checked before bytes are buffered (DESIGN "Errors"). */
export interface DecoderLimits {
  /** Command + headers + body, in bytes. */
  maxFrame: number;
  /** Header lines per frame (the command line not counted). */
  maxHeaders: number;
  /** Bytes of one command or header line, without its EOL. */
  maxLine: number;
  /** Bytes of the command line and headers together (default: maxFrame). */
  maxHead?: number;
  /** Bytes of a body (default: what maxFrame leaves); a larger one is "Message too large". */
  maxBody?: number;
}

/** The largest SEND body accepted by default: RabbitMQ's default max message size, 16 MiB. */
export const DEFAULT_MAX_BODY = 16 * 1024 * 1024;

/** What the command line and headers of a frame may take, after CONNECT. */
export const MAX_HEAD_BYTES = 1024 * 1024;

/** After CONNECT: RabbitMQ's max_headers, a 16 MiB body, 1 MiB of headers. */
export const CONNECTED_LIMITS: DecoderLimits = {
  maxFrame: DEFAULT_MAX_BODY + MAX_HEAD_BYTES,
  maxHeaders: 1000,
  maxLine: 64 * 1024,
  maxHead: MAX_HEAD_BYTES,
  maxBody: DEFAULT_MAX_BODY,
};

/** The limits after CONNECT for a largest body of `maxBody` bytes. */
export function connectedLimits(maxBody: number): DecoderLimits {
  return { ...CONNECTED_LIMITS, maxFrame: maxBody + MAX_HEAD_BYTES, maxBody };
}

/** Until the client has authenticated nobody gets to make the broker buffer much. */
export const PRE_CONNECT_LIMITS: DecoderLimits = { maxFrame: 64 * 1024, maxHeaders: 100, maxLine: 8 * 1024 };

/** Client frames the server understands once connected. */
export const CLIENT_COMMANDS: ReadonlySet<string> = new Set([
  'SEND',
  'SUBSCRIBE',
  'UNSUBSCRIBE',
  'ACK',
  'NACK',
  'BEGIN',
  'COMMIT',
  'ABORT',
  'DISCONNECT',
  'CONNECT',
  'STOMP',
]);
