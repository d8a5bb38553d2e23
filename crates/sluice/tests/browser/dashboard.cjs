// Opens sluice's dashboard in headless Chromium and checks what a user would: the stream is
// listed, its player plays, a client's Drop button drops it. Prints one JSON line:
// {ok, listed, advanced, player, dropped, escaped, asked_token, notice, errors, progress};
// `player` is what the player says it plays (`HLS`, `HTTP-FLV`); `errors` has the page's
// console errors and uncaught exceptions.
// Usage: node dashboard.cjs PAGE_URL APP/NAME SCREENSHOT_PNG
// Env: BROWSER_MODULES (node_modules holding playwright-core), CHROMIUM (default
//      /usr/bin/chromium), DASHBOARD_TIMEOUT_MS (per step; default 40000), DASHBOARD_DROP
//      (`0`: no client to drop, skip that step), DASHBOARD_TOKEN (the page must ask for the API
//      token: give it this one), DASHBOARD_REFUSED (`1`: the API refuses the page; wait for the
//      page to say so in its notice, and stop there).
const path = require('path');
const { chromium } = require(path.join(process.env.BROWSER_MODULES, 'playwright-core'));

const [url, stream, screenshot] = process.argv.slice(2);
const timeout = Number(process.env.DASHBOARD_TIMEOUT_MS || 40000);
const drop = process.env.DASHBOARD_DROP !== '0';
const token = process.env.DASHBOARD_TOKEN;
const refused = process.env.DASHBOARD_REFUSED === '1';

(async () => {
  const errors = [];
  const result = { ok: false, listed: false, advanced: 0, dropped: null, escaped: false, errors, progress: 'start' };
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--autoplay-policy=no-user-gesture-required',
    ],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
    // The first few are enough to say what went wrong.
    const error = (text) => { if (errors.length < 10) errors.push(text.slice(0, 500)); };
    // Asking for the token, the page's requests were answered 401: those the browser logs are
    // expected; so are the 403s of a refused page.
    const expected = (text) => (token && / status of 401 /.test(text)) || (refused && / status of 403 /.test(text));
    page.on('console', (m) => { if (m.type() === 'error' && !expected(m.text())) error(`console: ${m.text()}`); });
    page.on('pageerror', (e) => error(`exception: ${e}`));
    page.on('dialog', (d) => { error(`dialog: ${d.message()}`); d.dismiss(); });
    await page.goto(url);

    if (refused) {
      result.progress = 'waiting for the page to say the API refused it';
      await page.waitForSelector('#notice:not([hidden])', { timeout });
      result.notice = await page.textContent('#notice');
      await page.screenshot({ path: screenshot, fullPage: true });
      result.progress = 'done';
      result.ok = true;
      return;
    }
    if (token) {
      result.progress = 'waiting for the page to ask for the API token';
      await page.waitForSelector('#token-form:not([hidden])', { timeout });
      result.asked_token = true;
      await page.fill('#token', token);
      await page.click('#token-form button[type=submit]');
    }

    result.progress = 'waiting for the stream to be listed';
    const card = `article.stream[data-stream="${stream}"]`;
    await page.waitForSelector(card, { timeout });
    result.listed = (await page.textContent(`${card} .name`)) === stream;

    // The player's clock moves: it plays, not just loads.
    result.progress = 'waiting for the player to play';
    const video = `${card} video`;
    await page.waitForFunction((sel) => document.querySelector(sel).currentTime > 0, video, { timeout, polling: 200 });
    const start = await page.$eval(video, (v) => v.currentTime);
    await page.waitForFunction(([sel, t]) => document.querySelector(sel).currentTime >= t + 3, [video, start],
      { timeout, polling: 200 });
    result.advanced = (await page.$eval(video, (v) => v.currentTime)) - start;
    result.player = await page.textContent(`${card} .player-state`);
    if (!drop) {
      await page.screenshot({ path: screenshot, fullPage: true });
      result.escaped = true;
      result.progress = 'done';
      result.ok = result.listed && result.advanced >= 3;
      return;
    }

    // Client text (the RTMP player's flashVer) is shown as text, never parsed as HTML.
    result.progress = 'waiting for an RTMP player in the clients table';
    const playerRow = await page.waitForFunction(() => [...document.querySelectorAll('#clients tbody tr')]
      .find((tr) => tr.cells[2].textContent === 'rtmp' && tr.cells[3].textContent === 'player'),
    null, { timeout, polling: 200 });
    result.escaped = await page.evaluate(() => !window.__xss && !document.querySelector('#clients img'));
    await page.screenshot({ path: screenshot, fullPage: true });

    result.progress = 'dropping the player';
    const id = await playerRow.evaluate((tr) => tr.dataset.clientId);
    await page.click(`#clients tr[data-client-id="${id}"] button.drop`);
    await page.waitForFunction((i) => !document.querySelector(`#clients tr[data-client-id="${i}"]`), id,
      { timeout, polling: 200 });
    // Polling brings the list back from the API: the client must stay gone.
    await page.waitForTimeout(2500);
    const back = await page.$(`#clients tr[data-client-id="${id}"]`);
    result.dropped = back ? null : Number(id);
    result.notice = await page.$eval('#notice', (n) => (n.hidden ? '' : n.textContent));
    result.progress = 'done';
    result.ok = result.listed && result.advanced >= 3 && result.dropped !== null && result.escaped;
  } catch (e) {
    result.error = String(e).slice(0, 1000);
  } finally {
    await browser.close();
    console.log(JSON.stringify(result));
  }
})().catch((e) => {
  console.log(JSON.stringify({ ok: false, error: String(e) }));
  process.exit(1);
});
