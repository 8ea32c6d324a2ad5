// The Lifelong section on the tiny random T5 (`metaprompt tiny-model`, served at models/tiny/):
// paste two tasks with a bad line and a bad header and see each named with its line, learn the
// sequence with LFPT5 and sequential PT, see the pseudo examples LFPT5 wrote (with a verdict
// each), both score matrices filled and the forgetting charts, download a prompt, reload and find
// the paste and the run again. Screenshots land in tests/e2e/out/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { serveWithTinyModel, launchBrowser, watchConsole, screenshotPath, setField, loadTinyModel, assertSameOrigin } from './harness.mjs';

let server;
before(async () => {
  server = await serveWithTinyModel();
});
after(async () => {
  await server?.close();
});

const GOOD = ['a fine film', 'loved every minute', 'a warm story', 'great acting', 'a joy to watch', 'wonderful music'];
const BAD = ['a dull film', 'hated every minute', 'a cold story', 'poor acting', 'a pain to watch', 'awful music'];
const SPORT = ['the team won the cup', 'a late goal', 'the match ended level', 'she ran a record mile', 'the coach resigned', 'a tennis final'];
const TECH = ['a new phone chip', 'the app crashed', 'faster broadband', 'a software update', 'the laptop battery', 'a cloud outage'];

const lines = (inputs, label) => inputs.map((x) => `${x} => ${label}`);
const TASKS = [
  '# reviews',
  ...lines(GOOD, 'positive'),
  ...lines(BAD, 'negative'),
  '# news',
  ...lines(SPORT, 'sport'),
  ...lines(TECH, 'tech'),
];
// The same with a line that has no separator and a header of an unknown type.
const BROKEN = [...TASKS.slice(0, 3), 'a line with no label', ...TASKS.slice(3), '# poems (poetry)', 'roses are red => rhyme'];
const PASTE = TASKS.join('\n');

