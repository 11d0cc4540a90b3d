import { generate, type Packet, type UserProperties } from 'mqtt-packet';
import { pickEnd, type FuzzCase, type Target, type TargetContext } from '../case.js';
import type { Rng } from '../prng.js';
import { INVALID_UTF8, Session, mutate, type LengthField } from '../session.js';

/** MQTT 3.1, 3.1.1 and 5 over raw TCP: sessions built with mqtt-packet's generate, then mutated. */

type Version = 3 | 4 | 5;

/** The remaining length (a variable byte integer after the first byte) and, for PUBLISH, the topic length. */
function add(s: Session, packet: Packet, version: Version): void {
  let bytes: Buffer;
  try {
    bytes = generate(packet, { protocolVersion: version });
  } catch {
    return; // a combination mqtt-packet refuses to write; the mutator makes those anyway
  }
  let i = 1;
  while (i < bytes.length && (bytes[i]! & 0x80) !== 0 && i < 4) i++;
  const lengths: LengthField[] = [{ offset: 1, width: i, kind: 'varint' }];
  if (packet.cmd === 'publish' || packet.cmd === 'connect') lengths.push({ offset: i + 1, width: 2, kind: 'be' });
  s.add(bytes, lengths);
}

function text(rng: Rng, base: string): string {
  const r = rng.int(24);
  if (r === 0) return 'x'.repeat(rng.range(256, 2000));
  if (r === 1) return '';
  if (r === 2) return `${base}\u0000`;
  if (r === 3) return `${base}\ud800`;
  if (r === 4) return `${base}\uffff`;
  return base;
}

function userProperties(rng: Rng): UserProperties {
  const up: UserProperties = {};
  const n = rng.chance(0.05) ? rng.range(100, 2000) : rng.int(4);
  for (let i = 0; i < n; i++) {
    const k = rng.chance(0.05) ? 'k'.repeat(rng.range(256, 600)) : text(rng, rng.pick(['a', 'b', 'content-type', 'x-match', '__proto__', 'constructor', `k${i}`]));
    up[k] = rng.chance(0.2) ? [text(rng, 'v1'), text(rng, 'v2')] : text(rng, rng.word(rng.size(40)));
  }
  return up;
}

function topic(rng: Rng, ns: string): string {
  const r = rng.int(20);
  if (r === 0) return `${ns}/+/bad`;
  if (r === 1) return `${ns}/#/bad`;
  if (r === 2) return `$SYS/${ns}`;
  if (r === 3) return `${ns}/${'l/'.repeat(rng.range(10, 500))}end`;
  if (r === 4) return `${ns}/a.b/c`;
  return `${ns}/k/${rng.int(4)}`;
}

function filter(rng: Rng, ns: string): string {
  return rng.pick([`${ns}/#`, `${ns}/+/1`, `${ns}/k/${rng.int(4)}`, '#', `$share/g${rng.int(2)}/${ns}/#`, `$share//${ns}`, `${ns}/#/x`, `${ns}/a+`, '', `${ns}/${'+/'.repeat(rng.range(1, 300))}#`]);
}

