/**
 * dashboard-ui.test.js — the dashboard's own controls against live data: text and status
 * filters, sort orders, the summary counts, keyboard movement between cards, and a time
 * remaining that counts down from the `time_end` the exam page sends.
 */

import assert from 'node:assert/strict';
import { e2e, card, hidePage } from './harness.js';

const order = (page) => page.$$eval('#grid .card:not([hidden])', (els) => els.map((el) => el.dataset.attempt));

e2e('filters, sorting, counts and keyboard movement', async (scene) => {
  const server = await scene.startServer();
  const dashboard = await scene.dashboard(server, await server.proctorToken());
  const students = [
    { sub: 's1', name: 'Cleo Park', attempt: 'a1' },
    { sub: 's2', name: 'Abe Moss', attempt: 'a2' },
    { sub: 's3', name: 'Bea Nunez', attempt: 'a3' },
  ];
  const pages = {};
  for (const s of students) pages[s.attempt] = await scene.student(s.attempt, server, await server.studentToken(s));
  for (const s of students) await dashboard.waitForSelector(card(s.attempt, 'active'));

  await hidePage(pages.a1);
  await dashboard.waitForSelector(card('a1', 'away'));
  await scene.closePage('a3');
  await dashboard.waitForSelector(card('a3', 'offline'));
  await dashboard.waitForFunction(() => ['active', 'away', 'offline'].every(
    (k) => document.querySelector(`#summary [data-count="${k}"] [data-n]`).textContent === '1'));

  // Default order: offline first, then away, then active.
  await dashboard.waitForFunction(() => [...document.querySelectorAll('#grid .card')].map((c) => c.dataset.attempt).join() === 'a3,a1,a2');
  await dashboard.selectOption('#sort', 'name');
  await dashboard.waitForFunction(() => [...document.querySelectorAll('#grid .card')].map((c) => c.dataset.attempt).join() === 'a2,a3,a1');

  await dashboard.fill('#filter-text', 'bea');
  await dashboard.waitForFunction(() => document.querySelectorAll('#grid .card:not([hidden])').length === 1);
  assert.deepEqual(await order(dashboard), ['a3']);
  await dashboard.fill('#filter-text', '');
  await dashboard.selectOption('#filter-status', 'away');
  await dashboard.waitForFunction(() => document.querySelectorAll('#grid .card:not([hidden])').length === 1);
  assert.deepEqual(await order(dashboard), ['a1']);
  await dashboard.selectOption('#filter-status', 'all');
  await dashboard.waitForFunction(() => document.querySelectorAll('#grid .card:not([hidden])').length === 3);

  // Arrow keys walk the cards in their visible order.
  await dashboard.focus(card('a2'));
  await dashboard.keyboard.press('ArrowRight');
  assert.equal(await dashboard.evaluate(() => document.activeElement.dataset.attempt), 'a3');
  await dashboard.keyboard.press('End');
  assert.equal(await dashboard.evaluate(() => document.activeElement.dataset.attempt), 'a1');

  // The demo page sends time_end 30 minutes ahead: the card counts down from about 30:00.
  const left = await dashboard.textContent(`${card('a2')} [data-field="time_left"]`);
  assert.match(left, /^(29:[0-5]\d|30:00)$/);
});
