// The model's files in the browser's Cache API are keyed by the SHA-256 the model folder's
// manifest.json names (issue 29): a redeployed model is fetched again and the old version's
// entry is dropped, and a damaged entry is caught, fetched again and said on the page.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { serveWithTinyModel, launchBrowser, watchConsole, screenshotPath, loadTinyModel, tinyModelReady, assertSameOrigin, dist } from './harness.mjs';

let server;
before(async () => {
  server = await serveWithTinyModel();
});
after(async () => {
  await server?.close();
});

const WEIGHTS = 'models/tiny/model.safetensors';

/** The page's model cache: its name and its keys (paths and queries, relative to the origin). */
async function cacheKeys(page) {
  return page.evaluate(async () => {
    const name = (await caches.keys()).find((n) => n.startsWith('metaprompt-'));
    const cache = await caches.open(name);
    return { name, keys: (await cache.keys()).map((r) => { const u = new URL(r.url); return u.pathname.slice(1) + u.search; }) };
  });
}

test('the model cache is keyed by content: an old version is dropped, a damaged entry is fetched again', async () => {
  const manifest = JSON.parse(fs.readFileSync(path.join(dist, 'models/tiny/manifest.json'), 'utf8'));
  const sha = manifest.files['model.safetensors'].sha256;
  const browser = await launchBrowser();
  const page = await browser.newPage();
  const log = watchConsole(page);
  try {
    await loadTinyModel(page, server.url, log);
    const first = await cacheKeys(page);
    console.log(`cache ${first.name}: ${first.keys.join(', ')}`);
    assert.ok(first.keys.includes(`${WEIGHTS}?sha256=${sha}`), first.keys.join(', '));
    assert.equal(first.keys.length, 3, 'config, tokenizer, weights');

    // A redeployment: the cache holds the weights of the version before (another hash) and not
    // this one's. The page fetches this one and drops the old entry.
    await page.evaluate(async ([name, weights, sha]) => {
      const cache = await caches.open(name);
      await cache.delete(`${weights}?sha256=${sha}`);
      await cache.put(`${weights}?sha256=${'0'.repeat(64)}`, new Response('the previous deployment'));
    }, [first.name, WEIGHTS, sha]);
    await page.reload();
    await (await page.waitForSelector('#model-load', { timeout: 60_000 })).click();
    await tinyModelReady(page, log);
    assert.equal(await page.getAttribute('#model-ready', 'data-source'), 'network');
    const second = await cacheKeys(page);
    assert.ok(second.keys.includes(`${WEIGHTS}?sha256=${sha}`), second.keys.join(', '));
    assert.ok(!second.keys.some((k) => k.includes('0'.repeat(64))), `the old version stayed: ${second.keys.join(', ')}`);

    // A damaged entry (one byte changed): caught by its hash, fetched again, said.
    await page.evaluate(async ([name, key]) => {
      const cache = await caches.open(name);
      const bytes = new Uint8Array(await (await cache.match(key)).arrayBuffer());
      bytes[bytes.length - 5] ^= 0xff;
      await cache.put(key, new Response(bytes));
    }, [first.name, `${WEIGHTS}?sha256=${sha}`]);
    await page.reload();
    // Cached: it loads by itself.
    await tinyModelReady(page, log);
    const note = (await page.textContent('.model-repaired')).trim();
    console.log(`damaged entry: ${note}`);
    assert.match(note, /model\.safetensors: the cached copy was damaged \(SHA-256 [0-9a-f]{64} where the manifest names [0-9a-f]{64}\): fetched again/);
    await page.screenshot({ path: screenshotPath('cache-repaired'), fullPage: true });

    // And the repaired entry serves the next load.
    await page.reload();
    await tinyModelReady(page, log);
    assert.equal(await page.getAttribute('#model-ready', 'data-source'), 'cache');
    assert.equal(await page.$('.model-repaired'), null);
    assertSameOrigin(log);
  } catch (e) {
    console.log(log.join('\n'));
    throw e;
  } finally {
    await browser.close();
  }
});
