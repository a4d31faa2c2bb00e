/**
 * presence.test.js — a student's presence as the proctor sees it: hiding the exam page (tab
 * switch) or blurring the window turns the card away and counts the away events; closing the
 * page turns it offline with the reason the server gives; opening the same attempt in a second
 * tab takes over, and the first tab says so and stays disconnected (close code 4009).
 */

import assert from 'node:assert/strict';
import { e2e, card, waitForField, hidePage, showPage, blurWindow } from './harness.js';

e2e('hiding the exam page turns the student away and counts each time', async (scene) => {
  const server = await scene.startServer();
  const dashboard = await scene.dashboard(server, await server.proctorToken());
  const student = await scene.student('student', server,
    await server.studentToken({ sub: 's1', name: 'Ann Lee', attempt: 'a1' }));

  await dashboard.waitForSelector(card('a1', 'active'));
  assert.equal(await dashboard.textContent(`${card('a1')} [data-field="name"]`), 'Ann Lee');
  await waitForField(dashboard, 'a1', 'away_count', '0');

  await hidePage(student);
  await dashboard.waitForSelector(card('a1', 'away'));
  await waitForField(dashboard, 'a1', 'away_count', '1');
  // The status is not told by colour alone: the badge says it in words.
  assert.match(await dashboard.textContent(`${card('a1')} [data-field="status"]`), /away/i);
  await dashboard.waitForSelector('#incidents li.incident.away');
  await dashboard.waitForFunction(() => document.querySelector('#summary [data-count="away"] [data-n]').textContent === '1');

  await showPage(student);
  await dashboard.waitForSelector(card('a1', 'active'));
  await hidePage(student);
  await dashboard.waitForSelector(card('a1', 'away'));
  await waitForField(dashboard, 'a1', 'away_count', '2');

  // Losing window focus (another application in front) counts too.
  await showPage(student);
  await dashboard.waitForSelector(card('a1', 'active'));
  await blurWindow(student);
  await dashboard.waitForSelector(card('a1', 'away'));
  await waitForField(dashboard, 'a1', 'away_count', '3');
  assert.equal(await dashboard.locator('#incidents li.incident.away').count(), 3);
});

e2e('closing the exam page turns the student offline, reason disconnected', async (scene) => {
  const server = await scene.startServer();
  const dashboard = await scene.dashboard(server, await server.proctorToken());
  await scene.student('student', server, await server.studentToken({ sub: 's1', name: 'Ann Lee', attempt: 'a1' }));
  await dashboard.waitForSelector(card('a1', 'active'));

  await scene.closePage('student');

  await dashboard.waitForSelector(card('a1', 'offline'));
  await dashboard.waitForFunction(
    (sel) => /disconnected/.test(document.querySelector(sel)?.textContent || ''),
    `${card('a1')} [data-field="reason"]`,
  );
  assert.match(await dashboard.textContent(`${card('a1')} [data-field="status"]`), /offline/i);
  await dashboard.waitForSelector('#incidents li.incident.offline');
  assert.equal(await dashboard.textContent('#summary [data-count="offline"] [data-n]'), '1');
  assert.equal(await dashboard.textContent('#summary [data-count="active"] [data-n]'), '0');
  // Closing a tab hides it before it unloads: that must not also count as going away.
  assert.equal(await dashboard.textContent(`${card('a1')} [data-field="away_count"]`), '0');
  assert.equal(await dashboard.locator('#incidents li.incident.away').count(), 0);
});

e2e('a second tab for the same attempt takes over; the first stops and says why', async (scene) => {
  const server = await scene.startServer();
  const dashboard = await scene.dashboard(server, await server.proctorToken());
  const token = await server.studentToken({ sub: 's1', name: 'Ann Lee', attempt: 'a1' });
  const first = await scene.student('first-tab', server, token);
  await dashboard.waitForSelector(card('a1', 'active'));

  const second = await scene.student('second-tab', server, token);
  await first.waitForSelector('#student-conn[data-state="replaced"]');
  await first.waitForSelector('.invigil-notice');
  assert.match(await first.textContent('.invigil-notice'), /another tab/);

  // The proctor keeps following the attempt, through the second tab.
  await second.click('#next');
  await waitForField(dashboard, 'a1', 'question', '2');
  assert.equal(await dashboard.getAttribute(card('a1'), 'data-status'), 'active');
  assert.equal(await first.evaluate(() => window.Invigil.getState().connection), 'replaced');
});
