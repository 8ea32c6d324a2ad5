// The Relations section on the tiny random T5 (`metaprompt tiny-model`, served at models/tiny/):
// paste a stream of three tasks with bad lines and see each named with its line, learn it with
// ERDA and the nearest-class-mean baseline, see the forgetting curves, the per-task table and the
// sentences ERDA retrieved from the pool, score a typed sentence, download a head, reload and
// find the paste and the run again. Screenshots land in tests/e2e/out/.
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

const PEOPLE = ['Ada Lovelace', 'Alan Turing', 'Grace Hopper', 'Emmy Noether', 'Kurt Gödel', 'Marie Curie'];
const CITIES = ['London', 'Paris', 'Vienna', 'Berlin', 'Rome', 'Madrid'];
const FIRMS = ['Acme', 'Globex', 'Initech', 'Umbrella', 'Hooli', 'Stark'];
const COUNTRIES = ['England', 'France', 'Austria', 'Germany', 'Italy', 'Spain'];
const BOOKS = ['Dune', 'Emma', 'Ulysses', 'Beloved', 'Hamlet', 'Walden'];
const AUTHORS = ['Herbert', 'Austen', 'Joyce', 'Morrison', 'Shakespeare', 'Thoreau'];
const PAINTINGS = ['Sunflowers', 'Guernica', 'The Kiss', 'Olympia', 'Las Meninas', 'The Scream'];
const PAINTERS = ['Van Gogh', 'Picasso', 'Klimt', 'Manet', 'Velázquez', 'Munch'];

const rel = (heads, tails, make, relation) => heads.map((h, i) => `${make(`[[${h}]]`, `<<${tails[i]}>>`)}\t${relation}`);

// Three tasks of two relations (six entity pairs each), bad lines among them, then a pool.
const LINES = [
  '# people',
  ...rel(PEOPLE, CITIES, (h, t) => `${h} was born in ${t}.`, 'born in'),
  '[[Ada Lovelace]] met <<Charles Babbage>> in London.',
  ...rel(PEOPLE, FIRMS, (h, t) => `${h} worked for ${t} for years.`, 'works for'),
  'nobody is marked in this sentence\tworks for',
  '# places',
  ...rel(CITIES, COUNTRIES, (h, t) => `${h} is the capital of ${t}.`, 'capital of'),
  `[[Alan Turing]] was born in <<Maida Vale>>.\tborn in`,
  ...rel(FIRMS, CITIES, (h, t) => `${h} has its head office in ${t}.`, 'based in'),
  '[[Paris]] is the capital of <<France>>.\tcapital of',
  '[[Ringo]] sings with <<Paul>>.\tsings with',
  '# art',
  ...rel(BOOKS, AUTHORS, (h, t) => `${h} was written by ${t}.`, 'written by'),
  ...rel(PAINTINGS, PAINTERS, (h, t) => `${h} was painted by ${t}.`, 'painted by'),
  '# pool',
  ...CITIES.map((c, i) => `[[${c}]] lies in <<${COUNTRIES[i]}>>, its largest city.`),
  ...FIRMS.map((f, i) => `[[${f}]] moved its staff to <<${CITIES[i]}>>.`),
  ...BOOKS.map((b, i) => `[[${b}]] made <<${AUTHORS[i]}>> famous.`),
  ...PAINTINGS.map((p, i) => `[[${p}]] is the best known work of <<${PAINTERS[i]}>>.`),
];
const PASTE = LINES.join('\n');
const lineOf = (prefix) => LINES.findIndex((l) => l.startsWith(prefix)) + 1;
const lastLineOf = (prefix) => LINES.findLastIndex((l) => l.startsWith(prefix)) + 1;

