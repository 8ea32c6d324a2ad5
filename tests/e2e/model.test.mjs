// The real flan-t5-small in the page: downloaded with a progress bar, run on WebGPU (SwiftShader
// here, slow: a few tokens only), and read back from the Cache API after a reload.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { serveDist, launchBrowser, watchConsole, screenshotPath, generate, assertSameOrigin } from './harness.mjs';

let server;
before(async () => {
  server = await serveDist();
});
after(async () => {
  await server?.close();
});

/** Records every value #model-status[data-phase] takes, from page start. */
function recordPhases() {
  window.__phases = [];
  new MutationObserver(() => {
    const el = document.getElementById('model-status');
    const p = el?.dataset.phase;
    if (p && window.__phases.at(-1) !== p) window.__phases.push(p);
  }).observe(document, { subtree: true, childList: true, attributes: true, attributeFilter: ['data-phase'] });
}

test('downloads the model with progress, generates the known answers, reloads it from the cache', async () => {
  const browser = await launchBrowser();
  const page = await browser.newPage();
  const log = watchConsole(page);
  const modelRequests = [];
  page.on('request', (r) => {
    // Not the prompt files (assets/*/adapter_model.safetensors).
    if (r.url().endsWith('/flan-t5-small/model.safetensors')) modelRequests.push(r.url());
  });
  await page.addInitScript(recordPhases);
  try {
    await page.goto(server.url);
    const load = await page.waitForSelector('#model-load', { timeout: 60_000 });
    const t0 = Date.now();
    await load.click();
    await assert.doesNotReject(
      page.waitForSelector('#model-status[data-phase="ready"], #model-status[data-phase="failed"]', { timeout: 300_000 }),
      () => log.join('\n'),
    );
    const status = (await page.textContent('#model-status')).trim();
    console.log(`first load (${Date.now() - t0} ms): ${status}`);
    assert.equal(await page.getAttribute('#model-status', 'data-phase'), 'ready', status);
    assert.equal(await page.getAttribute('#model-ready', 'data-source'), 'network');
    const phases = await page.evaluate(() => window.__phases);
    assert.deepEqual(
      phases.filter((p) => p !== 'idle'),
      ['starting', 'downloading', 'preparing', 'ready'],
      `phases seen: ${phases.join(' -> ')}`,
    );
    assert.equal(modelRequests.length, 1, 'model.safetensors fetched once');
    // Both engines timed at load; on SwiftShader (a CPU rasteriser) the CPU engine wins.
    const timings = await page.$$eval('#engine-timings tbody tr', (rows) =>
      rows.map((r) => ({ wgsl: r.dataset.wgsl, engine: r.children[0].textContent, ms: r.children[1].textContent })));
    console.log(`engine timings: ${JSON.stringify(timings)}; ${await page.textContent('#engine-chosen')}`);
    assert.equal(timings.length, 2, JSON.stringify(timings));
    // The CPU engine always times; a software adapter may be given up on at the time limit.
    const gaveUp = (t) => t.wgsl === 'true' && /^failed: no answer within \d+ s$/.test(t.ms);
    assert.ok(timings.every((t) => /^\d+$/.test(t.ms) || gaveUp(t)), JSON.stringify(timings));
    if (timings.some(gaveUp) || /swiftshader/i.test(timings.find((t) => t.wgsl === 'true').engine)) {
      assert.equal(await page.getAttribute('#engine-chosen', 'data-wgsl'), 'false', 'SwiftShader was chosen over the CPU engine');
    }

    assert.equal(
      await generate(page, 'Is the following review positive or negative? Review: I loved this movie, it was fantastic.', 3),
      'positive',
    );
    // Three decoding steps of "Das Haus ist wunderbar." (the native test checks it whole).
    assert.match(await generate(page, 'translate English to German: The house is wonderful.', 3), /^Das Haus/);
    await page.screenshot({ path: screenshotPath('model'), fullPage: true });

    // 8,000 words (issue 29: the module trapped and the page died): refused by its length, and
    // the box still answers.
    await page.fill('#generate-input', 'word '.repeat(8_000));
    await page.click('#generate-run');
    await page.waitForSelector('#generate-result[data-state="failed"]', { timeout: 60_000 });
    const tooLong = (await page.textContent('#generate-result')).trim();
    console.log(`8,000 words: ${tooLong}`);
    assert.match(tooLong, /tokens long; generation takes at most 512/);
    assert.equal(await generate(page, 'Is the following review positive or negative? Review: a dull film.', 3), 'negative');
    assert.ok(!log.some((l) => l.startsWith('[pageerror]')), log.join('\n'));

    // A reload reads the checkpoint from the Cache API: no second download, no click needed.
    await page.reload();
    await page.waitForSelector('#model-status[data-phase="ready"], #model-status[data-phase="failed"]', {
      timeout: 300_000,
    });
    const again = (await page.textContent('#model-status')).trim();
    console.log(`after reload: ${again}`);
    assert.equal(await page.getAttribute('#model-ready', 'data-source'), 'cache', again);
    assert.equal(modelRequests.length, 1, 'the reload fetched model.safetensors again');
    assertSameOrigin(log);
  } finally {
    await browser.close();
  }
});
