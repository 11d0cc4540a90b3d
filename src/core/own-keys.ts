/**
 * Objects keyed by text that clients choose (field tables, JSON bodies, column paths) are read
 * and written through own properties only: a key `__proto__` is data, never a way into
 * Object.prototype.
 */

/** Path segments refused in client-chosen property paths: they name object internals. */
export const FORBIDDEN_SEGMENTS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);

/** Sets `key` as an own enumerable property (plain assignment to `__proto__` would replace the prototype). */
export function setOwn<T>(o: Record<string, T>, key: string, value: T): void {
  if (key === '__proto__') Object.defineProperty(o, key, { value, enumerable: true, writable: true, configurable: true });
  else o[key] = value;
}

/** The own property `key` of `o`, or undefined (inherited members such as `constructor` are not seen). */
export function getOwn(o: object, key: string): unknown {
  return Object.hasOwn(o, key) ? (o as Record<string, unknown>)[key] : undefined;
}
