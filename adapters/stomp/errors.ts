import { BrokerError, ReplyCode } from '../../src/core/index.js';

/**
 * A STOMP protocol error: `summary` becomes the ERROR frame's `message` header (a short phrase
 * such as `Bad CONNECT`, never with a line break), `detail` its body, written as it is (RabbitMQ's
 * bodies mostly end in a newline, some do not). It is a BrokerError so that every error in the
 * broker still has one type and an AMQP reply code.
 */
export class StompError extends BrokerError {
  constructor(
    readonly summary: string,
    readonly detail: string,
    code: ReplyCode = ReplyCode.SYNTAX_ERROR,
  ) {
    super(code, detail === '' ? summary : `${summary}: ${detail.trimEnd()}`);
  }
}

function e(summary: string, detail: string, code: ReplyCode = ReplyCode.SYNTAX_ERROR): StompError {
  return new StompError(summary, detail, code);
}

/** RabbitMQ's list of destination prefixes, as its "Unknown destination" error prints it. */
const VALID_PREFIXES = '/exchange, /topic, /queue, /amq/queue, /temp-queue, /reply-queue/';
const TEMP_QUEUE_ID_PREFIX = '/temp-queue/';

/**
 * Every ERROR the STOMP adapter writes, in one table. Texts, quoting, capitalisation and trailing
 * newlines are those of RabbitMQ's STOMP plugin where it has the error (its `~tp` of an Erlang
 * string shows as double quotes, its `~tp` of a command as single quotes); entries marked
 * "Warren" are errors RabbitMQ does not report (it crashes the connection with "Processing error",
 * or has no such limit).
 *
 * Errors from the core (a missing exchange or queue, a refused permission) are not in the table:
 * they are written as RabbitMQ writes an AMQP error on STOMP, `message` the lower-case reply name
 * (`not_found`, `access_refused`, `precondition_failed`) and the body the reply text
 * (`no exchange 'x' in vhost '/'`).
 */
