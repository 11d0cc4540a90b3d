import { BrokerError, MessageRefusedError, ReplyCode } from '../../src/core/index.js';
import { Reason } from './constants.js';

/** MQTT 5 reason code for a core error (STYLE P5). */
export function mqttReasonFor(e: unknown): number {
  if (!(e instanceof BrokerError)) return Reason.UNSPECIFIED_ERROR;
  // A message the broker could not deliver on every protocol (e.g. a property AMQP cannot carry).
  if (e instanceof MessageRefusedError) return Reason.IMPLEMENTATION_SPECIFIC_ERROR;
  switch (e.code) {
    case ReplyCode.ACCESS_REFUSED:
      return Reason.NOT_AUTHORIZED;
    case ReplyCode.CONTENT_TOO_LARGE:
      return Reason.PACKET_TOO_LARGE;
    case ReplyCode.RESOURCE_ERROR:
      return Reason.QUOTA_EXCEEDED;
    case ReplyCode.FRAME_ERROR:
    case ReplyCode.SYNTAX_ERROR:
      return Reason.MALFORMED_PACKET;
    default:
      return Reason.UNSPECIFIED_ERROR;
  }
}

export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
