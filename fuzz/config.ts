/**
 * Fuzzing configuration: targets, limits, and the temporary skip list.
 */

export const TARGETS = ['amqp', 'mqtt', 'stomp', 'ws', 'http'] as const;
export type TargetName = (typeof TARGETS)[number];

/** Listeners of the broker child a raw case can be written to. */
export type PortName = 'amqp' | 'mqtt' | 'stomp' | 'http';

/**
 * Classes of input behind crashes the fuzzers found before (each is fixed, with a regression test in
 * test/integration/fuzz-regressions.test.ts). Every run generates all of them; `--skip NAME` makes
 * the generators avoid one, so that while a new crash of that class is being fixed a run can still
 * look for other bugs.
 */
export const KNOWN_ISSUES = {
  /** An upgrade to a path other than /ws, /mqtt, /stomp followed by a TCP reset (unhandled ECONNRESET). */
  'ws-unknown-path-reset': 'upgrade to an unknown path, then a TCP reset',
  /** An upgrade on /ws offering no known subprotocol, then an invalid frame (unhandled RangeError). */
  'ws-no-subprotocol-bad-frame': 'upgrade on /ws without a known subprotocol, then an invalid frame',
  /**
   * A STOMP / MQTT 5 / management publish whose property (or header name) is longer than 255 bytes,
   * or whose headers nest deeper than 64 levels, delivered to an AMQP consumer (the encoder throws).
   * Skipped by keeping each target's destinations apart, so nothing another protocol publishes
   * reaches an AMQP consumer.
   */
  'long-shortstr-to-amqp': 'a long STOMP/MQTT 5/management property delivered to an AMQP consumer',
  /** A management `?name=...&use_regex=true` filter with catastrophic backtracking stalls the broker. */
  'mgmt-regex-redos': 'a backtracking management name filter',
} as const;
export type KnownIssue = keyof typeof KNOWN_ISSUES;
export const KNOWN_ISSUE_NAMES = Object.keys(KNOWN_ISSUES) as KnownIssue[];

export interface FuzzOptions {
  minutes: number;
  /** Undefined: a fixed-seed pass, then a random-seed pass. */
  seed: number | undefined;
  targets: TargetName[];
  /** Connections in flight at once. */
  concurrency: number;
  /** Cases between two health checks. */
  checkEvery: number;
  /** A bystander must round-trip a message within this (ms). */
  roundTripMs: number;
  /** Upper bound on the broker child's resident set (MiB). */
  maxRssMiB: number;
  /** Input classes the generators avoid (`--skip`). */
  skip: ReadonlySet<KnownIssue>;
  /** Also run the cross-protocol property test (test/property) with the pass's seed. */
  property: boolean;
  /** Runs of the property test per pass. */
  propertyRuns: number;
  /** Replay one saved case instead of fuzzing. */
  replay: string | undefined;
  /** Where failing cases are saved (default: a fresh temp dir). */
  outDir: string | undefined;
}

/** The seed of the fixed pass. */
export const FIXED_SEED = 0x5eed_0001;

export const DEFAULTS: Omit<FuzzOptions, 'seed' | 'targets' | 'skip' | 'replay' | 'outDir'> = {
  minutes: 2,
  concurrency: 12,
  checkEvery: 250,
  roundTripMs: 5000,
  maxRssMiB: 1024,
  property: true,
  propertyRuns: 50,
};

/** Prefix of every name (queue, exchange, topic) a target's cases use. */
export function namespaceOf(target: TargetName, skip: ReadonlySet<KnownIssue>): string {
  // with the long-shortstr issue skipped, each target publishes and consumes only in its own names
  return skip.has('long-shortstr-to-amqp') ? `f${target}` : 'fz';
}
