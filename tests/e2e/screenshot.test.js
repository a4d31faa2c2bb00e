/**
 * screenshot.test.js — a class of eight students in every state the dashboard shows (active
 * on different questions, away once and twice, offline, submitted with a score, a message in
 * the inbox), photographed for docs/dashboard.png and, with the student panel open and on a
 * tablet-sized screen, for test-artifacts/.
 */

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { e2e, card, hidePage, showPage, answer, nextQuestion, REPO, ARTIFACTS, waitForField } from './harness.js';

/** The demo's right answers (web/demo.html), so that the scores look like a real class's. */
const RIGHT = [1, 2, 1, 1, 2, 3, 2, 1, 1, 2];

const CLASS = [
  { sub: 's1', name: 'Ann Lee', attempt: 'a1', answers: 3, state: 'active' },
  { sub: 's2', name: 'Ben Ortiz', attempt: 'a2', answers: 5, state: 'away', aways: 2 },
  { sub: 's3', name: 'Chen Wei', attempt: 'a3', answers: 2, state: 'offline' },
  { sub: 's4', name: 'Dara Singh', attempt: 'a4', answers: 10, state: 'submitted' },
  { sub: 's5', name: 'Eve Kim', attempt: 'a5', answers: 7, state: 'active' },
  { sub: 's6', name: 'Farid Haddad', attempt: 'a6', answers: 8, state: 'active' },
  { sub: 's7', name: 'Grace Liu', attempt: 'a7', answers: 4, state: 'away', aways: 1 },
  { sub: 's8', name: 'Hiro Tanaka', attempt: 'a8', answers: 1, state: 'offline' },
];

e2e('dashboard screenshot with students in every state', async (scene) => {
  const server = await scene.startServer();
  const dashboard = await scene.dashboard(server, await server.proctorToken(), { viewport: { width: 1440, height: 900 } });

  for (const s of CLASS) {
    const page = await scene.student(s.attempt, server, await server.studentToken(s));
    for (let i = 0; i < s.answers; i++) {
      // Mostly right, one wrong in five.
      await answer(page, i % 5 === 3 ? (RIGHT[i] + 1) % 4 : RIGHT[i]);
      if (i < 9) await nextQuestion(page);
    }
    await waitForField(dashboard, s.attempt, 'answered', `${s.answers} / 10`);
  }

  for (const s of CLASS) {
    const page = scene.pages.get(s.attempt);
    if (s.state === 'away') {
      for (let i = 0; i < s.aways; i++) {
        if (i > 0) {
          await showPage(page);
          await dashboard.waitForSelector(card(s.attempt, 'active'));
        }
        await hidePage(page);
        await waitForField(dashboard, s.attempt, 'away_count', String(i + 1));
      }
    } else if (s.state === 'submitted') {
      await page.click('#submit');
      await dashboard.waitForSelector(`${card(s.attempt)} [data-field="submitted"]:not([hidden])`);
    } else if (s.state === 'offline') {
      await scene.closePage(s.attempt);
    }
  }

  const ben = scene.pages.get('a2');
  await ben.fill('#msg-text', 'My Wi-Fi dropped for a second, sorry!');
  await ben.click('#msg-form button[type="submit"]');
  await dashboard.waitForFunction(() => /Wi-Fi/.test(document.getElementById('inbox').textContent));

  for (const s of CLASS) {
    await dashboard.waitForSelector(card(s.attempt, s.state === 'submitted' ? 'active' : s.state));
  }
  // "Offline first" puts the two offline students at the top once the grid is re-sorted.
  await dashboard.waitForFunction(() => {
    const cards = [...document.querySelectorAll('#grid .card')];
    return cards.length === 8 && cards[0].dataset.status === 'offline' && cards[1].dataset.status === 'offline'
      && cards[2].dataset.status === 'away';
  });
  assert.equal(await dashboard.textContent('#summary [data-count="submitted"] [data-n]'), '1');

  // The README's picture is refreshed on request only, so a test run leaves the tree clean.
  const picture = process.env.INVIGIL_UPDATE_SCREENSHOT
    ? path.join(REPO, 'docs/dashboard.png')
    : path.join(ARTIFACTS, 'dashboard.png');
  fs.mkdirSync(path.dirname(picture), { recursive: true });
  await dashboard.screenshot({ path: picture, animations: 'disabled' });
  await dashboard.screenshot({ path: path.join(ARTIFACTS, 'dashboard-class.png'), fullPage: true, animations: 'disabled' });

  await dashboard.click(card('a2'));
  await dashboard.waitForSelector('#panel:not([hidden])');
  await dashboard.waitForFunction(() => !/Loading/.test(document.getElementById('timeline-source').textContent));
  await dashboard.screenshot({ path: path.join(ARTIFACTS, 'dashboard-panel.png'), animations: 'disabled' });
  await dashboard.keyboard.press('Escape');

  await dashboard.setViewportSize({ width: 820, height: 1180 });
  await dashboard.screenshot({ path: path.join(ARTIFACTS, 'dashboard-tablet.png'), fullPage: true, animations: 'disabled' });
});