test('paste a task sequence, learn it with LFPT5 and sequential PT, download, reload', async () => {
  const browser = await launchBrowser();
  const context = await browser.newContext({ acceptDownloads: true });
  const page = await context.newPage();
  const log = watchConsole(page);
  try {
    await loadTinyModel(page, server.url, log);

    // 1. A broken paste: the bad line by its number, the bad header by its task and line.
    await page.fill('#lifelong-paste', BROKEN.join('\n'));
    await page.waitForSelector('#lifelong-rejected');
    const rejected = (await page.textContent('#lifelong-rejected')).replace(/\s+/g, ' ');
    console.log(`rejected: ${rejected}`);
    assert.match(rejected, /1 rejected lines/);
    assert.match(rejected, /line 4: no separator/);
    const problems = (await page.textContent('#lifelong-problems')).replace(/\s+/g, ' ');
    console.log(`problems: ${problems}`);
    assert.match(problems, new RegExp(`task "poems \\(poetry\\)" \\(line ${BROKEN.length - 1}\\): unknown task type "poetry"`));
    await setField(page, '#lifelong-shots', 2);
    await setField(page, '#lifelong-steps', 4);
    await setField(page, '#lifelong-test', 4);
    await page.click('#lifelong-train');
    await page.waitForSelector('#lifelong-error');
    assert.match(await page.textContent('#lifelong-error'), /unknown task type/);
    await page.screenshot({ path: screenshotPath('lifelong-1-paste'), fullPage: true });

    // 2. The good paste: two tasks of twelve examples, two shots per class to train, two to
    // validate, four to test; LFPT5 against sequential PT.
    await page.fill('#lifelong-paste', PASTE);
    await page.waitForFunction(() => /2 tasks, 24 examples/.test(document.querySelector('#lifelong-tasks')?.textContent ?? ''));
    assert.equal(await page.$$eval('#lifelong-problems li', (l) => l.length), 0);
    await page.selectOption('#lifelong-method-0', 'lfpt5');
    await page.selectOption('#lifelong-method-1', 'sequential');
    await page.click('#lifelong-train');
    await page.waitForSelector('#lifelong-run[data-status="finished"], #lifelong-run[data-status="failed"]', { timeout: 600_000 });
    const run = (await page.textContent('#lifelong-run')).replace(/\s+/g, ' ');
    console.log(`run: ${run}`);
    assert.equal(await page.getAttribute('#lifelong-run', 'data-status'), 'finished', run + log.join('\n'));
    assert.equal(await page.getAttribute('#lifelong-progress', 'value'), '16');

    // Both matrices filled: row 1 one score, row 2 two, and an average each.
    for (const i of [0, 1]) {
      const cells = await page.$$eval(`#lifelong-matrix-${i} tbody tr`, (r) => r.map((x) => [...x.querySelectorAll('td')].map((c) => c.textContent)));
      console.log(`matrix ${i}: ${JSON.stringify(cells)}`);
      assert.equal(cells.length, 2);
      assert.match(cells[0][0], /^\d+\.\d$/);
      assert.equal(cells[0][1], '');
      assert.match(cells[1][0], /^\d+\.\d$/);
      assert.match(cells[1][1], /^\d+\.\d$/);
      assert.match(cells[1][2], /^\d+\.\d$/);
    }
    // LFPT5 wrote pseudo examples of the first task before the second, each with a verdict.
    const pseudo = (await page.textContent('#lifelong-pseudo summary')).replace(/\s+/g, ' ');
    console.log(pseudo);
    assert.match(pseudo, /lfpt5: pseudo examples generated before each task \(\d+ kept of \d+\)/);
    const verdicts = await page.$$eval('#lifelong-pseudo tbody tr td:last-child', (c) => c.map((x) => x.textContent));
    assert.ok(verdicts.length > 0);
    assert.match(await page.textContent('#lifelong-pseudo'), /Imitating reviews: \d+ generated/);
    console.log(`verdicts: ${[...new Set(verdicts)].join('; ')}`);
    assert.equal(await page.$$eval('#lifelong-charts svg', (s) => s.length), 2);
    const final = await page.$$eval('#lifelong-final tbody tr', (r) => r.map((x) => [...x.children].map((c) => c.textContent)));
    console.log(`final: ${JSON.stringify(final)}`);
    assert.deepEqual(final.map((r) => r[0]), ['lfpt5', 'sequential']);
    for (const r of final) {
      assert.match(r[1], /^\d+\.\d$/);
      assert.match(r[2], /^\d+\.\d$/);
      assert.match(r[3], /^reviews \d+\.\d$/);
    }
    await page.screenshot({ path: screenshotPath('lifelong-2-learned'), fullPage: true });

    // 3. LFPT5's classification prompt: PEFT's prompt_embeddings [20, 16] (the tiny model is 16
    // wide; 20 vectors is the default length).
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#lifelong-download-0')]);
    const bytes = fs.readFileSync(await download.path());
    const headerLen = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + headerLen).toString());
    assert.deepEqual(header.prompt_embeddings.shape, [20, 16]);
    assert.match(download.suggestedFilename(), /-lfpt5-classification\.safetensors$/);
    console.log(`downloaded ${download.suggestedFilename()} (${bytes.length} bytes)`);

    // 4. Reload: the paste, the history entry and the open run are all still there.
    await page.reload();
    await page.waitForSelector('#lifelong-history li', { timeout: 60_000 });
    assert.equal(await page.inputValue('#lifelong-paste'), PASTE);
    const entry = (await page.textContent('#lifelong-history li')).replace(/\s+/g, ' ');
    console.log(`history: ${entry}`);
    assert.match(entry, /2 tasks, 2-shot, 4 steps · lfpt5 \d+\.\d vs sequential \d+\.\d average after the last task · Finished/);
    await page.waitForSelector('#lifelong-run[data-status="finished"]');
    assert.equal(await page.$$eval('#lifelong-matrix-0 tbody tr', (r) => r.length), 2);
    assert.ok(await page.$('#lifelong-pseudo'));
    await page.screenshot({ path: screenshotPath('lifelong-3-reloaded'), fullPage: true });
    assertSameOrigin(log);
  } catch (e) {
    console.log(log.join('\n'));
    await page.screenshot({ path: screenshotPath('lifelong-failure'), fullPage: true }).catch(() => {});
    throw e;
  } finally {
    await browser.close();
  }
});

