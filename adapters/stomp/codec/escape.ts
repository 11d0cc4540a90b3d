import { STOMP_ERRORS } from '../errors.js';
import { Escaping } from './constants.js';

const NEEDS_ESCAPE = /[\\:\n\r]/;
const LINE_BREAK = /[\r\n]/g;

/**
 * Escapes a header name or value for the wire (STOMP 1.2 "Value Encoding"). STOMP 1.0 cannot
 * carry a line break in a header at all: it becomes a space.
 */
export function escapeHeader(s: string, escaping: Escaping): string {
  switch (escaping) {
    case Escaping.NONE:
      return s.indexOf('\n') === -1 && s.indexOf('\r') === -1 ? s : s.replace(LINE_BREAK, ' ');
    case Escaping.V11:
      if (!NEEDS_ESCAPE.test(s)) return s;
      // 1.1 has no escape for CR; a bare CR would be eaten as part of an EOL, so drop it.
      return escapeSlow(s, false);
    default:
      return NEEDS_ESCAPE.test(s) ? escapeSlow(s, true) : s;
  }
}

function escapeSlow(s: string, cr: boolean): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x5c) out += '\\\\';
    else if (c === 0x0a) out += '\\n';
    else if (c === 0x3a) out += '\\c';
    else if (c === 0x0d) out += cr ? '\\r' : ' ';
    else out += s[i];
  }
  return out;
}

/**
 * Undoes header escaping. An escape the version does not define is a fatal protocol error
 * (STOMP 1.2: "Undefined escape sequences such as \t MUST be treated as a fatal protocol error").
 */
export function unescapeHeader(s: string, escaping: Escaping): string {
  if (escaping === Escaping.NONE || s.indexOf('\\') === -1) return s;
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c !== 0x5c) {
      out += s[i];
      continue;
    }
    const e = s.charCodeAt(++i);
    if (e === 0x5c) out += '\\';
    else if (e === 0x6e) out += '\n';
    else if (e === 0x63) out += ':';
    else if (e === 0x72 && escaping === Escaping.V12) out += '\r';
    else {
      const seq = Number.isNaN(e) ? '\\' : `\\${String.fromCharCode(e)}`;
      throw STOMP_ERRORS.badEscape(seq, s);
    }
  }
  return out;
}
