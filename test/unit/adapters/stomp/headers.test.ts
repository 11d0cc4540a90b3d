import { describe, expect, test } from 'vitest';
import { Decimal } from '../../../../src/core/index.js';
import { Escaping } from '../../../../adapters/stomp/codec/constants.js';
import { StompError } from '../../../../adapters/stomp/errors.js';
import { booleanHeader, propertiesFromSend, propertyLines, queueArguments } from '../../../../adapters/stomp/headers.js';

const map = (o: Record<string, string>): Map<string, string> => new Map(Object.entries(o));

describe('propertiesFromSend', () => {
  test('mapped headers become AMQP properties, the rest go into the headers table', () => {
    const p = propertiesFromSend(
      map({
        destination: '/queue/a',
        'content-length': '3',
        receipt: 'r1',
        transaction: 'tx',
        'content-type': 'application/json',
        'content-encoding': 'gzip',
        'correlation-id': 'c-1',
        'reply-to': '/queue/replies',
        expiration: '60000',
        priority: '5',
        persistent: 'true',
        'amqp-message-id': 'm-1',
        timestamp: '1700000000',
        type: 'order',
        'user-id': 'guest',
        'app-id': 'shop',
        'x-custom': 'v',
        subscription: 'forged',
      }),
      undefined,
    );
    expect(p).toEqual({
      contentType: 'application/json',
      contentEncoding: 'gzip',
      correlationId: 'c-1',
      replyTo: '/queue/replies',
      expiration: '60000',
      priority: 5,
      deliveryMode: 2,
      messageId: 'm-1',
      timestamp: 1700000000,
      type: 'order',
      userId: 'guest',
      appId: 'shop',
      headers: { 'x-custom': 'v', subscription: 'forged' },
    });
  });

  test('persistent:false leaves the delivery mode unset; no custom headers, no table', () => {
    expect(propertiesFromSend(map({ destination: '/topic/a', persistent: 'false' }), undefined)).toEqual({});
  });

  test('a temp-queue reply-to is replaced by the reply queue name', () => {
    expect(propertiesFromSend(map({ 'reply-to': '/temp-queue/r' }), 'amq.gen-1').replyTo).toBe('amq.gen-1');
  });

  test('message-id is not allowed on SEND', () => {
    expect(() => propertiesFromSend(map({ 'message-id': 'x' }), undefined)).toThrow(StompError);
  });

  test.each([['priority', 'high'], ['priority', '256'], ['timestamp', '-1'], ['timestamp', '1.5']])('%s:%s is invalid', (k, v) => {
    expect(() => propertiesFromSend(map({ [k]: v }), undefined)).toThrow(/Invalid header/);
  });
});

describe('propertyLines', () => {
  test('properties come out as STOMP headers, reply-to as a STOMP destination', () => {
    const lines = propertyLines(
      {
        contentType: 'text/plain',
        deliveryMode: 2,
        priority: 3,
        correlationId: 'c',
        replyTo: 'amq.gen-1',
        expiration: '10',
        messageId: 'm',
        timestamp: 42,
        type: 't',
        userId: 'u',
        appId: 'a',
        contentEncoding: 'e',
      },
      Escaping.V12,
    );
    expect(lines).toBe(
      'content-type:text/plain\ncontent-encoding:e\npersistent:true\npriority:3\ncorrelation-id:c\nreply-to:/reply-queue/amq.gen-1\n' +
        'expiration:10\namqp-message-id:m\ntimestamp:42\ntype:t\nuser-id:u\napp-id:a\n',
    );
  });

  test('server-owned and property names in the headers table are dropped: they cannot be forged', () => {
    const lines = propertyLines(
      {
        headers: {
          subscription: 'x',
          destination: '/queue/evil',
          'message-id': 'x',
          redelivered: 'true',
          ack: 'x',
          'content-length': '1',
          persistent: 'true',
          'content-type': 'evil',
          keep: 'me',
        },
      },
      Escaping.V12,
    );
    expect(lines).toBe('keep:me\n');
  });

  test('strings, numbers, bigints and booleans are shown; tables, arrays, bytes and dates are not', () => {
    const lines = propertyLines(
      {
        headers: {
          s: 'str',
          n: 7,
          f: 1.5,
          b: true,
          big: 10n,
          t: { a: 1 },
          a: [1],
          buf: Buffer.from('x'),
          d: new Date(0),
          dec: new Decimal(1, 5),
          nil: null,
        },
      },
      Escaping.V12,
    );
    expect(lines).toBe('s:str\nn:7\nf:1.5\nb:true\nbig:10\n');
  });

  test('names and values are escaped for the version; 1.0 drops names with a colon', () => {
    expect(propertyLines({ headers: { 'a:b': 'x\ny' } }, Escaping.V12)).toBe('a\\cb:x\\ny\n');
    expect(propertyLines({ headers: { 'a:b': 'x', c: 'x\ny' } }, Escaping.NONE)).toBe('c:x y\n');
  });
});

