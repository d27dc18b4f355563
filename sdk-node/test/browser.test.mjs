// examples/web-store.mjs in a real browser: Debian's Chromium, headless, driven by puppeteer-core
// over the DevTools protocol. A person's path through the page: pick a file in the form, upload
// it, read the object id and replication state the page shows, click the download link and get
// the same bytes back. A screenshot of the page is kept as a test artifact.
//
// Chromium is /usr/bin/chromium (deploy/setup.sh test installs it) or MEHR_CHROMIUM. Without it
// the test is skipped, saying why, unless MEHR_BROWSER_STRICT=1 (tests/run.sh sets it, so CI
// fails instead). Artifacts go to $MEHR_TEST_ARTIFACTS, else sdk-node/test-artifacts/ (ignored
// by git).
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

import { Daemon, workdir } from './daemon.mjs';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const chromium = process.env.MEHR_CHROMIUM || '/usr/bin/chromium';
const strict = process.env.MEHR_BROWSER_STRICT === '1';
const chromiumMissing = existsSync(chromium)
  ? false
  : `no Chromium at ${chromium} (deploy/setup.sh test installs Debian's chromium; MEHR_CHROMIUM points elsewhere)`;

/** Waits until `dir` holds `name` completely written (Chromium renames its .crdownload at the end). */
async function downloaded(dir, name, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const names = readdirSync(dir);
    if (names.includes(name) && !names.some((entry) => entry.endsWith('.crdownload'))) return join(dir, name);
    await sleep(50);
  }
  throw new Error(`no download of ${name} in ${dir} after ${timeoutMs} ms (found: ${readdirSync(dir).join(', ') || 'nothing'})`);
}

test('examples/web-store.mjs in headless Chromium: upload through the form, id and replication shown, download back', {
  timeout: 120_000,
  skip: !strict && chromiumMissing,
}, async () => {
  assert.ok(!chromiumMissing, `${chromiumMissing}; MEHR_BROWSER_STRICT=1 makes this a failure`);
  const { default: puppeteer } = await import('puppeteer-core');
  const { startWebApp } = await import('../examples/web-store.mjs');
  const { connect } = await import('@mehr/sdk');

  const dir = workdir();
  const artifacts = process.env.MEHR_TEST_ARTIFACTS || join(root, 'test-artifacts');
  mkdirSync(artifacts, { recursive: true });
  const downloads = join(dir, 'downloads');
  mkdirSync(downloads);
  // Not a multiple of the SDK's chunk size, and bytes that are not all alike.
  const upload = join(dir, 'holiday photo.jpg');
  const body = Buffer.alloc(2 * 1024 * 1024 + 123);
  for (let i = 0; i < body.length; i++) body[i] = (i * 31 + (i >> 11)) & 0xff;
  writeFileSync(upload, body);

  const daemon = await Daemon.start(dir, 'web');
  const client = await connect({ dataDir: daemon.dataDir });
  const server = await startWebApp(client, 0);
  // CI runs as root, where Chromium's sandbox cannot start; /dev/shm is small in containers.
  const browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true, // puppeteer passes --headless=new
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
  try {
    const page = await browser.newPage();
    page.setDefaultTimeout(30_000);
    await page.setViewport({ width: 900, height: 600 });
    const base = `http://127.0.0.1:${/** @type {import('node:net').AddressInfo} */ (server.address()).port}`;
    await page.goto(`${base}/`, { waitUntil: 'load' });
    assert.equal(await page.title(), 'MHR-Store');

    const input = await page.$('#file');
    assert.ok(input, 'the page has a file input');
    await input.uploadFile(upload);
    await page.click('#upload button');
    await page.waitForSelector('#result:not([hidden])');

    const objectId = await page.$eval('#object-id', (element) => element.textContent);
    const size = await page.$eval('#object-size', (element) => element.textContent);
    const replication = await page.$eval('#replication', (element) => element.textContent);
    const progress = await page.$eval('#progress', (element) => element.textContent);
    assert.match(objectId ?? '', /^[0-9a-f]{64}$/);
    assert.equal(size, `${body.length} bytes`);
    assert.equal(progress, 'stored');
    // One node, nothing replicated yet: the page says so (the daemon's stat agrees).
    const status = await client.stat(objectId ?? '');
    assert.equal(status.replication ?? null, null);
    assert.equal(replication, 'held on this node only (not replicated)');
    assert.equal(status.object.name, 'holiday photo.jpg');
    assert.equal(status.object.length, body.length);

    const screenshot = join(artifacts, 'web-store.png');
    await page.screenshot({ path: screenshot, fullPage: true });
    console.log(`screenshot of the web-store page: ${screenshot}`);

    // The download link, clicked as a person would: Chromium saves it under the name the server
    // gave in content-disposition.
    const devtools = await browser.target().createCDPSession();
    await devtools.send('Browser.setDownloadBehavior', { behavior: 'allow', downloadPath: downloads });
    await page.click('#download');
    const saved = await downloaded(downloads, 'holiday_photo.jpg', 30_000);
    assert.ok(readFileSync(saved).equals(body), 'the downloaded bytes are the uploaded bytes');
  } finally {
    await browser.close();
    server.close();
    await daemon.stop();
  }
});