export const STOMP_ERRORS = {
  // ---- CONNECT ----
  versionMismatch: (supported: string) => e('Version mismatch', `Supported versions are ${supported}\n`, ReplyCode.NOT_ALLOWED),
  accessRefused: (user: string) => e('Bad CONNECT', `Access refused for user '${user}'`, ReplyCode.ACCESS_REFUSED),
  nonLoopback: () => e('Bad CONNECT', 'non-loopback access denied', ReplyCode.ACCESS_REFUSED),
  vhostAccessDenied: (vhost: string) => e('Bad CONNECT', `Virtual host '${vhost}' access denied`, ReplyCode.NOT_ALLOWED),
  /** Warren: RabbitMQ says "access denied" for a vhost that does not exist too. */
  vhostNotFound: (vhost: string) => e('Bad CONNECT', `Virtual host '${vhost}' not found`, ReplyCode.NOT_ALLOWED),
  /** Warren. */
  badHeartBeat: (value: string) => e('Bad CONNECT', `invalid heart-beat header '${value}'`),
  illegalCommand: () => e('Illegal command', 'You must log in using CONNECT first', ReplyCode.COMMAND_INVALID),
  /** Warren. */
  alreadyConnected: () => e('Illegal command', 'the connection is already established', ReplyCode.COMMAND_INVALID),
  credentialExpired: () => e('Credential expired', 'The credential used to authenticate this connection has expired', ReplyCode.ACCESS_REFUSED),

  // ---- commands and frames ----
  badCommand: (command: string) => e('Bad command', `Could not interpret command "${command}"\n`, ReplyCode.COMMAND_INVALID),
  /** Warren: the frame limits (RabbitMQ has them, and closes the socket without a word). */
  frameTooLarge: (max: number) => e('Frame too large', `frames are limited to ${max} bytes\n`, ReplyCode.FRAME_ERROR),
  messageTooLarge: (size: number, max: number) =>
    e('Message too large', `message size ${size} is larger than configured max size ${max}\n`, ReplyCode.PRECONDITION_FAILED),
  headerTooLong: (what: string, max: number) => e('Header too long', `${what} exceeds ${max} bytes\n`, ReplyCode.FRAME_ERROR),
  tooManyHeaders: (max: number) => e('Too many headers', `a frame may carry at most ${max} headers\n`, ReplyCode.FRAME_ERROR),
  headerWithoutColon: (line: string) => e('Invalid header', `header line '${line}' has no ':'\n`),
  emptyHeaderName: () => e('Invalid header', 'a header name may not be empty\n'),
  badEscape: (seq: string, text: string) => e('Invalid header', `undefined escape sequence '${seq}' in header '${text}'\n`),
  badContentLength: (raw: string) => e('Invalid header', `content-length '${raw}' is not a non-negative integer\n`),
  bodyLongerThanContentLength: (n: number) =>
    e('Invalid frame', `the body is longer than its content-length (${n}): no NUL after ${n} bytes\n`, ReplyCode.FRAME_ERROR),
  processingError: () => e('Processing error', 'Processing error', ReplyCode.INTERNAL_ERROR),

  // ---- destinations ----
  missingDestination: (command: string) => e('Missing destination', `'${command}' must include a 'destination' header\n`),
  /** `content` is what follows the prefix (`'//foo'` for `/exchange//foo`), `type` RabbitMQ's name of the kind. */
  invalidDestination: (content: string, type: string) => e('Invalid destination', `'${content}' is not a valid ${type} destination\n`),
  blankDestination: () => e('Invalid destination', 'Destination cannot be blank'),
  notValidFor: (destination: string, command: string) => e('Invalid destination', `'${destination}' is not a valid destination for '${command}'\n`),
  unknownDestination: (destination: string) =>
    e('Unknown destination', `'${destination}' is not a valid destination.\nValid destination types are: ${VALID_PREFIXES}.\n`),

  // ---- headers ----
  notAllowedOnSend: (header: string) => e('Invalid header', `'${header}' is not allowed on 'SEND'.\n`),
  /** Warren: a header value the adapter cannot use (RabbitMQ crashes on most of these). */
  invalidHeader: (header: string, detail: string) => e('Invalid header', `'${header}' ${detail}\n`),

  // ---- SUBSCRIBE, UNSUBSCRIBE ----
  durableWithoutId: () => e('Missing Header', "Header 'id' is required for durable subscriptions"),
  duplicateSubscription: (consumerTag: string) =>
    e('Duplicated subscription identifier', `A subscription identified by '${consumerTag}' already exists.`),
  invalidId: (command: string) => e('Invalid id', `${command} 'id' may not start with ${TEMP_QUEUE_ID_PREFIX}\n`),
  missingDestinationOrId: () => e('Missing destination or id', "UNSUBSCRIBE must include a 'destination' or 'id' header"),
  noSubscription: (description: string) =>
    e('No subscription found', `UNSUBSCRIBE must refer to an existing subscription.\nSubscription to "${description}" not found.\n`),

  // ---- ACK, NACK ----
  missingAckHeader: (command: string, header: string) => e('Missing header', `'${command}' must include the "${header}" header\n`),
  invalidAckHeader: (command: string, header: string) => e('Invalid header', `'${command}' must include a valid "${header}" header\n`),
  messageNotFound: (deliveryTag: number) => e('Message not found', `unknown delivery tag ${deliveryTag}\n`, ReplyCode.PRECONDITION_FAILED),

  // ---- transactions ----
  missingTransaction: (command: string) => e('Missing transaction', `'${command}' must include a 'transaction' header\n`),
  badTransaction: (id: string) => e('Bad transaction', `Invalid transaction identifier: "${id}"\n`),
  /** Warren: RabbitMQ silently restarts the transaction. */
  transactionOpen: (id: string) => e('Bad transaction', `Transaction "${id}" is already open\n`),
  transactionLimit: (max: number) => e('Transaction limit exceeded', `Too many concurrent transactions (limit ${max})`, ReplyCode.RESOURCE_ERROR),
  /** Warren: a bound on bytes rather than RabbitMQ's count of actions. */
  transactionTooLarge: (maxBytes: number) =>
    e('Transaction too large', `Too much data in open transactions (limit ${maxBytes} bytes)`, ReplyCode.RESOURCE_ERROR),

  // ---- publishing ----
  /** Warren: a SEND with a receipt whose message the core refused. */
  messageRejected: (reason: string) => e('Message rejected', reason, ReplyCode.PRECONDITION_FAILED),
} as const;

/** The summary and body of a server-cancelled subscription's ERROR (not an error that closes). */
export const SERVER_CANCELLED = {
  summary: 'Server cancelled subscription',
  detail: (description: string): string =>
    `The server has canceled a subscription.\nNo more messages will be delivered for "${description}".\n`,
} as const;

/** How RabbitMQ names a subscription in its errors: `id='<id>'`, or `destination='<d>'` without an id. */
export function describeSubscription(id: string | undefined, destination: string): string {
  return id !== undefined ? `id='${id}'` : `destination='${destination}'`;
}
