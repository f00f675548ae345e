/**
 * The inspection page in a real headless Chromium (Debian's chromium driven
 * by playwright-core), against a real server with the bottle store:
 * upload a defective bottle and see DEFECT with its heat map; mark a good
 * image as normal (keyboard only) and see the template count rise; upload a
 * corrupt file and see the error in words. HETMM_PAGE_SCREENSHOT=FILE saves
 * a screenshot there (docs/serving-page.png is made this way); otherwise it
 * goes to the temp directory. HETMM_CHROMIUM overrides /usr/bin/chromium.
 */
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { TemplateStore } from '../src/store/index.js';
import { tempDir } from './helpers/io-paths.js';
import { bottleBroken, bottleGood, fitBottleStore, readImage, startServer, TEST_TOKEN, type RunningServer } from './helpers/server.js';

const chromiumPath = process.env.HETMM_CHROMIUM ?? '/usr/bin/chromium';
const tmp = tempDir('server-page');
const storeFile = path.join(tmp, 'bottle.hetmm');
let server: RunningServer;
let browser: BrowserContext;
let page: Page;
const consoleErrors: string[] = [];

before(async () => {
  assert.ok(existsSync(chromiumPath), `Chromium not found at ${chromiumPath}: apt-get install chromium (or set HETMM_CHROMIUM)`);
  await fitBottleStore(storeFile);
  server = await startServer({ stores: [storeFile], token: TEST_TOKEN });
  browser = await chromium.launchPersistentContext(tempDir('chromium'), {
    executablePath: chromiumPath,
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  page = await browser.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(m.text());
  });
  // the page may only talk to this server
  await page.route('**/*', (route) => (route.request().url().startsWith(server.base) || route.request().url().startsWith('data:') || route.request().url().startsWith('blob:') ? route.continue() : route.abort()));
  await page.goto(`${server.base}/`);
  await page.waitForSelector('#line option', { state: 'attached' });
});

after(async () => {
  await browser?.close();
  await server?.close();
});

describe('inspection page in headless Chromium', () => {
  it('shows DEFECT and the heat map for a defective bottle', async () => {
    assert.equal(await page.textContent('#info-templates'), '5');
    await page.setInputFiles('#file', bottleBroken[0]!);
    await page.waitForFunction(() => document.getElementById('verdict')?.textContent === 'DEFECT', null, { timeout: 60_000 });
    assert.match((await page.textContent('#score-text'))!, /score 0\.\d{4} against threshold 0\.\d{4}/);
    const heatmap = await page.waitForFunction(() => {
      const img = document.getElementById('result-heatmap') as HTMLImageElement;
      return img.complete && img.naturalWidth > 0 ? { width: img.naturalWidth, src: img.src.slice(0, 22) } : false;
    });
    assert.deepEqual(await heatmap.jsonValue(), { width: 256, src: 'data:image/png;base64,' });
    assert.equal(await page.locator('#cards li').count(), 1);
  });

  it('marks a good image as normal (keyboard only) and shows the template count rise', async () => {
    await page.fill('#token', TEST_TOKEN);
    await page.dispatchEvent('#token', 'change');
    await page.setInputFiles('#file', bottleGood[3]!);
    await page.waitForFunction(() => document.querySelectorAll('#cards li').length === 2, null, { timeout: 60_000 });
    await page.focus('#mark');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => document.getElementById('info-templates')?.textContent === '6', null, { timeout: 60_000 });
    assert.match((await page.textContent('#mark-status'))!, /now has 6 templates \(was 5\)/);
    assert.equal(await page.textContent('#mark'), 'Marked as normal');
    assert.ok(await page.isDisabled('#mark'), 'an image is added once');
    assert.equal((await TemplateStore.load(storeFile)).count, 6, 'the store on disk has it');
  });

  it('says in words what is wrong with a corrupt upload, and keeps working', async () => {
    const corrupt = path.join(tmp, 'corrupt.png');
    writeFileSync(corrupt, readImage(bottleGood[0]!).subarray(0, 3000));
    await page.setInputFiles('#file', corrupt);
    await page.waitForSelector('#error:not([hidden])', { timeout: 60_000 });
    const text = (await page.textContent('#error-text'))!;
    assert.match(text, /Could not inspect “corrupt\.png”: This file is not an image the server can read/);
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'error', 'the error takes the focus');
    // the filter and the gallery keep working: show the defect again
    await page.click('#error-close');
    await page.check('input[name="filter"][value="defect"]');
    assert.equal(await page.locator('#cards li').count(), 1);
    await page.click('#cards li button');
    assert.equal(await page.textContent('#verdict'), 'DEFECT');
    await page.check('input[name="filter"][value="all"]');
    await page.waitForFunction(() => (document.getElementById('result-heatmap') as HTMLImageElement).complete);
    await page.screenshot({ path: process.env.HETMM_PAGE_SCREENSHOT ?? path.join(tmp, 'page.png'), fullPage: true });
    assert.deepEqual(consoleErrors.filter((e) => !/status of 422/.test(e)), []);
  });
});

describe('inspection page with the inspection record (issue 21, observations 3 and 4)', () => {
  it("shows a camera's prediction with its heat map, and the gallery survives a reload", async () => {
    const { openRecord } = await import('../src/record/index.js');
    const dir = tempDir('server-page-record');
    await fitBottleStore(path.join(dir, 'bottle.hetmm'), 3);
    const record = (await openRecord({ dataDir: dir }))!;
    const camera = await startServer({ dataDir: dir, token: TEST_TOKEN, record });
    const other = await browser.newPage();
    try {
      // a camera posts through the API and asks for no maps
      const posted = await fetch(`${camera.base}/v1/lines/bottle/predict?name=cam-1.png`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: new Uint8Array(readImage(bottleBroken[1]!)) });
      assert.equal(posted.status, 200, await posted.clone().text());
      await other.goto(`${camera.base}/#bottle`);
      for (let pass = 0; pass < 2; pass++) {
        await other.waitForFunction(() => document.querySelectorAll('#cards li').length === 1, null, { timeout: 30_000 });
        assert.match((await other.textContent('#cards li'))!, /DEFECT .*cam-1\.png/);
        await other.click('#cards li button');
        const heatmap = await other.waitForFunction(() => {
          const img = document.getElementById('result-heatmap') as HTMLImageElement;
          return img.complete && img.naturalWidth > 0 ? img.naturalWidth : false;
        }, null, { timeout: 30_000 });
        assert.ok(((await heatmap.jsonValue()) as number) > 0, 'the heat map shows');
        await other.reload();
      }
    } finally {
      await other.close();
      await camera.close();
      await record.close();
    }
  });
});
