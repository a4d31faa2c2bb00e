/**
 * roster.test.js — unit tests of the dashboard's model (web/roster.js), no browser, no server:
 * the seq rule, snapshot resync, incident detection, filters, sorting, time helpers and the
 * fewest-moves reorder plan.
 */

import assert from 'node:assert/strict';
import test from 'node:test';
import {
  Roster, decodeJwtPayload, parseTime, formatRemaining, formatAgo, statusOf, matchesFilter,
  longestIncreasingRun, ordinal,
} from '../../web/roster.js';

const status = (attempt, extra = {}) => ({
  quiz_id: 'q1', quiz_attempt_id: attempt, student_id: `s-${attempt}`, student_name: `Student ${attempt}`,
  user_status: 'active', connected: true, away_count: 0, ...extra,
});

test('a status whose seq is not above the held one is ignored', () => {
  const r = new Roster();
  assert.ok(r.applyStatus('q1', 5, status('a1')));
  assert.equal(r.applyStatus('q1', 5, status('a1', { user_status: 'away' })), null);
  assert.equal(r.applyStatus('q1', 4, status('a1', { user_status: 'away' })), null);
  assert.equal(r.get('q1', 'a1').status, 'active');
  assert.ok(r.applyStatus('q1', 6, status('a1', { user_status: 'away', away_count: 1 })));
  assert.equal(r.get('q1', 'a1').status, 'away');
});

test('seq is held per quiz and attempt', () => {
  const r = new Roster();
  r.applyStatus('q1', 9, status('a1'));
  assert.ok(r.applyStatus('q2', 1, { ...status('a1'), quiz_id: 'q2' }), 'same attempt id, other quiz');
  assert.ok(r.applyStatus('q1', 1, status('a2')), 'other attempt');
  assert.equal(r.records.size, 3);
});

test('a snapshot resets seq, so a restarted server numbering anew is followed', () => {
  const r = new Roster();
  r.applyStatus('q1', 40, status('a1'));
  r.applySnapshot('q1', [{ ...status('a1'), seq: 2 }]);
  assert.equal(r.get('q1', 'a1').seq, 2);
  assert.ok(r.applyStatus('q1', 3, status('a1', { user_status: 'away', away_count: 1 })));
});

test('attempts missing from a snapshot are kept, shown offline, and take the next status', () => {
  const r = new Roster();
  r.applyStatus('q1', 40, status('a1'));
  r.applyStatus('q2', 7, { ...status('x'), quiz_id: 'q2' });
  const changes = r.applySnapshot('q1', []);
  assert.equal(changes.length, 1);
  assert.equal(r.get('q1', 'a1').status, 'offline');
  assert.equal(r.get('q2', 'x').status, 'active', 'other quizzes untouched');
  assert.ok(r.applyStatus('q1', 1, status('a1')));
  assert.equal(r.get('q1', 'a1').status, 'active');
});

test('incidents: into away (each time), into offline; not for the first snapshot', () => {
  const r = new Roster();
  const [first] = r.applySnapshot('q1', [{ ...status('a1', { user_status: 'away', away_count: 1 }), seq: 1 }]);
  assert.equal(first.incident, null);
  assert.equal(r.applyStatus('q1', 2, status('a1', { away_count: 1 })).incident, null);
  assert.deepEqual(r.applyStatus('q1', 3, status('a1', { user_status: 'away', away_count: 2 })).incident,
    { kind: 'away', text: 'went away (2nd time)' });
  // A missed "active" in between: away_count rising while away is still a new absence.
  assert.equal(r.applyStatus('q1', 5, status('a1', { user_status: 'away', away_count: 3 })).incident.kind, 'away');
  assert.equal(r.applyStatus('q1', 6, status('a1', { user_status: 'away', away_count: 3 })).incident, null);
  const off = r.applyStatus('q1', 7, status('a1', { user_status: 'offline', connected: false, reason: 'timeout', away_count: 3 }));
  assert.deepEqual(off.incident, { kind: 'offline', text: 'went offline: timeout' });
  assert.ok(r.get('q1', 'a1').timeline.length >= 4);
});

