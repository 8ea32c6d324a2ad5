// The first page: finds a WebGPU adapter, shows its name, runs the kernel self-check; and says
// plainly when WebGPU is missing.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { serveDist, launchBrowser, watchConsole, screenshotPath, assertSameOrigin } from './harness.mjs';

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
    assertSameOrigin(log);
  } finally {
    await browser.close();
  }
});

test('a link naming a model on another origin is refused with a message', async () => {
  const browser = await launchBrowser({ webgpu: false });
  const page = await browser.newPage();
  const log = watchConsole(page);
  try {
    await page.goto(`${server.url}?model=//127.0.0.2/models/flan-t5-small`);
    const refused = (await (await page.waitForSelector('#model-refused', { timeout: 60_000 })).textContent()).trim();
    console.log(`?model=//127.0.0.2/...: ${refused}`);
    assert.match(refused, /expected a relative folder on this site/);
    await page.waitForSelector('#model-load', { timeout: 60_000 });
    assertSameOrigin(log);
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