export function mqttSession(rng: Rng, ns: string): Session {
  const s = new Session();
  const version: Version = rng.pick([3, 4, 4, 5, 5, 5]);
  const v5 = version === 5;
  const clientId = rng.chance(0.1) ? '' : rng.chance(0.05) ? 'c'.repeat(rng.range(24, 70_000)) : `${ns}-c${rng.int(6)}`;
  add(
    s,
    {
      cmd: 'connect',
      protocolId: version === 3 ? 'MQIsdp' : 'MQTT',
      protocolVersion: version,
      clean: rng.chance(0.6),
      clientId,
      keepalive: rng.pick([0, 1, 60, 65535]),
      ...(rng.chance(0.7) ? { username: rng.pick(['guest', 'guest', '/:guest', 'nope', '']), password: Buffer.from(rng.pick(['guest', 'guest', 'bad'])) } : {}),
      ...(rng.chance(0.2)
        ? {
            will: {
              topic: topic(rng, ns),
              payload: rng.bytes(rng.size(300)),
              qos: rng.pick([0, 1, 2] as const),
              retain: rng.chance(0.3),
              ...(v5 ? { properties: { willDelayInterval: rng.pick([0, 1, 0xffff_ffff]), contentType: text(rng, 'text/plain'), userProperties: userProperties(rng) } } : {}),
            },
          }
        : {}),
      ...(v5
        ? {
            properties: {
              sessionExpiryInterval: rng.pick([0, 0, 10, 0xffff_ffff]),
              receiveMaximum: rng.pick([1, 10, 65535]),
              maximumPacketSize: rng.pick([16, 128, 1 << 20, 0xffff_ffff]),
              topicAliasMaximum: rng.pick([0, 10, 65535]),
              requestProblemInformation: rng.chance(0.5),
              ...(rng.chance(0.3) ? { userProperties: userProperties(rng) } : {}),
              ...(rng.chance(0.05) ? { authenticationMethod: 'SCRAM-SHA-1' } : {}),
            },
          }
        : {}),
    },
    version,
  );
  let id = 1;
  const steps = rng.range(1, 14);
  for (let i = 0; i < steps; i++) {
    const messageId = rng.chance(0.9) ? id++ : rng.pick([0, 65535, 1]);
    switch (rng.int(12)) {
      case 0:
      case 1:
        add(
          s,
          {
            cmd: 'subscribe',
            messageId,
            subscriptions: Array.from({ length: rng.range(1, 4) }, () => ({
              topic: filter(rng, ns),
              qos: rng.pick([0, 1, 2] as const),
              ...(v5 ? { nl: rng.chance(0.3), rap: rng.chance(0.3), rh: rng.pick([0, 1, 2]) } : {}),
            })),
            ...(v5 && rng.chance(0.3) ? { properties: { subscriptionIdentifier: rng.range(1, 268_435_455), userProperties: userProperties(rng) } } : {}),
          },
          version,
        );
        break;
      case 2:
      case 3:
      case 4: {
        const qos = rng.pick([0, 1, 2] as const);
        const props = v5
          ? {
              ...(rng.chance(0.4) ? { contentType: text(rng, 'application/json') } : {}),
              ...(rng.chance(0.3) ? { correlationData: rng.bytes(rng.chance(0.1) ? rng.range(256, 1000) : rng.int(40)) } : {}),
              ...(rng.chance(0.3) ? { responseTopic: text(rng, `${ns}/reply`) } : {}),
              ...(rng.chance(0.3) ? { userProperties: userProperties(rng) } : {}),
              ...(rng.chance(0.2) ? { messageExpiryInterval: rng.pick([0, 1, 0xffff_ffff]) } : {}),
              ...(rng.chance(0.2) ? { topicAlias: rng.pick([0, 1, 2, 65535]) } : {}),
              ...(rng.chance(0.2) ? { payloadFormatIndicator: rng.chance(0.5) } : {}),
            }
          : undefined;
        const payload = rng.chance(0.1) ? Buffer.concat([Buffer.from('{"a":'), rng.pick(INVALID_UTF8)]) : rng.bytes(rng.size(8000));
        add(
          s,
          {
            cmd: 'publish',
            topic: props?.topicAlias !== undefined && rng.chance(0.5) ? '' : topic(rng, ns),
            payload,
            qos,
            retain: rng.chance(0.15),
            dup: rng.chance(0.05),
            ...(qos > 0 ? { messageId } : {}),
            ...(props ? { properties: props } : {}),
          },
          version,
        );
        break;
      }
      case 5:
        add(s, { cmd: rng.pick(['puback', 'pubrec', 'pubrel', 'pubcomp'] as const), messageId: rng.range(0, id + 2) }, version);
        break;
      case 6:
        add(s, { cmd: 'unsubscribe', messageId, unsubscriptions: [filter(rng, ns)] }, version);
        break;
      case 7:
        add(s, { cmd: 'pingreq' }, version);
        break;
      case 8:
        // a second CONNECT is a protocol violation
        add(s, { cmd: 'connect', protocolId: 'MQTT', protocolVersion: version, clean: true, clientId: `${ns}-again`, keepalive: 0 }, version);
        break;
      case 9:
        if (v5) add(s, { cmd: 'auth', reasonCode: rng.pick([0, 0x18, 0x19]), properties: { authenticationMethod: 'x', reasonString: text(rng, 'why') } }, version);
        break;
      case 10:
        // a reserved packet type, or flags that must be zero
        s.add(Buffer.from([rng.pick([0x00, 0xf0, 0x31 | 0x06, 0x82, 0x62 & 0xf0, 0xe1]), 0x00]), [{ offset: 1, width: 1, kind: 'varint' }]);
        break;
      default:
        add(s, { cmd: 'disconnect', ...(v5 ? { reasonCode: rng.pick([0, 4, 0x8e]), properties: { sessionExpiryInterval: rng.pick([0, 5]) } } : {}) }, version);
    }
  }
  return s;
}

export const mqttTarget: Target = {
  name: 'mqtt',
  generate(rng: Rng, ctx: TargetContext): FuzzCase {
    const session = mqttSession(rng, ctx.ns);
    const chunks = mutate(rng, session, { other: () => mqttSession(rng, ctx.ns), text: true });
    return { kind: 'raw', port: 'mqtt', chunks, awaitReply: false, end: pickEnd(rng), note: `mqtt session of ${session.parts.length} packets` };
  },
};
