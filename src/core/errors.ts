/** AMQP 0-9-1 reply codes: the broker's lingua franca for errors, whatever the protocol. */
export enum ReplyCode {
  SUCCESS = 200,
  CONTENT_TOO_LARGE = 311,
  NO_ROUTE = 312,
  NO_CONSUMERS = 313,
  CONNECTION_FORCED = 320,
  INVALID_PATH = 402,
  ACCESS_REFUSED = 403,
  NOT_FOUND = 404,
  RESOURCE_LOCKED = 405,
  PRECONDITION_FAILED = 406,
  FRAME_ERROR = 501,
  SYNTAX_ERROR = 502,
  COMMAND_INVALID = 503,
  CHANNEL_ERROR = 504,
  UNEXPECTED_FRAME = 505,
  RESOURCE_ERROR = 506,
  NOT_ALLOWED = 530,
  NOT_IMPLEMENTED = 540,
  INTERNAL_ERROR = 541,
}

const SOFT_CODES: ReadonlySet<number> = new Set([311, 312, 313, 403, 404, 405, 406]);

const NAMES: Record<number, string> = {
  311: 'CONTENT_TOO_LARGE',
  312: 'NO_ROUTE',
  313: 'NO_CONSUMERS',
  320: 'CONNECTION_FORCED',
  402: 'INVALID_PATH',
  403: 'ACCESS_REFUSED',
  404: 'NOT_FOUND',
  405: 'RESOURCE_LOCKED',
  406: 'PRECONDITION_FAILED',
  501: 'FRAME_ERROR',
  502: 'SYNTAX_ERROR',
  503: 'COMMAND_INVALID',
  504: 'CHANNEL_ERROR',
  505: 'UNEXPECTED_FRAME',
  506: 'RESOURCE_ERROR',
  530: 'NOT_ALLOWED',
  540: 'NOT_IMPLEMENTED',
  541: 'INTERNAL_ERROR',
};

/** The name RabbitMQ puts in front of a reply text, e.g. `NOT_FOUND`. */
export function replyName(code: number): string {
  return NAMES[code] ?? 'INTERNAL_ERROR';
}

/**
 * The only error the core throws. `text` is what the client sees (RabbitMQ style,
 * `NOT_FOUND - no queue 'q' in vhost '/'`); `method` names the failing AMQP method when known.
 */
export class BrokerError extends Error {
  override readonly name = 'BrokerError';
  method: { classId: number; methodId: number } | undefined;

  constructor(
    readonly code: ReplyCode,
    readonly text: string,
    method?: { classId: number; methodId: number },
  ) {
    super(`${replyName(code)} - ${text}`);
    this.method = method;
  }

  /** Hard errors close the connection; soft ones only the channel. */
  get isHard(): boolean {
    return !SOFT_CODES.has(this.code);
  }

  /** The reply text as RabbitMQ formats it: `NAME - detail`. */
  get replyText(): string {
    return this.message;
  }

  static notFound(text: string): BrokerError {
    return new BrokerError(ReplyCode.NOT_FOUND, text);
  }
  static precondition(text: string): BrokerError {
    return new BrokerError(ReplyCode.PRECONDITION_FAILED, text);
  }
  static accessRefused(text: string): BrokerError {
    return new BrokerError(ReplyCode.ACCESS_REFUSED, text);
  }
  static locked(text: string): BrokerError {
    return new BrokerError(ReplyCode.RESOURCE_LOCKED, text);
  }
  static notAllowed(text: string): BrokerError {
    return new BrokerError(ReplyCode.NOT_ALLOWED, text);
  }
  static commandInvalid(text: string): BrokerError {
    return new BrokerError(ReplyCode.COMMAND_INVALID, text);
  }
  static channelError(text: string): BrokerError {
    return new BrokerError(ReplyCode.CHANNEL_ERROR, text);
  }
  static frameError(text: string): BrokerError {
    return new BrokerError(ReplyCode.FRAME_ERROR, text);
  }
  static syntax(text: string): BrokerError {
    return new BrokerError(ReplyCode.SYNTAX_ERROR, text);
  }
  static unexpectedFrame(text: string): BrokerError {
    return new BrokerError(ReplyCode.UNEXPECTED_FRAME, text);
  }
  static notImplemented(text: string): BrokerError {
    return new BrokerError(ReplyCode.NOT_IMPLEMENTED, text);
  }
  static internal(text: string): BrokerError {
    return new BrokerError(ReplyCode.INTERNAL_ERROR, text);
  }
}
