import { generate, parser as createParser, type Packet } from 'mqtt-packet';
import { describe, expect, test } from 'vitest';
import {
  MqttError,
  PacketReader,
  checkDecodedString,
  checkFixedLength,
  checkPublishTopicBytes,
  decodeFast,
  encodeAck,
  encodePublish,
  parsePacket,
  peekConnect,
  publishHead,
  readPublishHead,
} from '../../../../adapters/mqtt/codec.js';
import { Reason } from '../../../../adapters/mqtt/constants.js';

const v5 = { protocolVersion: 5 as const };

/** mqtt-packet's own reading of one whole packet (connected state, like a live connection). */
function referenceParse(wire: Buffer, level: 3 | 4 | 5): Extract<Packet, { cmd: 'publish' }> {
  const p = createParser({ protocolVersion: level });
  let out: Packet | undefined;
  p.on('packet', (x: Packet) => (out = x));
  p.parse(wire);
  if (out?.cmd !== 'publish') throw new Error('not a publish');
  return out;
}
const stream: Packet[] = [
  { cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'c1', clean: true, keepalive: 30, properties: { sessionExpiryInterval: 60 } },
  { cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'a/+/c', qos: 1, nl: false, rap: false, rh: 0 }] },
  { cmd: 'publish', topic: 'a/b/c', payload: Buffer.alloc(300, 7), qos: 1, messageId: 2, dup: false, retain: false },
  { cmd: 'publish', topic: 'x', payload: Buffer.from('hi'), qos: 0, dup: false, retain: true, properties: { contentType: 'text/plain', userProperties: { k: 'v' } } },
  { cmd: 'pingreq' },
  { cmd: 'puback', messageId: 9, reasonCode: 0 },
  { cmd: 'disconnect', reasonCode: 0 },
];
const wire = Buffer.concat(stream.map((p) => generate(p, v5)));

function decodeAll(parts: Buffer[], max = 1 << 20): Packet[] {
  const r = new PacketReader(max);
  const out: Packet[] = [];
  let connected = false;
  for (const part of parts) {
    r.push(part);
    for (let raw = r.next(); raw !== null; raw = r.next()) {
      out.push(parsePacket(raw, connected ? 5 : undefined));
      connected = true;
    }
  }
  expect(r.buffered).toBe(0);
  return out;
}

function strip(packets: Packet[]): unknown[] {
  return packets.map((p) => JSON.parse(JSON.stringify(p)));
}

