import { connect, type Channel, type ChannelModel } from 'amqplib';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';
import { mgmt, type Mgmt } from '../helpers/management.js';

let tb: TestBroker;
let api: Mgmt;
let conn: ChannelModel;
let ch: Channel;

beforeAll(async () => {
  tb = await startTestBroker();
  api = mgmt(tb.broker.ports.http!);
  conn = await connect(tb.amqpUrl);
  ch = await conn.createChannel();
});
afterAll(async () => {
  await conn.close();
  await tb.stop();
});

async function depth(q: string): Promise<number> {
  return (await ch.checkQueue(q)).messageCount;
}

describe('policies take effect', () => {
  test('a max-length policy caps a queue declared after it, and one declared before it', async () => {
    await ch.assertQueue('capped.before');
    for (let i = 0; i < 5; i++) ch.sendToQueue('capped.before', Buffer.from(String(i)));
    await waitFor(async () => (await depth('capped.before')) === 5);
    const put = await api.put('/policies/%2F/cap', { pattern: '^capped\\.', definition: { 'max-length': 2 }, 'apply-to': 'queues' });
    expect(put.status).toBe(201);
    expect(await depth('capped.before')).toBe(2); // the head was dropped at once
    await ch.assertQueue('capped.after');
    for (let i = 0; i < 5; i++) ch.sendToQueue('capped.after', Buffer.from(String(i)));
    await waitFor(async () => (await depth('capped.after')) === 2);
    const kept = await ch.get('capped.after', { noAck: true });
    expect(kept && kept.content.toString()).toBe('3');
    // a declared argument that is stricter than the policy wins (the smaller limit)
    await ch.assertQueue('capped.strict', { arguments: { 'x-max-length': 1 } });
    for (let i = 0; i < 3; i++) ch.sendToQueue('capped.strict', Buffer.from(String(i)));
    await waitFor(async () => (await depth('capped.strict')) === 1);
    // clearing the policy lifts the cap for queues without their own argument
    expect((await api.del('/policies/%2F/cap')).status).toBe(204);
    for (let i = 0; i < 3; i++) ch.sendToQueue('capped.before', Buffer.from('more'));
    await waitFor(async () => (await depth('capped.before')) === 5);
    // the declared arguments are unchanged: an identical redeclare still succeeds
    await ch.assertQueue('capped.before');
  });

  test('a dead-letter-exchange policy dead-letters rejected messages', async () => {
    await ch.assertExchange('pol-dlx', 'fanout', { durable: false });
    const dead = (await ch.assertQueue('', { exclusive: true })).queue;
    await ch.bindQueue(dead, 'pol-dlx', '');
    expect((await api.put('/policies/%2F/dlx', { pattern: '^work\\.', definition: { 'dead-letter-exchange': 'pol-dlx' } })).status).toBe(201);
    await ch.assertQueue('work.jobs');
    ch.sendToQueue('work.jobs', Buffer.from('job'));
    const m = await waitFor(() => ch.get('work.jobs'));
    ch.reject(m, false);
    const d = await waitFor(() => ch.get(dead, { noAck: true }));
    expect(d.content.toString()).toBe('job');
  });

  test('an alternate-exchange policy catches what an exchange cannot route', async () => {
    await ch.assertExchange('pol-ae', 'fanout', { durable: false });
    const caught = (await ch.assertQueue('', { exclusive: true })).queue;
    await ch.bindQueue(caught, 'pol-ae', '');
    await ch.assertExchange('orders.x', 'direct', { durable: false });
    expect((await api.put('/policies/%2F/ae', { pattern: '^orders\\.', definition: { 'alternate-exchange': 'pol-ae' }, 'apply-to': 'exchanges' })).status).toBe(201);
    ch.publish('orders.x', 'nobody', Buffer.from('stray'));
    const m = await waitFor(() => ch.get(caught, { noAck: true }));
    expect(m.content.toString()).toBe('stray');
  });
});
