/**
 * @golevelup/nestjs-rabbitmq against Warren, unchanged: a Nest application context with
 * RabbitMQModule, an @RabbitRPC handler discovered in a provider, and AmqpConnection.request(),
 * which consumes amq.rabbitmq.reply-to (direct reply-to) for the answers. The decorators are
 * applied with Reflect.decorate, which is what TypeScript emits for decorator syntax.
 */
import 'reflect-metadata';
import { AmqpConnection, RabbitMQModule, RabbitRPC, RabbitSubscribe } from '@golevelup/nestjs-rabbitmq';
import { Injectable, Module, type INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';
import { mgmt } from '../helpers/management.js';

interface Sum {
  a: number;
  b: number;
}

const events: unknown[] = [];

class Calculator {
  add(msg: Sum): Promise<{ sum: number }> {
    return Promise.resolve({ sum: msg.a + msg.b });
  }
  recordEvent(msg: unknown): Promise<void> {
    events.push(msg);
    return Promise.resolve();
  }
}

function decorateMethod(decorator: MethodDecorator, target: object, key: string): void {
  Reflect.decorate([decorator], target, key, Object.getOwnPropertyDescriptor(target, key));
}

decorateMethod(RabbitRPC({ exchange: 'nest.rpc', routingKey: 'calc.add', queue: 'nest-calc-add' }), Calculator.prototype, 'add');
decorateMethod(RabbitSubscribe({ exchange: 'nest.events', routingKey: 'calc.#', queue: 'nest-calc-events' }), Calculator.prototype, 'recordEvent');
Reflect.decorate([Injectable()], Calculator);

let tb: TestBroker;
let app: INestApplicationContext;
let amqp: AmqpConnection;

beforeAll(async () => {
  tb = await startTestBroker();
  class AppModule {}
  Reflect.decorate(
    [
      Module({
        imports: [
          RabbitMQModule.forRoot({
            uri: tb.amqpUrl,
            exchanges: [
              { name: 'nest.rpc', type: 'direct' },
              { name: 'nest.events', type: 'topic' },
            ],
            connectionInitOptions: { wait: true, timeout: 10_000 },
            defaultRpcTimeout: 10_000,
          }),
        ],
        providers: [Calculator],
      }),
    ],
    AppModule,
  );
  app = await NestFactory.createApplicationContext(AppModule, { logger: false });
  await app.init();
  amqp = app.get(AmqpConnection);
}, 60_000);

afterAll(async () => {
  await app.close();
  await tb.stop();
});

describe('@golevelup/nestjs-rabbitmq', () => {
  test('RPC over direct reply-to: concurrent requests each get their own answer', async () => {
    const answers = await Promise.all(
      [1, 2, 3, 4, 5].map((i) => amqp.request<{ sum: number }>({ exchange: 'nest.rpc', routingKey: 'calc.add', payload: { a: i, b: 10 } })),
    );
    expect(answers).toEqual([{ sum: 11 }, { sum: 12 }, { sum: 13 }, { sum: 14 }, { sum: 15 }]);
    // The handler's queue is a real one; the reply pseudo-queue is not listed.
    const queues = (await mgmt(tb.broker.ports.http!).list('/queues')).body.map((q) => q['name']);
    expect(queues).toContain('nest-calc-add');
    expect(queues.some((n) => String(n).startsWith('amq.rabbitmq.reply-to'))).toBe(false);
  });

  test('a @RabbitSubscribe handler receives what is published to its topic', async () => {
    await amqp.publish('nest.events', 'calc.done', { ok: true });
    await waitFor(() => events.length === 1, 10_000, 'subscriber delivery');
    expect(events).toEqual([{ ok: true }]);
  });
});