test('status: connected:false is offline whatever user_status says', () => {
  assert.equal(statusOf({ user_status: 'active', connected: false }), 'offline');
  assert.equal(statusOf({ user_status: 'away', connected: true }), 'away');
  assert.equal(statusOf({ user_status: 'offline' }), 'offline');
  assert.equal(statusOf({ connected: true }), 'active');
});

test('counts, filters and sorts', () => {
  const r = new Roster();
  r.applyStatus('q1', 1, status('a1', { student_name: 'Zoë Adams' }));
  r.applyStatus('q1', 1, status('a2', { student_name: 'Bo Chen', user_status: 'away', away_count: 4 }));
  r.applyStatus('q1', 1, status('a3', { student_name: 'Al Diaz', connected: false, user_status: 'offline' }));
  r.applyStatus('q1', 1, status('a4', { student_name: 'Cy Eng', score: 90, away_count: 5 }));
  assert.deepEqual(r.counts(), { total: 4, active: 2, away: 1, offline: 1, submitted: 1 });
  const names = (mode) => r.sorted(mode).map((x) => x.name);
  assert.deepEqual(names('attention'), ['Al Diaz', 'Bo Chen', 'Cy Eng', 'Zoë Adams']);
  assert.deepEqual(names('away'), ['Cy Eng', 'Bo Chen', 'Al Diaz', 'Zoë Adams']);
  assert.deepEqual(names('name'), ['Al Diaz', 'Bo Chen', 'Cy Eng', 'Zoë Adams']);
  const a2 = r.get('q1', 'a2');
  assert.ok(matchesFilter(a2, 'bo', 'all'));
  assert.ok(matchesFilter(a2, 'A2', 'away'), 'matches the attempt id, case-insensitive');
  assert.ok(!matchesFilter(a2, '', 'offline'));
  assert.ok(matchesFilter(r.get('q1', 'a4'), '', 'submitted'));
  assert.ok(!matchesFilter(a2, '', 'submitted'));
});

test('JWT payloads decode from base64url, UTF-8 included', () => {
  const payload = { sub: 'p1', name: 'Zoë Ł', quizzes: ['q1'] };
  const b64 = Buffer.from(JSON.stringify(payload)).toString('base64url');
  assert.deepEqual(decodeJwtPayload(`x.${b64}.y`), payload);
  assert.equal(decodeJwtPayload('nope'), null);
  assert.equal(decodeJwtPayload('a.!!!.c'), null);
});

test('time_end as ISO string, ms number, seconds or absent', () => {
  assert.equal(parseTime('2025-01-01T10:00:00Z'), Date.UTC(2025, 0, 1, 10));
  assert.equal(parseTime(1735725600000), 1735725600000);
  assert.equal(parseTime(1735725600), 1735725600000);
  assert.equal(parseTime('1735725600000'), 1735725600000);
  assert.equal(parseTime(null), null);
  assert.equal(parseTime(undefined), null);
  assert.equal(parseTime('soon'), null);
  assert.equal(formatRemaining(null), '—');
  assert.equal(formatRemaining(-5000), '0:00');
  assert.equal(formatRemaining(65_000), '1:05');
  assert.equal(formatRemaining(3_725_000), '1:02:05');
  assert.equal(formatAgo(null, 0), '—');
  assert.equal(formatAgo(1000, 3000), 'just now');
  assert.equal(formatAgo(0, 42_000), '42 s ago');
  assert.equal(formatAgo(0, 300_000), '5 min ago');
  assert.deepEqual([1, 2, 3, 4, 11, 12, 13, 21, 22].map(ordinal), ['1st', '2nd', '3rd', '4th', '11th', '12th', '13th', '21st', '22nd']);
});

test('reorder plan keeps the longest run in place', () => {
  const plan = (positions) => [...longestIncreasingRun(positions)].sort((a, b) => a - b);
  assert.deepEqual(plan([0, 1, 2, 3]), [0, 1, 2, 3]);
  // Card 10 moved to the end: only it moves.
  const moved = [...Array.from({ length: 10 }, (_, i) => i), ...Array.from({ length: 10 }, (_, i) => i + 11), 10];
  assert.equal(longestIncreasingRun(moved).size, 20);
  assert.ok(!longestIncreasingRun(moved).has(20));
  // New cards (-1) are never "in place".
  assert.ok(!longestIncreasingRun([-1, 0, 1]).has(0));
  assert.equal(longestIncreasingRun([]).size, 0);
});