describe('queueArguments and booleanHeader', () => {
  test('x-* headers RabbitMQ knows become typed queue arguments; others are ignored', () => {
    expect(
      queueArguments(
        map({
          'x-message-ttl': '1000',
          'x-max-length': ' 10 ',
          'x-dead-letter-exchange': 'dlx',
          'x-queue-type': 'classic',
          'x-single-active-consumer': 'true',
          'x-app-trace': 'ignored',
          other: '1',
        }),
      ),
    ).toEqual({
      'x-message-ttl': 1000,
      'x-max-length': 10,
      'x-dead-letter-exchange': 'dlx',
      'x-queue-type': 'classic',
      'x-single-active-consumer': true,
    });
  });

  test('a non-numeric numeric argument is an error', () => {
    expect(() => queueArguments(map({ 'x-expires': 'soon' }))).toThrow(/Invalid header/);
  });

  test('booleans as RabbitMQ reads them', () => {
    expect([booleanHeader('true'), booleanHeader('True'), booleanHeader('false'), booleanHeader('yes'), booleanHeader(undefined)]).toEqual([
      true,
      true,
      false,
      undefined,
      undefined,
    ]);
  });
});

describe('headers that do not fit AMQP properties', () => {
  test('a SEND header named __proto__ becomes a header, not a prototype', () => {
    const p = propertiesFromSend(map({ ['__proto__']: 'x', a: 'b' }), undefined);
    expect(Object.getPrototypeOf(p.headers)).toBe(Object.prototype);
    expect(Object.getOwnPropertyDescriptor(p.headers, '__proto__')?.value).toBe('x');
    expect(propertyLines(p, Escaping.V12)).toContain('__proto__:x\n');
  });

  test('a value the core moved to an overflow header comes back under its STOMP name', () => {
    const long = 'v'.repeat(300);
    const lines = propertyLines({ headers: { 'x-content-type': long, 'x-app-id': long, 'x-other': 'o' } }, Escaping.V12);
    expect(lines).toContain(`content-type:${long}\n`);
    expect(lines).toContain(`app-id:${long}\n`);
    expect(lines).not.toContain('x-content-type');
    expect(lines).toContain('x-other:o\n');
  });

  test('an overflow-named header stays itself when the property is set too', () => {
    const lines = propertyLines({ contentType: 'text/plain', headers: { 'x-content-type': 'mine' } }, Escaping.V12);
    expect(lines).toContain('content-type:text/plain\n');
    expect(lines).toContain('x-content-type:mine\n');
  });

  test('UTF-8 correlation data MQTT kept as bytes is shown as correlation-id', () => {
    expect(propertyLines({ headers: { 'x-correlation-id': Buffer.from('c'.repeat(300)) } }, Escaping.V12)).toContain(`correlation-id:${'c'.repeat(300)}\n`);
    expect(propertyLines({ headers: { 'x-correlation-id': Buffer.from([0xff, 0xfe]) } }, Escaping.V12)).not.toContain('correlation-id');
  });
});
