/**
 * Why the store failed. `corrupt`: a record or file could not be decoded (recovery skips it and logs);
 * `startup`: the data directory cannot be used (the broker refuses to start, with this message).
 */
export type StoreErrorKind = 'corrupt' | 'startup';

export class StoreError extends Error {
  override readonly name = 'StoreError';
  constructor(
    readonly kind: StoreErrorKind,
    message: string,
  ) {
    super(message);
  }
}

export function corrupt(text: string): StoreError {
  return new StoreError('corrupt', text);
}

export function startupError(text: string): StoreError {
  return new StoreError('startup', text);
}
