import { ByteQueue } from '../../../src/transport/byte-queue.js';
import { STOMP_ERRORS, type StompError } from '../errors.js';
import { COLON, CR, CONNECTED_LIMITS, Escaping, LF, NUL, type DecoderLimits } from './constants.js';
import { unescapeHeader } from './escape.js';

/** One decoded frame. Repeated headers keep their first value (STOMP 1.2 "Repeated Header Entries"). */
export interface StompFrame {
  command: string;
  headers: Map<string, string>;
  /**
   * A view of the received bytes when the body arrived in one chunk, else one copy (STYLE P1). It
   * shares the socket chunk: copy what outlives the frame (P3).
   */
  body: Buffer;
}

const EMPTY = Buffer.alloc(0);
const CONTENT_LENGTH = 'content-length';
const MAX_CONTENT_LENGTH_DIGITS = 10;

/** Frames whose headers are never escaped, whatever the version. */
function isUnescaped(command: string): boolean {
  return command === 'CONNECT' || command === 'STOMP' || command === 'CONNECTED';
}

/** Headers decoded, body still arriving. */
interface PendingBody {
  command: string;
  headers: Map<string, string>;
  /** Bytes of the command line and headers (counted against maxFrame). */
  headBytes: number;
  /** -1: the body ends at the first NUL. */
  contentLength: number;
}

/**
 * An incremental STOMP frame decoder over a ByteQueue:
 * `frame = command EOL *(header EOL) EOL *OCTET NUL *(EOL)`, EOL = [CR] LF.
 *
 * Between frames, LF, CR LF and NUL are skipped, as RabbitMQ's parser does: heart-beats, the EOLs
 * some clients write after a frame's NUL, and a stray NUL (an empty frame). A CR not followed by
 * LF starts a command (that then fails as an unknown command).
 *
 * Sizes are checked before bytes are kept: a header line, the header block and a declared
 * `content-length` are measured against the limits as soon as they are known, and a body without
 * `content-length` as it grows. The header block is scanned once (the scan resumes where the last
 * chunk ended), then parsed from one view of it.
 */
export class FrameDecoder {
  private readonly queue = new ByteQueue();
  /** Escaping of the negotiated version (NONE until CONNECT). */
  escaping = Escaping.NONE;
  /** STOMP 1.0: leading whitespace of header values is dropped (as RabbitMQ does). */
  trimValues = false;
  limits: DecoderLimits;
  /** Heart-beat EOLs seen between frames. */
  heartbeats = 0;
  /**
   * When set, a command line outside this set fails as soon as it is complete, before any header
   * or body is waited for (an HTTP request sent to the STOMP port fails at once).
   */
  commands: ReadonlySet<string> | undefined;
  /** The error for a command line outside `commands` (RabbitMQ's "Bad command" by default). */
  unknownCommand: (command: string) => StompError = STOMP_ERRORS.badCommand;

  // Header-block scan state, kept across chunks so that no byte is scanned twice.
  private scanPos = 0;
  private lineStart = 0;
  private lines = 0;
  private started = false;
  /** The command line, when `commands` checking already decoded it. */
  private checkedCommand: string | undefined;
  private pending: PendingBody | undefined;
  /** Where the search for the NUL that ends a body without content-length resumes. */
  private nulScan = 0;

  constructor(limits: DecoderLimits = CONNECTED_LIMITS) {
    this.limits = limits;
  }

  /** Unread bytes. */
  get buffered(): number {
    return this.queue.length;
  }

  push(chunk: Buffer): void {
    this.queue.push(chunk);
  }

  clear(): void {
    this.queue.clear();
    this.pending = undefined;
    this.resetScan();
    this.nulScan = 0;
  }

  /** The next complete frame, or null when more bytes are needed. Throws StompError on bad input. */
  next(): StompFrame | null {
    if (this.pending === undefined) {
      if (!this.started && !this.skipEols()) return null;
      const end = this.scanHead();
      if (end < 0) return null;
      this.pending = this.parseHead(this.queue.consume(end), end);
      this.resetScan();
    }
    return this.takeBody(this.pending);
  }

  /** Skips heart-beats (EOLs) and empty frames (NULs) before a frame; false when nothing else is buffered. */
  private skipEols(): boolean {
    const q = this.queue;
    while (q.length > 0) {
      const b = q.at(0);
      if (b === LF) {
        q.skip(1);
        this.heartbeats++;
      } else if (b === NUL) {
        q.skip(1);
      } else if (b === CR) {
        if (q.length < 2) return false;
        if (q.at(1) !== LF) break;
        q.skip(2);
        this.heartbeats++;
      } else break;
    }
    if (q.length === 0) return false;
    this.started = true;
    return true;
  }