// DMEA against always-expand on two generation tasks: the module map (site x task: the task's
// own module or the earlier one it reuses) is drawn as each task decides, and kept on reload.
const ECHO = ['river', 'stone', 'cloud', 'field', 'bread', 'glass'].map((w) => `repeat: ${w} and more => ${w}`);
const SHOUT = ['apple', 'pear', 'plum', 'lime', 'fig', 'kiwi'].map((w) => `say ${w} loudly => ${w.toUpperCase()}`);
const GENERATION = ['# echo (summarisation)', ...ECHO, '# shout (summarisation)', ...SHOUT].join('\n');

test('learn two generation tasks with DMEA and expand: the module map', async () => {
  const browser = await launchBrowser();
  const page = await browser.newPage();
  const log = watchConsole(page);
  try {
    await loadTinyModel(page, server.url, log);
    await page.fill('#lifelong-paste', GENERATION);
    await page.waitForFunction(() => /2 tasks, 12 examples/.test(document.querySelector('#lifelong-tasks')?.textContent ?? ''));
    await page.selectOption('#lifelong-method-0', 'dmea');
    await page.selectOption('#lifelong-method-1', 'expand');
    await setField(page, '#lifelong-shots', 2);
    await setField(page, '#lifelong-steps', 4);
    await setField(page, '#lifelong-test', 2);
    await page.click('#lifelong-train');
    // The first task's map appears before the run ends: drawn as it is decided.
    await page.waitForSelector('#lifelong-modules-0 tbody tr', { timeout: 600_000 });
    await page.waitForSelector('#lifelong-run[data-status="finished"], #lifelong-run[data-status="failed"]', { timeout: 600_000 });
    const run = (await page.textContent('#lifelong-run')).replace(/\s+/g, ' ');
    console.log(`run: ${run}`);
    assert.equal(await page.getAttribute('#lifelong-run', 'data-status'), 'finished', run + log.join('\n'));
    // DMEA: 4 steps on the first task, 2 of search and 4 of adaptation on the second; expand 4 + 4.
    assert.equal(await page.getAttribute('#lifelong-progress', 'value'), '18');
    const map = async (i) => page.$$eval(`#lifelong-modules-${i} tbody tr`, (r) => r.map((x) => [...x.querySelectorAll('td')].map((c) => c.textContent.trim())));
    const dmea = await map(0);
    const expand = await map(1);
    console.log(`dmea map: ${JSON.stringify(dmea)}`);
    assert.ok(dmea.length > 0);
    assert.equal(expand.length, dmea.length);
    for (const row of dmea) {
      assert.equal(row.length, 2);
      assert.equal(row[0], 'new');
      assert.match(row[1], /^(new|↺ echo)$/);
    }
    assert.ok(expand.every((row) => row.every((c) => c === 'new')));
    const note = (await page.textContent('#lifelong-modules-0 .note')).replace(/\s+/g, ' ');
    console.log(note);
    assert.match(note, /Parameters added per task: [\d.]+k, [\d.]+k\. Task similarity \(cosine of mean encoder states\): shout: echo -?[01]\.\d{3}/);
    await page.locator('#lifelong-modules-0').screenshot({ path: screenshotPath('lifelong-4-module-map') });
    await page.screenshot({ path: screenshotPath('lifelong-5-dmea'), fullPage: true });
    await page.reload();
    await page.waitForSelector('#lifelong-run[data-status="finished"]', { timeout: 60_000 });
    assert.deepEqual(await map(0), dmea);
    assertSameOrigin(log);
  } catch (e) {
    console.log(log.join('\n'));
    await page.screenshot({ path: screenshotPath('lifelong-dmea-failure'), fullPage: true }).catch(() => {});
    throw e;
  } finally {
    await browser.close();
  }
});
