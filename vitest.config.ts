import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    testTimeout: 20_000,
    hookTimeout: 30_000,
    pool: 'forks',
    projects: [
      {
        extends: true,
        test: { name: 'broker', include: ['test/**/*.test.ts'], exclude: ['test/cluster/**'], sequence: { groupOrder: 0 } },
      },
      {
        // Multi-node tests start their own NATS servers and Warren nodes: one file at a time, after
        // the rest, so that their failover timings do not compete with other files for the CPU. They
        // kill and restart processes; on a loaded machine a failover can outlast a test's waits, so a
        // failed test is run again (up to twice) before it counts as failed.
        extends: true,
        test: { name: 'cluster', include: ['test/cluster/**/*.test.ts'], maxWorkers: 1, retry: 2, sequence: { groupOrder: 1 } },
      },
    ],
  },
});