  /**
   * Finds the blank line that ends the command and headers. Returns the number of bytes up to
   * and including it, or -1 (after checking the limits against what is buffered so far).
   */
  private scanHead(): number {
    const q = this.queue;
    const { maxFrame, maxHeaders, maxLine } = this.limits;
    const maxHead = Math.min(this.limits.maxHead ?? maxFrame, maxFrame);
    for (;;) {
      const lf = q.indexOf(LF, this.scanPos);
      if (lf < 0) {
        if (q.length - this.lineStart > maxLine + 1) throw lineTooLong(maxLine, this.lines);
        if (q.length > maxHead) throw frameTooLarge(maxHead);
        this.scanPos = q.length;
        return -1;
      }
      let len = lf - this.lineStart;
      if (len > 0 && q.at(lf - 1) === CR) len--;
      if (len > maxLine) throw lineTooLong(maxLine, this.lines);
      if (lf + 1 > maxHead) throw frameTooLarge(maxHead);
      if (len === 0 && this.lines > 0) return lf + 1;
      if (this.lines === 0 && this.commands !== undefined) this.checkCommand(len);
      if (++this.lines > maxHeaders + 1) {
        throw STOMP_ERRORS.tooManyHeaders(maxHeaders);
      }
      this.lineStart = lf + 1;
      this.scanPos = lf + 1;
    }
  }

  private checkCommand(len: number): void {
    const command = this.queue.peek(len).toString('latin1');
    this.checkedCommand = command;
    if (!this.commands!.has(command)) throw this.unknownCommand(command.length > 64 ? `${command.slice(0, 64)}...` : command);
  }

  private resetScan(): void {
    this.scanPos = 0;
    this.lineStart = 0;
    this.lines = 0;
    this.started = false;
    this.checkedCommand = undefined;
  }

  /** Parses the command line and headers from one buffer holding exactly them. */
  private parseHead(head: Buffer, size: number): PendingBody {
    let pos = 0;
    let lf = head.indexOf(LF, pos);
    const command = this.checkedCommand ?? head.toString('latin1', pos, lineEnd(head, pos, lf));
    pos = lf + 1;
    const escaping = isUnescaped(command) ? Escaping.NONE : this.escaping;
    const headers = new Map<string, string>();
    for (;;) {
      lf = head.indexOf(LF, pos);
      const end = lineEnd(head, pos, lf);
      if (end === pos) break; // the blank line
      const colon = head.indexOf(COLON, pos);
      if (colon < 0 || colon >= end) {
        throw STOMP_ERRORS.headerWithoutColon(head.toString('utf8', pos, end));
      }
      if (colon === pos) throw STOMP_ERRORS.emptyHeaderName();
      let name = head.toString('utf8', pos, colon);
      let value = head.toString('utf8', colon + 1, end);
      if (escaping !== Escaping.NONE) {
        name = unescapeHeader(name, escaping);
        value = unescapeHeader(value, escaping);
      }
      if (this.trimValues) value = value.trimStart();
      if (!headers.has(name)) headers.set(name, value);
      pos = lf + 1;
    }
    let contentLength = -1;
    const cl = headers.get(CONTENT_LENGTH);
    if (cl !== undefined) {
      contentLength = parseContentLength(cl);
      const maxBody = this.limits.maxBody;
      if (maxBody !== undefined && contentLength > maxBody) throw STOMP_ERRORS.messageTooLarge(contentLength, maxBody);
      if (size + contentLength + 1 > this.limits.maxFrame) throw frameTooLarge(this.limits.maxFrame);
    }
    return { command, headers, headBytes: size, contentLength };
  }

  private takeBody(p: PendingBody): StompFrame | null {
    const q = this.queue;
    let body: Buffer;
    if (p.contentLength >= 0) {
      const n = p.contentLength;
      if (q.length < n + 1) return null;
      if (q.at(n) !== NUL) {
        throw STOMP_ERRORS.bodyLongerThanContentLength(n);
      }
      body = n === 0 ? EMPTY : q.consume(n);
      q.skip(1);
    } else {
      const nul = q.indexOf(NUL, this.nulScan);
      const maxBody = this.limits.maxBody;
      if (nul < 0) {
        if (maxBody !== undefined && q.length > maxBody) throw STOMP_ERRORS.messageTooLarge(q.length, maxBody);
        if (p.headBytes + q.length >= this.limits.maxFrame) throw frameTooLarge(this.limits.maxFrame);
        this.nulScan = q.length;
        return null;
      }
      if (maxBody !== undefined && nul > maxBody) throw STOMP_ERRORS.messageTooLarge(nul, maxBody);
      if (p.headBytes + nul + 1 > this.limits.maxFrame) throw frameTooLarge(this.limits.maxFrame);
      body = nul === 0 ? EMPTY : q.consume(nul);
      q.skip(1);
      this.nulScan = 0;
    }
    this.pending = undefined;
    return { command: p.command, headers: p.headers, body };
  }
}

/** End of the line starting at `pos` whose LF is at `lf`, without a trailing CR. */
function lineEnd(buf: Buffer, pos: number, lf: number): number {
  return lf > pos && buf[lf - 1] === CR ? lf - 1 : lf;
}

function parseContentLength(raw: string): number {
  const s = raw.trim();
  if (s.length === 0 || s.length > MAX_CONTENT_LENGTH_DIGITS || !/^[0-9]+$/.test(s)) {
    throw STOMP_ERRORS.badContentLength(raw);
  }
  return Number(s);
}

function frameTooLarge(max: number): StompError {
  return STOMP_ERRORS.frameTooLarge(max);
}

function lineTooLong(max: number, lines: number): StompError {
  const what = lines === 0 ? 'the command line' : 'a header line';
  return STOMP_ERRORS.headerTooLong(what, max);
}