test('paste a relation stream, learn it with ERDA and NCM, try, download, reload', async () => {
  const browser = await launchBrowser();
  const context = await browser.newContext({ acceptDownloads: true });
  const page = await context.newPage();
  const log = watchConsole(page);
  try {
    await loadTinyModel(page, server.url, log);

    // 1. The paste: four rejected lines, each with its line number, and one relation left out.
    await page.fill('#relations-paste', PASTE);
    await page.waitForSelector('#relations-rejected');
    const rejected = (await page.textContent('#relations-rejected')).replace(/\s+/g, ' ');
    console.log(`rejected: ${rejected}`);
    assert.match(rejected, /4 rejected lines/);
    assert.match(rejected, new RegExp(`line ${lineOf('[[Ada Lovelace]] met')}: no relation`));
    assert.match(rejected, new RegExp(`line ${lineOf('nobody is marked')}: no head entity marked`));
    assert.match(rejected, new RegExp(`line ${lineOf('[[Alan Turing]] was born in <<Maida')}: relation "born in" belongs to task "people"`));
    assert.match(rejected, new RegExp(`line ${lastLineOf('[[Paris]] is the capital')}: duplicate of line ${lineOf('[[Paris]] is the capital')}`));
    const dropped = (await page.textContent('#relations-dropped')).replace(/\s+/g, ' ');
    assert.match(dropped, /relation "sings with" \(line \d+\) has one example/);
    const summary = (await page.textContent('#relations-summary')).replace(/\s+/g, ' ');
    console.log(`summary: ${summary}`);
    assert.match(summary, /3 tasks, 6 relations, 36 examples/);
    await page.screenshot({ path: screenshotPath('relations-1-paste'), fullPage: true });

    // 2. Learn it: ERDA against NCM, two examples per relation from the second task on.
    await page.selectOption('#relations-method-0', 'erda');
    await page.selectOption('#relations-method-1', 'ncm');
    await setField(page, '#relations-shots', 2);
    await page.click('#relations-train');
    await page.waitForSelector('#relations-run[data-status="finished"], #relations-run[data-status="failed"]', { timeout: 300_000 });
    const run = (await page.textContent('#relations-run')).replace(/\s+/g, ' ');
    console.log(`run: ${run}`);
    assert.equal(await page.getAttribute('#relations-run', 'data-status'), 'finished', run + log.join('\n'));
    assert.match(run, /encoded \d+ sentences/);
    const rows = await page.$$eval('#relations-table tbody tr', (r) => r.map((x) => x.textContent.replace(/\s+/g, ' ')));
    console.log(`table: ${rows.join(' | ')}`);
    assert.equal(rows.length, 3);
    assert.deepEqual(await page.$$eval('#relations-table tbody tr td:nth-child(3)', (c) => c.map((x) => Number(x.textContent))), [2, 4, 6]);
    for (const r of rows) assert.equal((r.match(/%/g) ?? []).length, 4, r);
    assert.equal(await page.$$eval('#relations-charts svg', (s) => s.length), 2);
    assert.ok(await page.$$eval('#relations-charts path.series-a', (p) => p.every((x) => x.getAttribute('d').includes('L'))));
    const augmented = await page.textContent('#relations-augmented summary');
    console.log(augmented);
    assert.match(augmented, /erda: \d+ sentences retrieved from the pool/);
    // ERDA's memory: one sentence per relation seen (NCM keeps none).
    assert.equal(await page.$$eval('details.memory', (d) => d.length), 1);
    assert.equal(await page.$$eval('details.memory tbody tr', (r) => r.length), 6);
    await page.screenshot({ path: screenshotPath('relations-2-learned'), fullPage: true });

    // 3. Try a sentence: both methods score the six relations; an unmarked one is refused.
    await page.fill('#relations-try-input', '[[Dune]] was written by <<Frank Herbert>>.');
    await page.click('#relations-try-run');
    await page.waitForSelector('#relations-try-result table');
    assert.equal(await page.$$eval('#relations-try-result table', (t) => t.length), 2);
    assert.equal(await page.$$eval('#relations-try-result table:first-child tbody tr', (t) => t.length), 6);
    await page.fill('#relations-try-input', 'no marks here');
    await page.click('#relations-try-run');
    await page.waitForSelector('#relations-try-result .error');
    assert.match(await page.textContent('#relations-try-result'), /no head entity marked/);

    // 4. ERDA's head: prototypes [6, 256], weight [256, 32] (the tiny model is 16 wide: head and
    // tail states concatenated), bias [256].
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#relations-download-0')]);
    const bytes = fs.readFileSync(await download.path());
    const headerLen = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + headerLen).toString());
    assert.deepEqual(header.prototypes.shape, [6, 256]);
    assert.deepEqual(header.weight.shape, [256, 32]);
    assert.deepEqual(header.bias.shape, [256]);
    assert.equal(header.__metadata__.method, 'erda');
    console.log(`downloaded ${download.suggestedFilename()} (${bytes.length} bytes)`);

    // 5. Reload: the paste, the history entry and the open run are all still there.
    await page.reload();
    await page.waitForSelector('#relations-history li', { timeout: 60_000 });
    assert.equal(await page.inputValue('#relations-paste'), PASTE);
    const entry = (await page.textContent('#relations-history li')).replace(/\s+/g, ' ');
    console.log(`history: ${entry}`);
    assert.match(entry, /3 tasks, 6 relations, 2-shot · erda \d+\.\d% vs ncm \d+\.\d%/);
    await page.waitForSelector('#relations-run[data-status="finished"]');
    assert.equal(await page.$$eval('#relations-table tbody tr', (r) => r.length), 3);
    await page.screenshot({ path: screenshotPath('relations-3-reloaded'), fullPage: true });
    assertSameOrigin(log);
  } catch (e) {
    console.log(log.join('\n'));
    await page.screenshot({ path: screenshotPath('relations-failure'), fullPage: true }).catch(() => {});
    throw e;
  } finally {
    await browser.close();
  }
});
