/**
 * harness.js — what every end-to-end test shares: the real server binary started on a free
 * loopback port with a random secret, tokens minted by that binary, Debian's Chromium driven
 * by playwright-core, and the artifacts (screenshots, server logs) in test-artifacts/.
 *
 * A test is written as `e2e(name, async (scene) => {...})`. The scene owns every process and
 * browser the test starts and closes them whatever happens; on failure it first screenshots
 * every open page, so test-artifacts/ shows what the browser saw.
 *
 * Every wait is bounded (WAIT_MS, or RECONNECT_WAIT_MS where a client's reconnect backoff is
 * part of what is measured) and waits for a state (a DOM selector, a readyz answer, a process
 * exit), never for a fixed time.
 *
 * Environment: INVIGIL_BIN (default target/debug/invigil under the repo root),
 * CHROMIUM (default /usr/bin/chromium), INVIGIL_E2E_WEB=disk (see WEB_FROM_DISK).
 */

import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import test from 'node:test';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = path.resolve(REPO, process.env.INVIGIL_BIN || 'target/debug/invigil');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const ARTIFACTS = path.join(REPO, 'test-artifacts');
/**
 * The server embeds web/ when it is compiled. With INVIGIL_E2E_WEB=disk the browser is served
 * the pages from web/ on disk instead (everything else still goes to the server), so that
 * front-end edits can be tested without rebuilding the server. By default the tests check what
 * the binary really serves.
 */
export const WEB_FROM_DISK = process.env.INVIGIL_E2E_WEB === 'disk';
const WEB_DIR = path.join(REPO, 'web');
const CONTENT_TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.png': 'image/png', '.svg': 'image/svg+xml' };

/** The bound of an ordinary wait for the page to reflect an event. */
export const WAIT_MS = 10_000;
/** Reconnects follow a backoff of 0.5 s doubling (with jitter): allow a few rounds. */
export const RECONNECT_WAIT_MS = 25_000;

const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** Every server still running, so that a runner dying mid-test does not leave them behind. */
const running = new Set();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** Defines one end-to-end test with its scene. */
export function e2e(name, fn, { timeout = 120_000 } = {}) {
  test(name, { timeout }, async () => {
    const scene = new Scene(slug(name));
    try {
      await fn(scene);
      await scene.snapAll('end');
      // An uncaught exception in a page is a bug even when the test's checks passed.
      assert.deepEqual(scene.pageErrors, [], 'uncaught errors in the pages');
    } catch (err) {
      await scene.snapAll('FAILED');
      throw err;
    } finally {
      await scene.close();
    }
  });
}

