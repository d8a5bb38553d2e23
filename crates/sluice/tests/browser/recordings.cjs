// Opens sluice's dashboard in headless Chromium, waits for FILE in its Recordings section,
// presses its Watch button and waits for the recording to play a second. Prints one JSON line:
// {ok, listed, played, state, errors, progress}.
// Usage: node recordings.cjs DASHBOARD_URL FILE
// Env: BROWSER_MODULES (node_modules holding playwright-core), CHROMIUM (default
//      /usr/bin/chromium), PLAY_TIMEOUT_MS (per step; default 40000).
const path = require('path');
const { chromium } = require(path.join(process.env.BROWSER_MODULES, 'playwright-core'));

const [url, file] = process.argv.slice(2);
const timeout = Number(process.env.PLAY_TIMEOUT_MS || 40000);

(async () => {
  const errors = [];
  const result = { ok: false, listed: false, played: 0, errors, progress: 'start' };
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--autoplay-policy=no-user-gesture-required'],
  });
  try {
    const page = await browser.newPage();
    page.on('console', (m) => { if (m.type() === 'error' && errors.length < 10) errors.push(m.text().slice(0, 500)); });
    page.on('pageerror', (e) => { if (errors.length < 10) errors.push(`exception: ${e}`); });
    await page.goto(url);
    result.progress = 'waiting for the recording to be listed';
    const row = page.locator('#recordings tbody tr', { hasText: file });
    await row.first().waitFor({ timeout });
    result.listed = true;
    result.progress = 'pressing Watch';
    await row.first().locator('button').click();
    result.progress = 'waiting for it to play';
    await page.waitForFunction(
      () => { const v = document.querySelector('#recording-player video'); return v && v.currentTime > 1; },
      null, { timeout, polling: 200 });
    result.played = await page.evaluate(() => document.querySelector('#recording-player video').currentTime);
    result.state = await page.textContent('#recording-player .player-state');
    result.progress = 'done';
    result.ok = true;
  } catch (e) {
    result.error = String(e);
  } finally {
    await browser.close();
    console.log(JSON.stringify(result));
  }
})();
