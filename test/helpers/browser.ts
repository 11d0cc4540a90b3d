import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

export type { Browser, Page } from 'playwright-core';

/** Debian's Chromium; the test suite never downloads a browser. */
export const CHROMIUM = '/usr/bin/chromium';

export const haveChromium = existsSync(CHROMIUM);

/** Headless Chromium with everything that would phone home switched off. */
export function launchChromium(extraArgs: string[] = []): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      ...extraArgs,
    ],
    timeout: 20_000,
  });
}
