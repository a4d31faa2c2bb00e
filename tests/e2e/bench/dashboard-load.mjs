// The dashboard under load, measured in headless Chromium: N students (default 1,000), each
// sending one status every 5 s (200 updates/s), against the real server; prints frame rate,
// long tasks and script time per second. Loopback only; stops by itself after 45 s.
//
//   cargo build && (cd tests/e2e && npm ci) && node tests/e2e/bench/dashboard-load.mjs
import { spawn, execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { chromium } from 'playwright-core';
const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const BIN = process.env.INVIGIL_BIN || path.join(REPO, 'target/debug/invigil');
const port = Number(process.env.PORT || 18700), N = Number(process.env.N || 1000);
const secret = crypto.randomBytes(16).toString('hex');
const env = { ...process.env, INVIGIL_JWT_SECRET: secret, INVIGIL_API_KEY: 'k', RUST_LOG: 'warn' };
const srv = spawn(BIN, ['serve', '--bind', `127.0.0.1:${port}`], { env, stdio: ['ignore', 'ignore', 'inherit'], cwd: fs.mkdtempSync(path.join(os.tmpdir(), 'invigil-dash-')) });
for (let i = 0; i < 100; i++) { try { if ((await fetch(`http://127.0.0.1:${port}/readyz`)).ok) break; } catch {} await new Promise(r => setTimeout(r, 100)); }
const b64u = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
const sign = (c) => { const h = b64u({ alg: 'HS256', typ: 'JWT' }), p = b64u({ ...c, exp: Math.floor(Date.now() / 1000) + 3600 }); return `${h}.${p}.${crypto.createHmac('sha256', secret).update(`${h}.${p}`).digest('base64url')}`; };
const P = execFileSync(BIN, ['token', '--role', 'proctor', '--sub', 'p1', '--name', 'Load', '--quizzes', 'q1'], { env }).toString().trim();
const names = ['Ann', 'Ben', 'Chen', 'Dara', 'Eve', 'Farid', 'Grace', 'Hiro', 'Ivy', 'Jon'];
const socks = []; let sent = 0, errors = 0;
const stopAt = Date.now() + 45000;
for (let i = 0; i < N; i++) {
  const t = sign({ sub: `s${i}`, role: 'student', quiz_id: 'q1', attempt_id: `a${i}`, name: `${names[i % 10]} ${i}` });
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws?token=${t}`);
  const st = { user_status: 'active', q: 1, ans: 0, away: false };
  let id = 0;
  const send = () => { if (ws.readyState !== 1 || Date.now() > stopAt) return; sent++; ws.send(JSON.stringify({ type: 'message_to_master', id: ++id, message: { action: 'lmsQuizMonitoringStudent', data: { quiz_id: 'q1', quiz_attempt_id: `a${i}`, student_id: `s${i}`, user_status: st.user_status, question_answered: st.ans, question_total: 40, question_number_current: st.q, score: null, student_name: `${names[i % 10]} ${i}`, time_start: null, time_end: Date.now() + 3600e3, timestamp_sent: Date.now() } } })); };
  ws.on('open', () => { setTimeout(() => { send(); setInterval(() => { const r = Math.random(); if (r < 0.1) st.user_status = st.user_status === 'away' ? 'active' : 'away'; else { st.q = Math.min(40, st.q + 1); st.ans = Math.min(40, st.ans + 1); } send(); }, 5000); }, Math.random() * 5000); });
  ws.on('message', (m) => { if (String(m).includes('"error"')) errors++; });
  ws.on('error', () => {});
  socks.push(ws);
  if (i % 100 === 99) await new Promise(r => setTimeout(r, 50));
}
await new Promise(r => setTimeout(r, 3000));
console.log('open sockets', socks.filter(s => s.readyState === 1).length);
const b = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
const p = await b.newPage({ viewport: { width: 1440, height: 900 } });
await p.goto(`http://127.0.0.1:${port}/?token=${P}`);
await p.waitForFunction((n) => document.querySelectorAll('.card').length >= n, N, { timeout: 20000 });
const sent0 = sent;
const cdp = await p.context().newCDPSession(p); await cdp.send('Performance.enable');
const m0 = Object.fromEntries((await cdp.send('Performance.getMetrics')).metrics.map(m => [m.name, m.value]));
const res = await p.evaluate(() => new Promise(resolve => {
  const longTasks = []; new PerformanceObserver(l => { for (const e of l.getEntries()) longTasks.push(e.duration); }).observe({ entryTypes: ['longtask'] });
  const frames = []; let last = performance.now(); const t0 = last;
  function f(now) { frames.push(now - last); last = now; if (now - t0 < 10000) requestAnimationFrame(f); else resolve({ fps: (frames.length / 10).toFixed(1), maxFrame: Math.max(...frames).toFixed(0), p95: frames.sort((a, b) => a - b)[Math.floor(frames.length * 0.95)].toFixed(0), longTasks: longTasks.length, maxLong: Math.max(0, ...longTasks) }); }
  requestAnimationFrame(f);
}));
console.log('updates/s during measurement', ((sent - sent0) / 10).toFixed(0), 'errors', errors, res);
const m1 = Object.fromEntries((await cdp.send('Performance.getMetrics')).metrics.map(m => [m.name, m.value]));
console.log('per second over the window:', ['ScriptDuration', 'LayoutDuration', 'RecalcStyleDuration', 'TaskDuration'].map(k => `${k} ${((m1[k] - m0[k]) * 100).toFixed(0)}ms/s`).join(', '), 'layouts', m1.LayoutCount - m0.LayoutCount, 'styles', m1.RecalcStyleCount - m0.RecalcStyleCount);
await p.screenshot({ path: path.join(os.tmpdir(), 'invigil-dashboard-load.png') });
await b.close();
for (const s of socks) s.terminate();
srv.kill('SIGTERM');
setTimeout(() => process.exit(0), 500);
