/**
 * reconnect.test.js — the dashboard survives a server restart: it shows "reconnecting" while
 * the server is gone, goes live again on its own once the server is back on the same port,
 * resubscribes, and follows students again — the one who was there (its page reconnects by
 * itself) and a new one. A restarted server may number `seq` afresh: the away after the
 * restart proves the dashboard took the fresh snapshot as the new baseline.
 *
 * A server that hangs without closing anything is only noticed by the app-level ping: both
 * clients must give up on the silent connection and come back when the server does.
 */

import assert from 'node:assert/strict';
import { e2e, card, hidePage, RECONNECT_WAIT_MS } from './harness.js';

e2e('the dashboard recovers after the server restarts', async (scene) => {
  const first = await scene.startServer();
  const proctorToken = await first.proctorToken();
  const dashboard = await scene.dashboard(first, proctorToken);
  const ann = await scene.student('ann', first, await first.studentToken({ sub: 's1', name: 'Ann Lee', attempt: 'a1' }));
  await dashboard.waitForSelector(card('a1', 'active'));

  await first.stop();
  await dashboard.waitForSelector('#conn-state[data-state="reconnecting"]');
  assert.match(await dashboard.textContent('#conn-state'), /Reconnecting/);
  await scene.snap('dashboard', 'reconnecting');
  await ann.waitForSelector('#student-conn[data-state="reconnecting"]');

  // Same port, same secret, same working directory: the tokens held by the pages stay valid.
  const second = await scene.startServer(first);
  await dashboard.waitForSelector('#conn-state[data-state="live"]', { timeout: RECONNECT_WAIT_MS });
  await ann.waitForSelector('#student-conn[data-state="live"]', { timeout: RECONNECT_WAIT_MS });
  await dashboard.waitForSelector(card('a1', 'active'));

  // Live updates flow again, for the student who came back...
  await hidePage(ann);
  await dashboard.waitForSelector(card('a1', 'away'));
  // ...and for one who connects only now.
  await scene.student('ben', second, await second.studentToken({ sub: 's2', name: 'Ben Ortiz', attempt: 'a2' }));
  await dashboard.waitForSelector(card('a2', 'active'));
  assert.equal(await dashboard.textContent(`${card('a2')} [data-field="name"]`), 'Ben Ortiz');
});

e2e('a server that stops answering is detected by the missing pong', async (scene) => {
  // A 1 s heartbeat makes both clients ping every second (they ping at the server's heartbeat
  // when it is below 20 s); the clients then allow 10 s for an answer.
  const server = await scene.startServer({}, { env: { INVIGIL_HEARTBEAT__INTERVAL_MS: '1000', INVIGIL_HEARTBEAT__TIMEOUT_MS: '5000' } });
  const dashboard = await scene.dashboard(server, await server.proctorToken());
  const ann = await scene.student('ann', server, await server.studentToken({ sub: 's1', name: 'Ann Lee', attempt: 'a1' }));
  await dashboard.waitForSelector(card('a1', 'active'));

  server.freeze(true);
  await dashboard.waitForSelector('#conn-state[data-state="reconnecting"]', { timeout: RECONNECT_WAIT_MS });
  await ann.waitForSelector('#student-conn[data-state="reconnecting"]', { timeout: RECONNECT_WAIT_MS });

  server.freeze(false);
  await dashboard.waitForSelector('#conn-state[data-state="live"]', { timeout: RECONNECT_WAIT_MS });
  await ann.waitForSelector('#student-conn[data-state="live"]', { timeout: RECONNECT_WAIT_MS });
  await hidePage(ann);
  await dashboard.waitForSelector(card('a1', 'away'), { timeout: RECONNECT_WAIT_MS });
});
