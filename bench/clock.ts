/**
 * A wall clock in milliseconds (fractional, sub-millisecond precision) that is comparable across the
 * processes of one host. `performance.timeOrigin` is the wall-clock instant this process started and
 * `performance.now()` a monotonic offset from it, so a publisher's stamp and a consumer's receive time
 * can be subtracted even though they come from different processes. `process.hrtime` would only be
 * meaningful inside one process.
 */
export function wallMs(): number {
  return performance.timeOrigin + performance.now();
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Resolve at the wall-clock instant `at` (ms), or at once if it has passed. */
export function sleepUntil(at: number): Promise<void> {
  return sleep(Math.max(0, at - wallMs()));
}

/** Rejects with `<what>: timed out after <ms> ms` unless `p` settles first. */
export async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The first failure reported by any of a run's client processes: `guard(p)` rejects with it as soon
 * as it is signalled, whatever `p` is waiting for.
 */
export class FailureLatch {
  failure: Error | null = null;
  private readonly failed: Promise<never>;
  private reject: (err: Error) => void = () => undefined;

  constructor() {
    this.failed = new Promise<never>((_, reject) => {
      this.reject = reject;
    });
    this.failed.catch(() => undefined);
  }

  readonly signal = (err: Error): void => {
    this.failure ??= err;
    this.reject(err);
  };

  guard<T>(p: Promise<T>): Promise<T> {
    return Promise.race([p, this.failed]);
  }
}
