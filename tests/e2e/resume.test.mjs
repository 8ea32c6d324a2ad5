// A comparison cut short resumes where it was (issue 29): after every step the worker posts a
// checkpoint (both prompts, their optimiser moments and minibatch streams) and the page keeps
// the newest in IndexedDB beside the run. Cut by a reload, it resumes at the step it reached and
// ends exactly where the same run ends uninterrupted (both on the CPU engine, deterministic
// here); cut by a lost GPU device, the page says so and the run goes on on the CPU engine.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { serveWithTinyModel, launchBrowser, watchConsole, screenshotPath, PASTE, twoPtContenders, loadTinyModel, tinyModelReady, assertSameOrigin } from './harness.mjs';

let server;
before(async () => {
  server = await serveWithTinyModel();
});
after(async () => {
  await server?.close();
});

const STEPS = 300;

async function runJson(page) {
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download-run')]);
  return JSON.parse(fs.readFileSync(await download.path(), 'utf8'));
}

const finished = (page) => page.waitForSelector('#run[data-status="finished"], #run[data-status="failed"]', { timeout: 300_000 });

test('a reload mid-run resumes at the step it reached and ends where the whole run ends', async () => {
  const browser = await launchBrowser();
  const context = await browser.newContext({ acceptDownloads: true });
  const page = await context.newPage();
  const log = watchConsole(page);
  try {
    await loadTinyModel(page, server.url, log);
    await page.fill('#paste', PASTE);
    await twoPtContenders(page, { steps: STEPS, evalEvery: 100, lr: 1 });
    await page.selectOption('#set-kernels', 'cpu');

    // The whole run, uninterrupted: the reference.
    await page.click('#train');
    await finished(page);
    assert.equal(await page.getAttribute('#run', 'data-status'), 'finished', log.join('\n'));
    const whole = await runJson(page);
    assert.equal(await page.$('#resume'), null, 'a finished run offers no resume');

    // The same run again, cut by a reload part way.
    await page.click('#train');
    // Cut once the page has written a checkpoint after step 5 (it says so: data-saved-step).
    await page.waitForFunction(() => Number(document.querySelector('#run')?.dataset.savedStep ?? 0) >= 5, null, { timeout: 120_000 });
    const saved = Number(await page.getAttribute('#run', 'data-saved-step'));
    const before = (await page.textContent('#run label')).trim();
    await page.reload();
    // The model is in the cache now: it loads by itself.
    await tinyModelReady(page, log);
    await page.waitForSelector('#run[data-status="stopped"]', { timeout: 60_000 });
    const button = await page.waitForSelector('#resume', { timeout: 30_000 });
    const offer = (await button.textContent()).trim();
    console.log(`cut at "${before}", saved after step ${saved}; after the reload: "${offer}"`);
    const at = Number(/Resume from step (\d+) of 300/.exec(offer)?.[1]);
    assert.ok(at >= saved && at < STEPS, `${offer}, saved after step ${saved}`);
    await page.screenshot({ path: screenshotPath('resume-1-offered'), fullPage: true });
    await page.click('#resume');
    await finished(page);
    const run = (await page.textContent('#run')).replace(/\s+/g, ' ');
    console.log(`resumed: ${run.slice(0, 200)}`);
    assert.equal(await page.getAttribute('#run', 'data-status'), 'finished', run + log.join('\n'));
    assert.match(run, new RegExp(`resumed at step ${at}`));
    await page.screenshot({ path: screenshotPath('resume-2-finished'), fullPage: true });

    // Step for step what the uninterrupted run did: every minibatch loss, every accuracy, the
    // last predictions.
    const resumed = await runJson(page);
    for (const i of [0, 1]) {
      const [a, b] = [whole.contenders[i], resumed.contenders[i]];
      assert.equal(b.losses.length, STEPS);
      assert.deepEqual(b.losses, a.losses, `contender ${i}'s losses`);
      assert.deepEqual(b.accuracy, a.accuracy, `contender ${i}'s accuracy`);
      assert.deepEqual(b.predictions, a.predictions);
    }
    console.log(`losses at step ${STEPS}: ${whole.contenders.map((c) => c.losses.at(-1)[1]).join(', ')} (both runs)`);
    assert.equal(await page.$('#resume'), null, 'the finished run offers no resume');
    assertSameOrigin(log);
  } catch (e) {
    console.log(log.join('\n'));
    await page.screenshot({ path: screenshotPath('resume-failure'), fullPage: true }).catch(() => {});
    throw e;
  } finally {
    await browser.close();
  }
});