describe('PacketReader', () => {
  test('decodes a whole stream into the packets that were encoded', () => {
    const got = decodeAll([wire]);
    expect(got.map((p) => p.cmd)).toEqual(stream.map((p) => p.cmd));
  });

  test.each([1, 2, 3, 4, 5, 6, 7, 8, 13, 64, 4096])('split every %i bytes == unsplit', (step) => {
    const parts: Buffer[] = [];
    for (let i = 0; i < wire.length; i += step) parts.push(Buffer.from(wire.subarray(i, i + step)));
    expect(strip(decodeAll(parts))).toEqual(strip(decodeAll([wire])));
  });

  test('a remaining length over the limit is refused from the header alone, before the body arrives', () => {
    const r = new PacketReader(1024);
    // PUBLISH declaring 2 000 000 bytes: only 4 header bytes are sent.
    r.push(Buffer.from([0x30, 0x80, 0x89, 0x7a]));
    expect(() => r.next()).toThrowError(MqttError);
    try {
      r.next();
    } catch (e) {
      expect((e as MqttError).reason).toBe(Reason.PACKET_TOO_LARGE);
    }
  });

  test('a packet exactly at the limit is accepted, one byte over is not', () => {
    const p = generate({ cmd: 'publish', topic: 't', payload: Buffer.alloc(100), qos: 0, dup: false, retain: false });
    const ok = new PacketReader(p.length);
    ok.push(p);
    expect(ok.next()?.length).toBe(p.length);
    const tooSmall = new PacketReader(p.length - 1);
    tooSmall.push(p);
    expect(() => tooSmall.next()).toThrowError(/exceeds the maximum packet size/);
  });

  test('a remaining length with five continuation bytes is malformed', () => {
    const r = new PacketReader(1 << 30);
    r.push(Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]));
    expect(() => r.next()).toThrowError(/malformed remaining length/);
  });

  test('waits for the rest of a partial remaining length', () => {
    const r = new PacketReader(1 << 30);
    r.push(Buffer.from([0x30, 0x80]));
    expect(r.next()).toBeNull();
    r.push(Buffer.from([0x01]));
    expect(r.next()).toBeNull(); // 128 bytes declared, none arrived
  });

  test('nextSpan finds packets whole in the chunk in place; readPublishHead and the topic check read them there', () => {
    const a = generate({ cmd: 'publish', topic: 'a/b', payload: Buffer.from('one'), qos: 1, messageId: 7, dup: false, retain: true });
    const b = generate({ cmd: 'publish', topic: 'ü', payload: Buffer.alloc(0), qos: 0, dup: false, retain: false });
    const bad = Buffer.from([0x30, 0x05, 0x00, 0x02, 0xc3, 0x28, 0x41]);
    const r = new PacketReader(1024);
    r.push(Buffer.concat([a, b, bad, a.subarray(0, 3)]));
    const chunk = r.unreadChunk!;
    const endA = r.nextSpan();
    expect([r.spanStart, endA]).toEqual([0, a.length]);
    expect(readPublishHead(chunk, 4, r.spanStart, endA)).toBe(true);
    expect({ ...publishHead }).toEqual({ topic: 'a/b', payloadAt: a.length - 3, qos: 1, dup: false, retain: true, messageId: 7 });
    const endB = r.nextSpan();
    expect([r.spanStart, endB]).toEqual([a.length, a.length + b.length]);
    expect(() => checkPublishTopicBytes(chunk, r.spanStart, endB)).not.toThrow();
    expect(readPublishHead(chunk, 4, r.spanStart, endB)).toBe(true);
    expect([publishHead.topic, publishHead.payloadAt, publishHead.qos]).toEqual(['ü', endB, 0]);
    const endBad = r.nextSpan();
    expect(() => checkPublishTopicBytes(chunk, r.spanStart, endBad)).toThrowError(/UTF-8/);
    expect(r.nextSpan()).toBe(-1); // a's first 3 bytes only
    r.push(a.subarray(3));
    expect(r.nextSpan()).toBe(-1); // split across chunks: read by next
    expect(r.next()).toEqual(a);
  });

  test('nextAck takes short acknowledgements whole in the chunk and leaves everything else to next', () => {
    const r = new PacketReader(1024);
    const publish = generate({ cmd: 'publish', topic: 't', payload: Buffer.from('x'), qos: 1, messageId: 9, dup: false, retain: false });
    r.push(Buffer.concat([
      Buffer.from([0x40, 0x02, 0x01, 0x02]), // PUBACK 258
      Buffer.from([0x62, 0x02, 0xff, 0xfe]), // PUBREL 65534
      publish,
      Buffer.from([0x60, 0x02, 0x00, 0x05]), // PUBREL with the wrong flags: the parser's to refuse
      Buffer.from([0x70, 0x02, 0x00]), // PUBCOMP, its last byte in the next chunk
    ]));
    expect(r.nextAck()).toBe((4 << 16) | 258);
    expect(r.nextAck()).toBe((6 << 16) | 65534);
    expect(r.nextAck()).toBe(-1);
    expect(r.next()).toEqual(publish);
    expect(r.nextAck()).toBe(-1);
    expect(r.next()).toEqual(Buffer.from([0x60, 0x02, 0x00, 0x05]));
    expect(r.nextAck()).toBe(-1);
    expect(r.next()).toBeNull();
    r.push(Buffer.from([0x07]));
    expect(r.nextAck()).toBe(-1); // split across chunks: read by next
    expect(r.next()).toEqual(Buffer.from([0x70, 0x02, 0x00, 0x07]));
    expect(r.next()).toBeNull();
  });
});

