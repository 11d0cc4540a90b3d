import { BrokerError, ReplyCode } from '../../src/core/index.js';

/**
 * A STOMP protocol error: `summary` becomes the ERROR frame's `message` header (RabbitMQ's short
 * phrases such as `Bad CONNECT`), `detail` its body. It is a BrokerError so that every error in
 * the broker still has one type and an AMQP reply code.
 */
export class StompError extends BrokerError {
  constructor(
    readonly summary: string,
    readonly detail: string,
    code: ReplyCode = ReplyCode.SYNTAX_ERROR,
  ) {
    super(code, `${summary}: ${detail}`);
  }

  static frame(summary: string, detail: string): StompError {
    return new StompError(summary, detail, ReplyCode.FRAME_ERROR);
  }

  static missingHeader(command: string, header: string): StompError {
    return new StompError('Missing header', `${command} must include a '${header}' header`);
  }

  static invalidHeader(header: string, detail: string): StompError {
    return new StompError('Invalid header', `'${header}' ${detail}`);
  }
}
