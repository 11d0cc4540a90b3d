import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { expect, test } from 'vitest';
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