test('a GPU device lost mid-run stops the run with the reason, and it resumes on the CPU engine', async () => {
  const browser = await launchBrowser();
  const context = await browser.newContext({ acceptDownloads: true });
  const page = await context.newPage();
  const log = watchConsole(page);
  // Keep the worker's GPU devices within the test's reach, so that it can destroy them
  // (the worker asks for its device only when the model loads, long after this runs).
  page.on('worker', (w) => {
    w.evaluate(() => {
      const request = GPUAdapter.prototype.requestDevice;
      GPUAdapter.prototype.requestDevice = async function (...args) {
        const device = await request.apply(this, args);
        (self.__devices ??= []).push(device);
        return device;
      };
    }).catch((e) => log.push(`[test] could not watch the worker's devices: ${e.message}`));
  });
  try {
    await loadTinyModel(page, server.url, log);
    await page.fill('#paste', PASTE);
    await twoPtContenders(page, { steps: 40, evalEvery: 20, lr: 1 });
    await page.selectOption('#set-kernels', 'wgsl');
    await page.click('#train');
    await page.waitForFunction(() => {
      const m = /Step (\d+) of/.exec(document.querySelector('#run label')?.textContent ?? '');
      return m && Number(m[1]) >= 3;
    }, null, { timeout: 120_000 });
    assert.match(await page.textContent('#run'), /our WGSL kernels on/);
    let destroyed = 0;
    for (const w of page.workers()) {
      destroyed += await w.evaluate(() => (self.__devices ?? []).map((d) => d.destroy()).length);
    }
    assert.ok(destroyed >= 1, `no GPU device to destroy\n${log.join('\n')}`);
    await page.waitForSelector('#run[data-status="failed"], #run[data-status="finished"]', { timeout: 120_000 });
    assert.equal(await page.getAttribute('#run', 'data-status'), 'failed', log.join('\n'));
    const why = (await page.textContent('#run')).replace(/\s+/g, ' ');
    console.log(`device lost: ${why.slice(0, 400)}`);
    assert.match(why, /the GPU device was lost \(Destroyed/);
    const offer = (await (await page.waitForSelector('#resume', { timeout: 30_000 })).textContent()).trim();
    const at = Number(/Resume from step (\d+) of 40/.exec(offer)?.[1]);
    assert.ok(at >= 2 && at < 40, offer);
    await page.screenshot({ path: screenshotPath('resume-3-device-lost'), fullPage: true });

    await page.selectOption('#set-kernels', 'cpu');
    await page.click('#resume');
    await finished(page);
    const run = (await page.textContent('#run')).replace(/\s+/g, ' ');
    console.log(`resumed on the CPU: ${run.slice(0, 200)}`);
    assert.equal(await page.getAttribute('#run', 'data-status'), 'finished', run + log.join('\n'));
    assert.match(run, new RegExp(`our CPU engine .*resumed at step ${at}`));
    const rec = await runJson(page);
    for (const c of rec.contenders) {
      assert.equal(c.losses.length, 40);
      assert.ok(c.losses.every(([, l]) => Number.isFinite(l)), JSON.stringify(c.losses));
    }
    assert.ok(!log.some((l) => l.startsWith('[pageerror]')), log.join('\n'));
    assertSameOrigin(log);
  } catch (e) {
    console.log(log.join('\n'));
    await page.screenshot({ path: screenshotPath('resume-failure-device'), fullPage: true }).catch(() => {});
    throw e;
  } finally {
    await browser.close();
  }
});
