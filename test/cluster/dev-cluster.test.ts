import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { startNatsServers } from '../../src/cluster/dev-cluster.js';
import { connectNats } from '../../src/cluster/nats/nats-engine.js';
import { waitFor } from '../helpers/broker.js';
import { http } from '../helpers/management.js';
import { WARREN_BIN } from '../helpers/warren-process.js';

test('warren dev-cluster starts NATS servers and nodes, prints how to reach them, and stops everything on SIGINT', { timeout: 60_000 }, async () => {
  const child = spawn(process.execPath, [WARREN_BIN, 'dev-cluster', '--nodes', '2'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let dir: string | undefined;
  try {
    await waitFor(() => out.includes('Ctrl-C stops everything'), 45_000, 'the dev cluster to be up');
    dir = /in (\S+) \.\.\./.exec(out)?.[1];
    expect(dir).toBeDefined();
    const httpPorts = [...out.matchAll(/ (n\d): .* http:\/\/127\.0\.0\.1:(\d+)\//g)].map((m) => [m[1], Number(m[2])] as const);
    expect(httpPorts.map(([n]) => n)).toEqual(['n1', 'n2']);
    const nodes = await http<{ name: string; running: boolean }[]>(httpPorts[1]![1], 'GET', '/api/nodes');
    expect(nodes.body.map((n) => [n.name, n.running])).toEqual([['n1', true], ['n2', true]]);
  } finally {
    child.kill('SIGINT'); // it stops its servers and nodes itself
  }
  expect(await exited).toBe(0);
  expect(existsSync(dir!)).toBe(false);
});

test('a port taken between its probe and the nats-server bind: the start is tried again on other ports', { timeout: 60_000 }, async () => {
  const confDir = await mkdtemp(join(tmpdir(), 'warren-port-retry-'));
  const taken: Server[] = [];
  const takenPorts: number[] = [];
  let firstStarts = 0;
  const nats = await startNatsServers({
    count: 2,
    // Before the first start of s1, something else binds its client port (as an outgoing
    // connection's local port or another test's listener can).
    launcher: (i) => {
      if (i !== 0) return [];
      firstStarts++;
      if (firstStarts === 1) {
        const conf = readFileSync(join(confDir, 's1.conf'), 'utf8');
        const port = Number(/^listen: 127\.0\.0\.1:(\d+)$/m.exec(conf)?.[1]);
        const s = createServer();
        s.listen(port); // binds synchronously, before the spawn that follows
        taken.push(s);
        takenPorts.push(port);
      }
      return [];
    },
    dir: confDir,
  });
  try {
    expect(firstStarts).toBe(2);
    expect(takenPorts).toHaveLength(1);
    expect(nats.servers[0]!.port).not.toBe(takenPorts[0]);
    const nc = await connectNats({ servers: [nats.url], name: 'port-retry' });
    await nc.close();
  } finally {
    await nats.stop();
    for (const s of taken) s.close();
    await rm(confDir, { recursive: true, force: true });
  }
});
