// Plays an HLS URL with hls.js in headless Chromium and prints one JSON line with what happened.
// Usage: node play.cjs PAGE_URL
// Env: BROWSER_MODULES (node_modules holding playwright-core), CHROMIUM (default /usr/bin/chromium).
const path = require('path');
const { chromium } = require(path.join(process.env.BROWSER_MODULES, 'playwright-core'));

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--autoplay-policy=no-user-gesture-required',
    ],
  });
  try {
    const page = await browser.newPage();
    page.on('console', (m) => process.stderr.write(`console: ${m.text()}\n`));
    page.on('pageerror', (e) => process.stderr.write(`page error: ${e}\n`));
    await page.goto(process.argv[2]);
    const result = await page.waitForFunction(() => window.hlsResult, null, { timeout: 60000, polling: 200 });
    console.log(JSON.stringify(await result.jsonValue()));
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.log(JSON.stringify({ ok: false, error: String(e) }));
  process.exit(1);
});
