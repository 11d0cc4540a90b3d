import { describe, expect, test } from 'vitest';
import { MemoryEngine, type ClusterMembership } from '../../../src/cluster/index.js';
import { Core, REPLY_TO_PREFIX, REPLY_TO_QUEUE, replyNode, replyToken } from '../../../src/core/index.js';
import { waitFor } from '../../helpers/broker.js';
import { RecordingSink, memoryNodes, testChannel } from '../../helpers/memory-cluster.js';

let engine: MemoryEngine;
const nodes = memoryNodes('t', { remoteConsumers: { pingMs: 50, missesAllowed: 2, silenceMs: 300, requestTimeoutMs: 200 } });

async function node(name: string): Promise<{ core: Core; m: ClusterMembership }> {
  const core = new Core();
  return { core, m: await nodes.join(engine, name, core) };
}

describe('direct reply-to tokens', () => {
  test('a single node token is the random part alone and names no node', () => {
    expect(replyToken('abcDEF_-123', undefined)).toBe('abcDEF_-123');
    expect(replyNode('abcDEF_-123')).toBeUndefined();
    expect(replyNode(`${REPLY_TO_PREFIX}abcDEF_-123`)).toBeUndefined();
  });

  test("a cluster node's token names it, as a token and as a reply address", () => {
    for (const name of ['n1', 'rabbit-2_b', 'ñodo', 'a.b']) {
      const t = replyToken('R4nd0m', name);
      expect(t).toMatch(/^R4nd0m\.[A-Za-z0-9_-]+$/);
      expect(replyNode(t)).toBe(name);
      expect(replyNode(REPLY_TO_PREFIX + t)).toBe(name);
    }
  });

  test('addresses that are not tokens name no node', () => {
    expect(replyNode(REPLY_TO_QUEUE)).toBeUndefined();
    expect(replyNode(`${REPLY_TO_PREFIX}abc.`)).toBeUndefined();
    expect(replyNode(`${REPLY_TO_PREFIX}abc.no spaces`)).toBeUndefined();
  });
});

describe('direct replies between nodes (in-process engine)', () => {
  test('a reply published on n2 reaches the requester on n1; one to a gone requester is dropped; one to a stopped node is not routed', async () => {
    engine = new MemoryEngine();
    const a = await node('n1');
    const b = await node('n2');
    const requester = testChannel(a.core);
    const sink = new RecordingSink();
    requester.consume(REPLY_TO_QUEUE, { noAck: true }, sink);
    const address = requester.replyAddress!;
    expect(replyNode(address)).toBe('n1');

    const responder = testChannel(b.core);
    const r = responder.publish({ exchange: '', routingKey: address, properties: { correlationId: 'c1', headers: { h: 1 } }, body: Buffer.from('answer') });
    expect(r.routed).toBeGreaterThan(0);
    await waitFor(() => sink.got.length === 1, 2000, 'the reply on n1');
    const d = sink.got[0]!;
    expect(d.message.body.toString()).toBe('answer');
    expect(d.message.properties.correlationId).toBe('c1');
    expect(d.message.properties.headers).toEqual({ h: 1 });
    expect(d.message.routingKey).toBe(address);
    expect(d.queue).toBe(REPLY_TO_QUEUE);

    // The requester cancels: the next reply goes to n1 and is dropped there.
    requester.cancel(sink.got[0]!.consumerTag);
    responder.publish({ exchange: '', routingKey: address, properties: {}, body: Buffer.from('late') });
    await waitFor(() => b.m.replies.stats.sent === 2 && a.m.replies.stats.dropped === 1, 2000, 'the late reply dropped on n1');
    expect(sink.got.length).toBe(1);

    // A token naming this node that it does not know is not sent anywhere.
    const own = responder.publish({ exchange: '', routingKey: `${REPLY_TO_PREFIX}${replyToken('x', 'n2')}`, properties: {}, body: Buffer.from('x') });
    expect(own.routed).toBe(0);

    // n1 stops: a reply to its token is not routed (a mandatory publish is returned).
    nodes.forget(a.m);
    await a.m.stop();
    await waitFor(() => !b.m.registry.isRunning('n1'), 2000, 'n1 stopped');
    expect(responder.publish({ exchange: '', routingKey: address, properties: {}, body: Buffer.from('x') }).routed).toBe(0);
  });
});
