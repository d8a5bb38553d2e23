// Plays HLS test pages in headless Chromium, all at once in one browser, and prints one JSON line
// per page, in the order given, with what happened (the page's window.hlsResult).
// Usage: node play.cjs PAGE_URL...
// Env: BROWSER_MODULES (node_modules holding playwright-core), CHROMIUM (default /usr/bin/chromium),
//      PLAY_TIMEOUT_MS (how long a page may take to set its result; default 60000).
const path = require('path');
const { chromium } = require(path.join(process.env.BROWSER_MODULES, 'playwright-core'));

const timeout = Number(process.env.PLAY_TIMEOUT_MS || 60000);

async function play(browser, url, n) {
  let page;
  try {
    page = await browser.newPage();
    page.on('console', (m) => process.stderr.write(`page ${n} console: ${m.text().slice(0, 1000)}\n`));
    page.on('pageerror', (e) => process.stderr.write(`page ${n} error: ${e}\n`));
    await page.goto(url);
    const result = await page.waitForFunction(() => window.hlsResult, null, { timeout, polling: 200 });
    return await result.jsonValue();
  } catch (e) {
    // Where it got to, if the page says (window.hlsProgress).
    const progress = page ? await page.evaluate(() => window.hlsProgress).catch(() => null) : null;
    return { ok: false, error: String(e), progress };
  }
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--autoplay-policy=no-user-gesture-required',
      // Pages in background tabs must keep their timers and decoders running.
      '--disable-background-timer-throttling', '--disable-renderer-backgrounding',
      '--disable-backgrounding-occluded-windows',
    ],
  });
  try {
    const urls = process.argv.slice(2);
    const results = await Promise.all(urls.map((u, i) => play(browser, u, i)));
    for (const r of results) console.log(JSON.stringify(r));
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.log(JSON.stringify({ ok: false, error: String(e) }));
  process.exit(1);
});
