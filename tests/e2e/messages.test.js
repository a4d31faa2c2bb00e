/**
 * messages.test.js — messages between proctor and student through the real server: a warning
 * typed in the dashboard's student panel (opened with the keyboard) appears as a toast on the
 * exam page; a line the student sends lands in the dashboard's inbox with the student named;
 * a broadcast reaches every student of the quiz; a message to an absent student says so.
 */

import assert from 'node:assert/strict';
import { e2e, card } from './harness.js';

e2e('a warning typed in the dashboard appears on the student page', async (scene) => {
  const server = await scene.startServer();
  const dashboard = await scene.dashboard(server, await server.proctorToken());
  const student = await scene.student('student', server,
    await server.studentToken({ sub: 's1', name: 'Ann Lee', attempt: 'a1' }));
  await dashboard.waitForSelector(card('a1', 'active'));

  // Keyboard: focus the card, Enter opens the panel.
  await dashboard.focus(card('a1'));
  await dashboard.keyboard.press('Enter');
  await dashboard.waitForSelector('#panel:not([hidden])');
  assert.equal(await dashboard.textContent('#panel-name'), 'Ann Lee');
  // The events API may not exist: the panel then shows what the page saw live.
  await dashboard.waitForFunction(() => !/Loading/.test(document.getElementById('timeline-source').textContent));
  assert.ok(await dashboard.locator('#timeline li').count() >= 1);

  await dashboard.selectOption('#msg-kind', 'warning');
  await dashboard.fill('#msg-text', 'Eyes on your own screen, please.');
  await dashboard.click('#msg-send');
  await dashboard.waitForSelector('#msg-feedback[data-result="ok"]');

  const toast = student.locator('.invigil-toast[data-kind="warning"]');
  await toast.waitFor();
  assert.match(await toast.textContent(), /Eyes on your own screen, please\./);
  assert.match(await toast.textContent(), /Ms Proctor/);

  // The student answers; the proctor's inbox shows it, with the student named.
  await student.fill('#msg-text', 'Sorry, it will not happen again.');
  await student.click('#msg-form button[type="submit"]');
  await student.waitForFunction(() => /Sent/.test(document.getElementById('msg-feedback').textContent));
  await dashboard.waitForFunction(() => /Sorry, it will not happen again\./.test(document.getElementById('inbox').textContent));
  assert.match(await dashboard.textContent('#inbox li'), /Ann Lee/);

  // Escape closes the panel and gives the focus back to the card.
  await dashboard.keyboard.press('Escape');
  await dashboard.waitForSelector('#panel', { state: 'hidden' });
  assert.equal(await dashboard.evaluate(() => document.activeElement?.dataset.attempt), 'a1');
});

e2e('a message to a student who is not connected says so', async (scene) => {
  const server = await scene.startServer();
  const dashboard = await scene.dashboard(server, await server.proctorToken());
  await scene.student('student', server, await server.studentToken({ sub: 's1', name: 'Ann Lee', attempt: 'a1' }));
  await dashboard.waitForSelector(card('a1', 'active'));
  await scene.closePage('student');
  await dashboard.waitForSelector(card('a1', 'offline'));

  await dashboard.click(card('a1'));
  await dashboard.fill('#msg-text', 'Are you there?');
  await dashboard.click('#msg-send');
  await dashboard.waitForSelector('#msg-feedback[data-result="error"]');
  assert.match(await dashboard.textContent('#msg-feedback'), /not connected/);
});

e2e('a broadcast reaches every student of the quiz', async (scene) => {
  const server = await scene.startServer();
  const dashboard = await scene.dashboard(server, await server.proctorToken());
  const ann = await scene.student('ann', server, await server.studentToken({ sub: 's1', name: 'Ann Lee', attempt: 'a1' }));
  const ben = await scene.student('ben', server, await server.studentToken({ sub: 's2', name: 'Ben Ortiz', attempt: 'a2' }));
  await dashboard.waitForSelector(card('a1', 'active'));
  await dashboard.waitForSelector(card('a2', 'active'));

  await dashboard.fill('#broadcast-text', 'Ten minutes left.');
  await dashboard.click('#broadcast button[type="submit"]');
  await dashboard.waitForSelector('#broadcast-feedback[data-result="ok"]');
  for (const page of [ann, ben]) {
    const toast = page.locator('.invigil-toast[data-kind="chat"]');
    await toast.waitFor();
    assert.match(await toast.textContent(), /Ten minutes left\./);
  }
});