describe('packet checks', () => {
  test('mqtt-packet errors become malformed-packet errors', () => {
    // SUBSCRIBE with reserved flags 0000 instead of 0010.
    const bad = Buffer.from([0x80, 0x06, 0x00, 0x01, 0x00, 0x01, 0x61, 0x00]);
    expect(() => parsePacket(bad, 4)).toThrowError(MqttError);
  });

  test('the shared parsers recover after an error', () => {
    expect(() => parsePacket(Buffer.from([0x80, 0x06, 0x00, 0x01, 0x00, 0x01, 0x61, 0x00]), 4)).toThrow();
    expect(parsePacket(Buffer.from([0xc0, 0x00]), 4).cmd).toBe('pingreq');
  });

  test('peekConnect reads protocol name and level', () => {
    const c = generate({ cmd: 'connect', protocolId: 'MQIsdp', protocolVersion: 3, clientId: 'x', clean: true, keepalive: 0 });
    expect(peekConnect(c)).toEqual({ name: 'MQIsdp', level: 3 });
    expect(peekConnect(c.subarray(0, 4))).toBeUndefined();
  });

  test('fixed-length packets with another remaining length are malformed', () => {
    expect(() => checkFixedLength(Buffer.from([0xc0, 0x01, 0x00]), 4)).toThrowError(/PINGREQ/);
    expect(() => checkFixedLength(Buffer.from([0x40, 0x03, 0x00, 0x01, 0x00]), 4)).toThrowError(/acknowledgement/);
    expect(() => checkFixedLength(Buffer.from([0x40, 0x03, 0x00, 0x01, 0x00]), 5)).not.toThrow();
    expect(() => checkFixedLength(Buffer.from([0xe0, 0x01, 0x00]), 4)).toThrowError(/DISCONNECT/);
  });

  test('a PUBLISH topic that is not UTF-8 is refused on its raw bytes', () => {
    const bad = Buffer.from([0x30, 0x05, 0x00, 0x02, 0xc3, 0x28, 0x41]);
    expect(() => checkPublishTopicBytes(bad)).toThrowError(/UTF-8/);
    const good = generate({ cmd: 'publish', topic: 'ü', payload: Buffer.from('x'), qos: 0, dup: false, retain: false });
    expect(() => checkPublishTopicBytes(good)).not.toThrow();
    // ASCII before the bad byte, and a topic of ASCII only.
    expect(() => checkPublishTopicBytes(Buffer.from([0x30, 0x05, 0x00, 0x02, 0x61, 0xff, 0x41]))).toThrowError(/UTF-8/);
    const ascii = generate({ cmd: 'publish', topic: 'a/b/c', payload: Buffer.from([0xff]), qos: 0, dup: false, retain: false });
    expect(() => checkPublishTopicBytes(ascii)).not.toThrow();
  });

  test('decoded strings: invented U+FFFD and U+0000 are refused, a real U+FFFD is not', () => {
    expect(() => checkDecodedString('a\ufffd', Buffer.from([0x61, 0xc3]), 'x')).toThrowError(/UTF-8/);
    expect(() => checkDecodedString('a\ufffd', Buffer.from('a\ufffd'), 'x')).not.toThrow();
    expect(() => checkDecodedString('a\u0000', Buffer.from('a\u0000'), 'x')).toThrowError(/U\+0000/);
  });
});

describe('shared parser recovery', () => {
  test.each([
    ['a PUBLISH whose topic runs past the packet', Buffer.from([0x30, 0x04, 0x00, 0x09, 0x61, 0x62])],
    ['a SUBSCRIBE with reserved flags', Buffer.from([0x80, 0x06, 0x00, 0x01, 0x00, 0x01, 0x61, 0x00])],
    ['a PUBLISH with QoS 3', Buffer.from([0x36, 0x05, 0x00, 0x01, 0x61, 0x00, 0x01])],
  ])('after %s, the next packet of another connection parses correctly', (_name, bad) => {
    for (const level of [4, 5] as const) {
      expect(() => parsePacket(bad, level)).toThrowError(MqttError);
      const ok = generate({ cmd: 'publish', topic: 'fine/topic', payload: Buffer.from('x'), qos: 1, messageId: 3, dup: false, retain: false }, { protocolVersion: level });
      const p = parsePacket(ok, level);
      expect(p.cmd === 'publish' && [p.topic, p.messageId, p.payload.toString()]).toEqual(['fine/topic', 3, 'x']);
    }
  });
});