/** A free TCP port on 127.0.0.1: bind port 0, read the port, close. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

export class Scene {
  constructor(name) {
    this.name = name;
    this.servers = [];
    this.pages = new Map(); // label -> page
    /** Uncaught exceptions thrown in any page: "label: message". */
    this.pageErrors = [];
    this.browser = null;
    fs.mkdirSync(ARTIFACTS, { recursive: true });
  }

  /**
   * Starts `invigil serve` and waits for /readyz 200. Pass a previous server's `{port, secret,
   * apiKey, cwd}` to start it again "the same" (the restart test); `env` adds settings
   * (INVIGIL_<SECTION>__<KEY>).
   */
  async startServer(same = {}, { env = {} } = {}) {
    if (!fs.existsSync(BIN)) {
      throw new Error(`invigil binary not found at ${BIN}: build it (cargo build) or set INVIGIL_BIN`);
    }
    const server = new Server({
      port: same.port ?? (await freePort()),
      secret: same.secret ?? crypto.randomBytes(32).toString('hex'),
      apiKey: same.apiKey ?? crypto.randomBytes(16).toString('hex'),
      // Its own working directory, so that any file the server writes stays out of the repo
      // and a restart finds what the previous run left.
      cwd: same.cwd ?? fs.mkdtempSync(path.join(os.tmpdir(), 'invigil-e2e-')),
      log: path.join(ARTIFACTS, `${this.name}-server-${this.servers.length + 1}.log`),
      extraEnv: { ...(same.extraEnv || {}), ...env },
    });
    this.servers.push(server);
    await server.start();
    return server;
  }

  async launch() {
    if (!this.browser) {
      if (!fs.existsSync(CHROMIUM)) {
        throw new Error(`Chromium not found at ${CHROMIUM}: apt-get install -y chromium, or set CHROMIUM`);
      }
      // A response fulfilled by Playwright has no address space of its own, so Chromium's
      // local-network checks would block its page from reaching the server on 127.0.0.1.
      const args = WEB_FROM_DISK ? [...CHROMIUM_ARGS, '--disable-features=LocalNetworkAccessChecks'] : CHROMIUM_ARGS;
      this.browser = await chromium.launch({ executablePath: CHROMIUM, args });
    }
    return this.browser;
  }

  /** A new page in its own browser context (own storage), remembered under `label`. */
  async page(label, { viewport = { width: 1280, height: 800 } } = {}) {
    const browser = await this.launch();
    const context = await browser.newContext({ viewport });
    if (WEB_FROM_DISK) await context.route(isWebAsset, serveFromDisk);
    const page = await context.newPage();
    page.setDefaultTimeout(WAIT_MS);
    const logs = [];
    page.on('console', (msg) => logs.push(`[${msg.type()}] ${msg.text()}`));
    page.on('pageerror', (err) => {
      logs.push(`[pageerror] ${err.message}`);
      this.pageErrors.push(`${label}: ${err.message}`);
    });
    page.consoleLogs = logs;
    this.pages.set(label, page);
    return page;
  }

  /** The proctor dashboard, waited for until it is live. */
  async dashboard(server, token, opts) {
    const page = await this.page('dashboard', opts);
    await page.goto(`${server.url}/?token=${encodeURIComponent(token)}`);
    await page.waitForSelector('#conn-state[data-state="live"]');
    return page;
  }

  /** The demo exam page for one student, waited for until it reports live. */
  async student(label, server, token) {
    const page = await this.page(label, { viewport: { width: 900, height: 800 } });
    await page.goto(`${server.url}/demo?token=${encodeURIComponent(token)}`);
    await page.waitForSelector('#student-conn[data-state="live"]');
    return page;
  }

  async closePage(label) {
    const page = this.pages.get(label);
    this.pages.delete(label);
    if (page) await page.context().close();
  }

  /** Screenshots one page into test-artifacts/<test>-<label>-<tag>.png. */
  async snap(label, tag) {
    const page = this.pages.get(label);
    await page.screenshot({ path: path.join(ARTIFACTS, `${this.name}-${label}-${tag}.png`), animations: 'disabled' });
  }

  /** Screenshots every open page into test-artifacts/<test>-<page>-<tag>.png. */
  async snapAll(tag) {
    for (const [label, page] of this.pages) {
      if (page.isClosed()) continue;
      const file = path.join(ARTIFACTS, `${this.name}-${label}-${tag}.png`);
      await page.screenshot({ path: file, fullPage: true, animations: 'disabled' }).catch(() => {});
      if (tag === 'FAILED' && page.consoleLogs.length) {
        fs.writeFileSync(path.join(ARTIFACTS, `${this.name}-${label}-console.log`), page.consoleLogs.join('\n'));
      }
    }
  }

  async close() {
    if (this.browser) await this.browser.close().catch(() => {});
    this.browser = null;
    for (const server of this.servers) await server.stop();
  }
}

export class Server {
  constructor({ port, secret, apiKey, cwd, log, extraEnv = {} }) {
    Object.assign(this, { port, secret, apiKey, cwd, log, extraEnv });
    this.url = `http://127.0.0.1:${port}`;
    this.child = null;
  }

  get env() {
    return { ...process.env, ...this.extraEnv, INVIGIL_JWT_SECRET: this.secret, INVIGIL_API_KEY: this.apiKey };
  }

  async start() {
    const out = fs.openSync(this.log, 'w');
    const child = spawn(BIN, ['serve', '--bind', `127.0.0.1:${this.port}`], {
      cwd: this.cwd,
      env: this.env,
      stdio: ['ignore', out, out],
    });
    fs.closeSync(out);
    this.child = child;
    running.add(child);
    child.exited = new Promise((resolve) => child.once('exit', (code, signal) => {
      running.delete(child);
      resolve({ code, signal });
    }));
    child.once('error', () => {});
    await this.waitReady();
  }

