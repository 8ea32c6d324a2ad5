// Shared by the end-to-end tests: a static server for the Trunk build on loopback and Debian's
// Chromium driven by playwright-core with WebGPU switched on.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { createServer } from '../../scripts/serve-dist.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
export const root = path.resolve(here, '../..');
export const dist = process.env.METAPROMPT_DIST ?? path.join(root, 'dist');
export const outDir = path.join(here, 'out');

/** Serves `dist` on 127.0.0.1 at a free port with the page's own server (scripts/serve-dist.mjs:
 * its headers, its policy); resolves to { url, close }. */
export async function serveDist() {
  const server = createServer(dist);
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  const { port } = server.address();
  return { url: `http://127.0.0.1:${port}/`, close: () => new Promise((ok) => server.close(ok)) };
}

/** Debian's Chromium, headless, with WebGPU (SwiftShader when there is no GPU). Playwright gives
 * each launch a fresh temporary profile. */
export async function launchBrowser({ webgpu = true } = {}) {
  const args = [
    '--no-sandbox',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--disable-quic',
    '--disable-dev-shm-usage',
  ];
  if (webgpu) args.push('--enable-unsafe-webgpu');
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args,
  });
}

/** Collects the page's console errors and uncaught exceptions, so a test can print them on failure. */
export function watchConsole(page) {
  const lines = [];
  page.on('console', (m) => lines.push(`[console.${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => lines.push(`[pageerror] ${e.message}`));
  // Every request the page makes stays on its own origin (issue 29): a link must not make it
  // fetch from elsewhere.
  page.on('request', (r) => {
    const url = r.url();
    if (/^(data|blob):/.test(url)) return;
    const at = page.url().startsWith('http') ? page.url() : url;
    if (new URL(url).origin !== new URL(at).origin) lines.push(`[foreign request] ${url}`);
  });
  return lines;
}

/** Fails on any request the page made to another origin than its own, and on anything the
 * server's Content-Security-Policy refused. */
export function assertSameOrigin(log) {
  const bad = log.filter((l) => l.startsWith('[foreign request]') || /Content Security Policy/i.test(l));
  if (bad.length > 0) throw new Error(`requests to other origins or refused by the policy:\n${bad.join('\n')}`);
}

export function screenshotPath(name) {
  fs.mkdirSync(outDir, { recursive: true });
  return path.join(outDir, `${name}.png`);
}

// Labelled examples for the comparison tests: ten good lines and three bad ones.
const GOOD = [
  ['the film was a delight', 'positive'],
  ['a dull, lifeless mess', 'negative'],
  ['wonderful acting and a clever script', 'positive'],
  ['i want those two hours back', 'negative'],
  ['an instant classic', 'positive'],
  ['boring from start to finish', 'negative'],
  ['sharp, funny and moving', 'positive'],
  ['a tedious slog', 'negative'],
  ['great fun for the whole family', 'positive'],
  ['clumsy and predictable', 'negative'],
];
// Line 3 has no tab, line 6 repeats line 1, line 9 has an empty label.
export const PASTE = [
  ...GOOD.slice(0, 2).map((r) => r.join('\t')),
  'this line has no separator',
  ...GOOD.slice(2, 4).map((r) => r.join('\t')),
  GOOD[0].join('\t'),
  ...GOOD.slice(4, 6).map((r) => r.join('\t')),
  'an empty label\t',
  ...GOOD.slice(6).map((r) => r.join('\t')),
].join('\n');

export async function setField(page, id, value) {
  await page.fill(id, String(value));
  await page.dispatchEvent(id, 'change');
}

/** PT vocab against PT random (the shipped MPT prompts are 512 wide, the tiny model 16), 3
 * training examples per label, prompt length 4. */
export async function twoPtContenders(page, { steps, evalEvery, lr }) {
  await page.selectOption('#contender-0', 'vocab');
  await page.selectOption('#contender-1', 'random');
  await setField(page, '#set-k', 3);
  await setField(page, '#set-len', 4);
  await setField(page, '#set-steps', steps);
  if (lr !== undefined) await setField(page, '#set-lr', lr);
  await setField(page, '#set-eval', evalEvery);
}


/** Loads the tiny model (served at models/tiny by the page at `url`) and waits until it is ready. */
export async function loadTinyModel(page, url, log) {
  await page.goto(`${url}?model=models/tiny`);
  await (await page.waitForSelector('#model-load', { timeout: 60_000 })).click();
  await tinyModelReady(page, log);
}

/** Waits for the tiny model to be ready (after a click, or loading by itself from the cache
 * after a reload); on failure says where the load stood. */
export async function tinyModelReady(page, log) {
  const t0 = Date.now();
  try {
    await page.waitForSelector('#model-status[data-phase="ready"], #model-status[data-phase="failed"]', { timeout: 180_000 });
  } catch (e) {
    // Say where the load stood: the status line and what the page logged.
    const status = await page.textContent('#model-status').catch(() => '(no status)');
    throw new Error(`the tiny model did not load in ${(Date.now() - t0) / 1000} s; status: ${status}\n${log.join('\n')}\n${e.message}`);
  }
  const status = (await page.textContent('#model-status')).replace(/\s+/g, ' ');
  console.log(`tiny model: ${(Date.now() - t0) / 1000} s to ${status.slice(0, 300)}`);
  if ((await page.getAttribute('#model-status', 'data-phase')) !== 'ready') {
    throw new Error(`the tiny model did not load:\n${log.join('\n')}`);
  }
}

/** Serves the build for a test file that needs the tiny model in it (`metaprompt tiny-model`). */
export async function serveWithTinyModel() {
  if (!fs.existsSync(path.join(dist, 'models/tiny/model.safetensors'))) {
    throw new Error('no tiny model in dist: run `metaprompt tiny-model --out dist/models/tiny` (scripts/test.sh does)');
  }
  return serveDist();
}

/** Opens the page with the default model (downloaded or from the cache) and waits until it
 * is ready; without WebGPU when `cpu` (the real-model scripts). */
export async function loadRealModel(page, url, { cpu = false } = {}) {
  if (cpu) {
    await page.addInitScript(() => {
      delete Navigator.prototype.gpu;
    });
  }
  await page.goto(url);
  const load = await page.waitForSelector('#model-load, #model-ready', { timeout: 60_000 });
  if (await load.getAttribute('id') === 'model-load') await load.click();
  await page.waitForSelector('#model-status[data-phase="ready"]', { timeout: 600_000 });
}

/** Greedy generation in the model panel's box; the output text (throws when it failed). */
export async function generate(page, input, maxNew) {
  await page.fill('#generate-input', input);
  await page.fill('#generate-max-new', String(maxNew));
  await page.dispatchEvent('#generate-max-new', 'change');
  // The page's thread can still be busy with the last SwiftShader submission: on a loaded machine
  // the click waits longer than Playwright's default 30 s.
  await page.click('#generate-run', { timeout: 180_000 });
  await page.waitForSelector('#generate-result[data-state="done"], #generate-result[data-state="failed"]', {
    timeout: 300_000,
  });
  const timing = await page.textContent('#generate-timing').catch(() => '(no timing)');
  const output = (await page.textContent('#generate-result')).trim();
  console.log(`${input}\n  -> ${output}`);
  console.log(`  ${timing}`);
  return (await page.textContent('#generate-output')).trim();
}