describe('fast path for PUBLISH and acknowledgements', () => {
  const topics = ['a', 'sensors/kitchen/temp', 'ü/ñ/€', '', 'x'.repeat(255)];
  const payloads = [Buffer.alloc(0), Buffer.from('hello'), Buffer.alloc(200, 7), Buffer.alloc(20_000, 9)];
  const cases = [3, 4, 5].flatMap((level) =>
    topics.flatMap((topic) =>
      payloads.flatMap((payload) =>
        ([0, 1, 2] as const).flatMap((qos) => [false, true].map((flag) => ({ level: level as 3 | 4 | 5, topic, payload, qos, dup: flag && qos > 0, retain: !flag }))),
      ),
    ),
  );

  test(`encodePublish writes the bytes mqtt-packet writes (${cases.length} combinations)`, () => {
    for (const c of cases) {
      const mine = encodePublish(c.level, c.topic, c.payload, c.qos, 4242, c.dup, c.retain, undefined);
      const ref = generate(
        { cmd: 'publish', topic: c.topic, payload: c.payload, qos: c.qos, dup: c.dup, retain: c.retain, messageId: c.qos > 0 ? 4242 : undefined },
        { protocolVersion: c.level },
      );
      expect(mine.equals(ref), JSON.stringify({ ...c, payload: c.payload.length })).toBe(true);
    }
  });

  test('decodeFast reads PUBLISH packets exactly as mqtt-packet does', () => {
    for (const c of cases) {
      if (c.topic === '') continue;
      const wire = encodePublish(c.level, c.topic, c.payload, c.qos, 4242, c.dup, c.retain, undefined);
      const fast = decodeFast(wire, c.level);
      const ref = referenceParse(wire, c.level);
      expect(fast).toEqual({ cmd: 'publish', topic: ref.topic, payload: ref.payload, qos: ref.qos, dup: ref.dup, retain: ref.retain, messageId: ref.messageId });
      expect(fast).toMatchObject({ cmd: 'publish', topic: c.topic, qos: c.qos, dup: c.dup, retain: c.retain });
      expect(fast?.cmd === 'publish' && Buffer.from(fast.payload).equals(c.payload)).toBe(true);
    }
  });

  test('v5 PUBLISH with properties is left to mqtt-packet, which reads them', () => {
    const wire = generate(
      { cmd: 'publish', topic: 't', payload: Buffer.from('x'), qos: 1, messageId: 3, dup: false, retain: false, properties: { contentType: 'a/b' } },
      { protocolVersion: 5 },
    );
    expect(decodeFast(wire, 5)).toBeUndefined();
    const p = parsePacket(wire, 5);
    expect(p.cmd === 'publish' && p.properties?.contentType).toBe('a/b');
    const fastWithProps = encodePublish(5, 't', Buffer.from('x'), 1, 3, false, false, { contentType: 'a/b' });
    expect(fastWithProps.equals(wire)).toBe(true);
  });

  test('truncated PUBLISH packets are left to mqtt-packet', () => {
    expect(decodeFast(Buffer.from([0x30, 0x04, 0x00, 0x09, 0x61, 0x62]), 4)).toBeUndefined();
    expect(decodeFast(Buffer.from([0x32, 0x03, 0x00, 0x01, 0x61]), 4)).toBeUndefined();
    expect(decodeFast(Buffer.from([0x30, 0x03, 0x00, 0x01, 0x61]), 5)).toBeUndefined();
    expect(decodeFast(Buffer.from([0x36, 0x05, 0x00, 0x01, 0x61, 0x00, 0x01]), 4)).toBeUndefined();
  });

  test.each([
    [4, 'puback', 4],
    [5, 'pubrec', 4],
    [6, 'pubrel', 4],
    [7, 'pubcomp', 4],
    [4, 'puback', 5],
    [6, 'pubrel', 5],
  ] as const)('ack type %i (%s) at level %i: same bytes both ways as mqtt-packet', (type, cmd, level) => {
    const mine = encodeAck(type, level, 513, 0);
    const ref = generate({ cmd, messageId: 513, reasonCode: 0 }, { protocolVersion: level });
    expect(mine).toEqual(ref);
    expect(decodeFast(mine, level)).toEqual({ cmd, messageId: 513, reasonCode: 0 });
  });

  test('a v5 ack with a reason code is encoded by mqtt-packet and decoded by it', () => {
    const wire = encodeAck(4, 5, 9, 0x10);
    expect(wire).toEqual(generate({ cmd: 'puback', messageId: 9, reasonCode: 0x10 }, { protocolVersion: 5 }));
    expect(decodeFast(wire, 5)).toBeUndefined();
    expect(parsePacket(wire, 5)).toMatchObject({ cmd: 'puback', messageId: 9, reasonCode: 0x10 });
  });

  test('acks with wrong flags are left to mqtt-packet', () => {
    expect(decodeFast(Buffer.from([0x60, 0x02, 0x00, 0x01]), 4)).toBeUndefined(); // PUBREL must carry 0010
    expect(decodeFast(Buffer.from([0x42, 0x02, 0x00, 0x01]), 4)).toBeUndefined();
  });
});