  /** Polls GET /readyz until 200; fails early if the process exits. */
  async waitReady() {
    const deadline = Date.now() + WAIT_MS;
    let exited = null;
    this.child.exited.then((e) => { exited = e; });
    let last = 'no answer';
    while (Date.now() < deadline) {
      if (exited) throw new Error(`invigil serve exited (${JSON.stringify(exited)}); see ${this.log}`);
      try {
        const res = await fetch(`${this.url}/readyz`, { signal: AbortSignal.timeout(1000) });
        if (res.status === 200) return;
        last = `HTTP ${res.status}`;
      } catch (err) {
        last = err.cause?.code || err.message;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`invigil serve not ready within ${WAIT_MS} ms (${last}); see ${this.log}`);
  }

  /** Stops the process: SIGTERM (the server drains), SIGKILL if it is still there after 5 s. */
  async stop() {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGCONT'); // in case a test froze it
    child.kill('SIGTERM');
    const done = await Promise.race([child.exited, new Promise((r) => setTimeout(() => r(null), 5000))]);
    if (!done) {
      child.kill('SIGKILL');
      await child.exited;
    }
    this.child = null;
  }

  /** Freezes (SIGSTOP) or thaws (SIGCONT) the process: a server that hangs without closing. */
  freeze(frozen) {
    this.child.kill(frozen ? 'SIGSTOP' : 'SIGCONT');
  }

  /** `invigil token ...` with this server's secret; the token is printed alone on stdout. */
  token(...args) {
    return new Promise((resolve, reject) => {
      // In the server's directory: a config.toml in the caller's directory must not apply.
      execFile(BIN, ['token', ...args], { cwd: this.cwd, env: this.env, timeout: WAIT_MS }, (err, stdout, stderr) => {
        if (err) return reject(new Error(`invigil token ${args.join(' ')} failed: ${err.message}\n${stderr}`));
        const token = stdout.trim();
        if (token.split('.').length !== 3) return reject(new Error(`not a JWT: ${JSON.stringify(stdout)}`));
        resolve(token);
      });
    });
  }

  proctorToken({ sub = 'p1', name = 'Ms Proctor', quizzes = 'q1' } = {}) {
    return this.token('--role', 'proctor', '--sub', sub, '--name', name, '--quizzes', quizzes);
  }

  studentToken({ sub, name, quiz = 'q1', attempt }) {
    return this.token('--role', 'student', '--sub', sub, '--name', name, '--quiz', quiz, '--attempt', attempt);
  }
}

// ---- Page helpers ---------------------------------------------------------------------------

/** Selector of a student's card, optionally in a given status. */
export function card(attempt, status) {
  return `.card[data-attempt="${attempt}"]${status ? `[data-status="${status}"]` : ''}`;
}

/** Waits until a card's field shows exactly `text`. */
export async function waitForField(page, attempt, field, text, timeout = WAIT_MS) {
  await page.waitForFunction(
    ([sel, want]) => document.querySelector(sel)?.textContent.trim() === want,
    [`${card(attempt)} [data-field="${field}"]`, text],
    { timeout },
  );
}

/**
 * Makes the page believe it was hidden (as on a tab switch), by overriding
 * document.visibilityState and firing visibilitychange, as a headless browser cannot switch tabs.
 */
export async function hidePage(page) {
  await page.evaluate(() => {
    Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' });
    Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
    document.dispatchEvent(new Event('visibilitychange'));
  });
}

/** The reverse of hidePage: visible again, and the window focused. */
export async function showPage(page) {
  await page.evaluate(() => {
    Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'visible' });
    Object.defineProperty(document, 'hidden', { configurable: true, get: () => false });
    document.dispatchEvent(new Event('visibilitychange'));
    window.dispatchEvent(new Event('focus'));
  });
}

/** The window losing focus to another application (the tab stays visible). */
export async function blurWindow(page) {
  await page.evaluate(() => window.dispatchEvent(new Event('blur')));
}

/** On the demo page: answer the current question with option `k` (0..3). */
export async function answer(page, k) {
  await page.click(`#answers button:nth-child(${k + 1})`);
}

export async function nextQuestion(page) {
  await page.click('#next');
}

function isWebAsset(url) {
  return url.pathname === '/' || url.pathname === '/demo' || url.pathname.startsWith('/static/');
}

async function serveFromDisk(route) {
  const { pathname } = new URL(route.request().url());
  const name = pathname === '/' ? 'index.html' : pathname === '/demo' ? 'demo.html' : path.basename(pathname);
  const file = path.join(WEB_DIR, name);
  if (!fs.existsSync(file)) return route.fulfill({ status: 404, body: 'not found' });
  await route.fulfill({
    status: 200,
    contentType: CONTENT_TYPES[path.extname(name)] || 'application/octet-stream',
    body: fs.readFileSync(file),
  });
}

function slug(name) {
  return name.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 60);
}
