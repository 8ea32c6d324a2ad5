// The first page: finds a WebGPU adapter, shows its name, runs the kernel self-check; and says
// plainly when WebGPU is missing.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { serveDist, launchBrowser, watchConsole, screenshotPath } from './harness.mjs';

let server;
before(async () => {
  server = await serveDist();
});
after(async () => {
  await server?.close();
});

test('shows the WebGPU adapter and a passing kernel self-check', async () => {
  const browser = await launchBrowser();
  const page = await browser.newPage();
  const log = watchConsole(page);
  try {
    await page.goto(server.url);
    await assert.doesNotReject(page.waitForSelector('#adapter-name', { timeout: 120_000 }), () => log.join('\n'));
    const name = (await page.textContent('#adapter-name')).trim();
    assert.ok(name.length > 0, 'adapter name is empty');
    const fallback = await page.getAttribute('#adapter-fallback', 'data-fallback');
    console.log(`adapter: ${name} (fallback: ${fallback})`);
    await page.waitForSelector('#kernel-check', { timeout: 120_000 });
    const check = await page.textContent('#kernel-check');
    console.log(check);
    assert.equal(await page.getAttribute('#kernel-check', 'data-passed'), 'true', check);
    await page.screenshot({ path: screenshotPath('home'), fullPage: true });
  } finally {
    await browser.close();
  }
});

test('says plainly when the browser has no WebGPU', async () => {
  const browser = await launchBrowser();
  const page = await browser.newPage();
  // Hide the API before any page script runs, as in a browser without WebGPU.
  await page.addInitScript(() => {
    delete Navigator.prototype.gpu;
  });
  try {
    await page.goto(server.url);
    const alert = await page.waitForSelector('#webgpu-missing', { timeout: 60_000 });
    const text = await alert.textContent();
    assert.match(text, /WebGPU is not available/);
    await page.screenshot({ path: screenshotPath('no-webgpu'), fullPage: true });
  } finally {
    await browser.close();
  }
});
