/**
 * dashboard.js — the proctor dashboard's page: it turns server messages into cards, alerts
 * and panels, and the proctor's clicks into messages. Served at /static/dashboard.js and
 * loaded by index.html ("/?token=JWT").
 *
 * Layout of this file, top to bottom:
 * - Boot: read the token (URL or paste box), decode its claims, start the socket.
 * - Server messages: welcome → subscribe to every quiz; snapshot and student_status → the
 *   roster (roster.js, which applies the `seq` rule) → dirty set; student_message → inbox.
 * - Frame rendering: everything that changed is drawn once per animation frame. With 1,000
 *   students sending 200 updates a second, a message only marks its attempt dirty; the frame
 *   updates those cards field by field (a text node is written only when its text changed),
 *   reorders the grid at most twice a second with the fewest moves, and recounts the summary.
 * - Clock: a 1 s tick updates the countdowns and "last seen" texts, and the banner's retry time.
 * - Incidents: transitions into away or offline flash the card, may beep, go to the incident
 *   list and are announced (throttled) to screen readers.
 * - Student panel: timeline (server history, else what this page saw), chat / warning box.
 * - Broadcast: the server's HTTP endpoint, else one message per connected student.
 *
 * The connection itself (backoff, ping, pacing, ack matching) lives in proctor-socket.js.
 */

import {
  Roster,
  decodeJwtPayload,
  formatAgo,
  formatRemaining,
  longestIncreasingRun,
  matchesFilter,
  parseTime,
  sortSignature,
} from '/static/roster.js';
import { ProctorSocket } from '/static/proctor-socket.js';

/** Cards are reordered at most this often: cards that jump around faster cannot be read. */
const RESORT_EVERY_MS = 500;
/** How long a card stays highlighted after an incident. */
const FLASH_MS = 3000;
/** Incident and inbox lists keep this many entries. */
const LIST_LIMIT = 200;
/** At most one screen-reader announcement this often (they are merged in between). */
const ANNOUNCE_EVERY_MS = 2000;
/** At most one beep this often. */
const BEEP_EVERY_MS = 1500;

const STATUS_LABELS = {
  active: { icon: '●', label: 'Active' },
  away: { icon: '◐', label: 'Away' },
  offline: { icon: '✕', label: 'Offline' },
};

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------------------------
// State

/** What the token says about the proctor: {token, name, sub, quizzes: string[]}. */
let proctor = null;
let socket = null;
const roster = new Roster();
/** key -> CardView: {el, fields: {name: element}, shown: {field: text}, sig, matched} */
const views = new Map();
/** card element -> its attempt key (the key holds a NUL, no fit for a data attribute). */
const cardKeys = new WeakMap();
/** Attempt keys whose card must be redrawn at the next frame. */
const dirty = new Set();
/** Incidents raised since the last frame: [{t, key, kind, text}]. */
const pendingIncidents = [];
let framePending = false;
/** The grid's order may be stale (a sort key changed, a card was added, the sort changed). */
let orderDirty = false;
let lastSortAt = 0;
let resortTimer = null;
/** Filters changed: every card's visibility must be re-evaluated. */
let filterDirty = false;
const filter = { text: '', status: 'all', quiz: '' };
let sortMode = 'attention';
/** The attempt whose panel is open, and the element focus returns to when it closes. */
let panel = { key: null, opener: null, source: 'live', serverEvents: null, timelineLen: -1 };
let connState = { state: 'connecting' };
let unread = 0;

// ---------------------------------------------------------------------------------------------
// Boot

function boot() {
  $('login-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const token = $('login-token').value.trim();
    if (token) location.search = `?token=${encodeURIComponent(token)}`;
  });
  const params = new URLSearchParams(location.search);
  const token = params.get('token');
  const claims = token ? decodeJwtPayload(token) : null;
  if (!token) return showLogin('');
  if (!claims) return showLogin('That is not a JWT.');
  if (claims.role && claims.role !== 'proctor') {
    return showLogin(`This token is for a ${claims.role}, not a proctor.`);
  }
  const quizzes = Array.isArray(claims.quizzes) ? claims.quizzes.map(String) : [];
  if (!quizzes.length) return showLogin('This token lists no quizzes to watch.');
  const expiresAt = typeof claims.exp === 'number' ? claims.exp * 1000 : null;
  if (expiresAt !== null && expiresAt <= Date.now()) return showLogin('This token has expired.');

  proctor = { token, name: claims.name || claims.sub || 'proctor', sub: claims.sub, quizzes };
  $('who').textContent = `${proctor.name} · ${quizzes.length === 1 ? `quiz ${quizzes[0]}` : `${quizzes.length} quizzes`}`;
  $('app').hidden = false;
  setupQuizPickers();
  bindUi();

  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  socket = new ProctorSocket({
    url: `${scheme}://${location.host}/ws?token=${encodeURIComponent(token)}`,
    expiresAt,
    onWelcome,
    onMessage,
    onState: renderConnState,
  });
  socket.start();
  setInterval(tick, 1000);
  window.addEventListener('pagehide', () => socket.stop());
}

function showLogin(error) {
  $('login').hidden = false;
  $('login-error').textContent = error;
  $('conn-state').hidden = true;
  $('summary').hidden = true;
  $('login-token').focus();
}

function setupQuizPickers() {
  const multi = proctor.quizzes.length > 1;
  for (const q of proctor.quizzes) {
    $('filter-quiz').append(new Option(q, q));
    $('broadcast-quiz').append(new Option(q, q));
  }
  $('filter-quiz-label').hidden = !multi;
  $('broadcast-quiz-label').hidden = !multi;
}

// ---------------------------------------------------------------------------------------------
// Server messages

function onWelcome() {
  // A fresh connection knows nothing of our subscriptions: (re)subscribe to every quiz. Each
  // answer is a snapshot that resyncs that quiz.
  for (const quiz of proctor.quizzes) {
    socket.send({ type: 'subscribe', quiz_id: quiz }, {
      onError: (err) => {
        if (err.code !== 'connection_lost') notice(`Cannot watch quiz ${quiz}: ${err.message || err.code}`);
      },
    });
  }
}

function onMessage(msg) {
  switch (msg.type) {
    case 'snapshot': {
      const now = Date.now();
      for (const change of roster.applySnapshot(msg.quiz_id, msg.students, now)) took(change, now);
      orderDirty = true;
      requestFrame();
      return;
    }
    case 'student_status': {
      const now = Date.now();
      const change = roster.applyStatus(msg.quiz_id, msg.seq, msg.data, now);
      if (change) took(change, now);
      return;
    }
    case 'student_message':
      onStudentMessage(msg);
      return;
    case 'error':
      notice(`Server: ${msg.message || msg.code}`);
      return;
    default:
      // Messages this page does not know are ignored: the protocol may add some.
  }
}

/** A record changed: draw it at the next frame, and raise its incident if it has one. */
function took({ rec, incident }, now) {
  dirty.add(rec.key);
  if (incident) {
    pendingIncidents.push({ t: now, key: rec.key, kind: incident.kind, text: incident.text });
    beep(incident.kind);
  }
  requestFrame();
}

function onStudentMessage(msg) {
  const rec = roster.get(msg.quiz_id, msg.quiz_attempt_id);
  const name = rec?.name || msg.student_name || msg.student_id || msg.quiz_attempt_id;
  const t = parseTime(msg.ts) ?? Date.now();
  if (rec) {
    roster.note(rec, `student wrote: “${msg.text}”`, t);
    if (panel.key === rec.key) {
      dirty.add(rec.key);
      requestFrame();
    }
  }
  const li = document.createElement('li');
  const time = document.createElement('time');
  time.dateTime = new Date(t).toISOString();
  time.textContent = clockTime(t);
  const who = document.createElement('button');
  who.type = 'button';
  who.className = 'link';
  who.textContent = name;
  who.addEventListener('click', () => {
    const key = rec ? rec.key : Roster.key(msg.quiz_id, msg.quiz_attempt_id);
    if (views.has(key)) openPanel(key, who);
  });
  const text = document.createElement('span');
  text.className = 'text';
  text.textContent = msg.text;
  li.append(time, ' ', who, ': ', text);
  prependCapped($('inbox'), li);
  if (panel.key === null || !rec || panel.key !== rec.key) {
    unread += 1;
    renderUnread();
  }
  announce(`Message from ${name}: ${msg.text}`, true);
}

// ---------------------------------------------------------------------------------------------
// Frame rendering

function requestFrame() {
  if (framePending) return;
  framePending = true;
  // A hidden tab gets no animation frames; fall back to a timer there so the title and
  // lists still follow (and the work does not pile up until the tab returns).
  if (document.hidden) setTimeout(frame, 500);
  else requestAnimationFrame(frame);
}

function frame() {
  if (!framePending) return;
  framePending = false;
  const now = Date.now();

  for (const key of dirty) {
    const rec = roster.records.get(key);
    if (!rec) continue;
    let view = views.get(key);
    if (!view) {
      view = createCard(rec);
      views.set(key, view);
      orderDirty = true;
    }
    updateCard(view, rec, now);
  }
  const panelDirty = panel.key !== null && dirty.has(panel.key);
  dirty.clear();

  if (filterDirty) {
    filterDirty = false;
    for (const [key, view] of views) applyFilter(view, roster.records.get(key));
  }

  if (orderDirty) {
    const wait = lastSortAt + RESORT_EVERY_MS - now;
    if (wait <= 0) {
      reorderGrid();
    } else if (!resortTimer) {
      resortTimer = setTimeout(() => {
        resortTimer = null;
        requestFrame();
      }, wait);
    }
  }

  flushIncidents(now);
  renderSummary();
  if (panelDirty) renderPanel(false);
}

function createCard(rec) {
  const el = $('card-template').content.firstElementChild.cloneNode(true);
  el.dataset.attempt = rec.attempt;
  el.dataset.quiz = rec.quiz;
  cardKeys.set(el, rec.key);
  const fields = {};
  for (const f of el.querySelectorAll('[data-field]')) fields[f.dataset.field] = f;
  fields.statusIcon = fields.status.querySelector('.icon');
  fields.statusLabel = fields.status.querySelector('.label');
  fields.scoreRow = el.querySelector('[data-row="score"]');
  if (proctor.quizzes.length > 1) {
    fields.quiz.hidden = false;
    fields.quiz.textContent = `Quiz ${rec.quiz}`;
  }
  $('grid').append(el);
  return { el, fields, shown: {}, sig: null, matched: true, status: null, flashTimer: null, flashAnimation: null };
}

/** Writes `text` into a field only if it differs from what is shown (cheap, no layout). */
function setText(view, field, text) {
  if (view.shown[field] === text) return;
  view.shown[field] = text;
  view.fields[field].textContent = text;
}

/** Toggles `hidden` only on a change: rewriting an attribute still invalidates style. */
function setHidden(el, hidden) {
  if (el.hidden !== hidden) el.hidden = hidden;
}

function updateCard(view, rec, now) {
  const d = rec.data;
  if (view.status !== rec.status) {
    view.status = rec.status;
    view.el.dataset.status = rec.status;
    view.fields.statusIcon.textContent = STATUS_LABELS[rec.status].icon;
    view.fields.statusLabel.textContent = STATUS_LABELS[rec.status].label;
  }
  setText(view, 'name', rec.name);
  setText(view, 'question', numberOrDash(d.question_number_current));
  setText(view, 'answered', d.question_total != null || d.question_answered != null
    ? `${numberOrDash(d.question_answered)} / ${numberOrDash(d.question_total)}`
    : '—');
  setText(view, 'away_count', String(d.away_count ?? 0));
  setHidden(view.fields.submitted, !rec.submitted);
  setHidden(view.fields.scoreRow, !rec.submitted);
  setText(view, 'score', rec.submitted ? String(d.score) : '');
  const reason = rec.status === 'offline' && d.reason ? `Reason: ${d.reason}` : '';
  setHidden(view.fields.reason, !reason);
  setText(view, 'reason', reason);
  view.timeEnd = parseTime(d.time_end);
  view.lastSeen = parseTime(d.last_seen);
  updateClockFields(view, now);

  // What a screen reader says on reaching the card: the essentials, in reading order.
  const label = `${rec.name}, ${STATUS_LABELS[rec.status].label}${rec.submitted ? `, submitted, score ${d.score}` : ''}`
    + `${reason ? `, ${reason}` : ''}, question ${view.shown.question}, answered ${view.shown.answered}`
    + `, away ${d.away_count ?? 0} times`;
  if (view.shown.aria !== label) {
    view.shown.aria = label;
    view.el.setAttribute('aria-label', label);
  }

  const sig = sortSignature(rec);
  if (sig !== view.sig) {
    view.sig = sig;
    orderDirty = true;
  }
  applyFilter(view, rec);
}

function updateClockFields(view, now) {
  setText(view, 'time_left', view.timeEnd === null ? '—' : formatRemaining(view.timeEnd - now));
  setText(view, 'last_seen', formatAgo(view.lastSeen, now));
}

function applyFilter(view, rec) {
  const matched = (!filter.quiz || rec.quiz === filter.quiz) && matchesFilter(rec, filter.text, filter.status);
  if (matched !== view.matched) {
    view.matched = matched;
    view.el.hidden = !matched;
  }
}

/**
 * Puts the cards in the chosen order, moving only those outside the longest run already in
 * order. A focused card that had to move gets its focus back (moving a node blurs it).
 */
function reorderGrid() {
  orderDirty = false;
  lastSortAt = Date.now();
  const grid = $('grid');
  const desired = roster.sorted(sortMode).map((rec) => views.get(rec.key)?.el).filter(Boolean);
  const current = new Map();
  Array.from(grid.children).forEach((el, i) => current.set(el, i));
  const keep = longestIncreasingRun(desired.map((el) => current.get(el) ?? -1));
  const focused = document.activeElement;
  let next = null;
  for (let i = desired.length - 1; i >= 0; i--) {
    if (!keep.has(i)) grid.insertBefore(desired[i], next);
    next = desired[i];
  }
  if (focused && focused !== document.activeElement && focused.isConnected) {
    focused.focus({ preventScroll: true });
  }
}

function renderSummary() {
  const c = roster.counts(filter.quiz || null);
  for (const li of $('summary').children) {
    const n = String(c[li.dataset.count]);
    const b = li.querySelector('[data-n]');
    if (b.textContent !== n) b.textContent = n;
  }
  let shown = 0;
  for (const view of views.values()) if (view.matched) shown += 1;
  const total = views.size;
  $('shown-count').textContent = total ? `${shown} of ${total} shown` : '';
  const empty = $('empty');
  empty.hidden = shown > 0;
  empty.textContent = total ? 'No student matches the filter.' : 'No student has connected yet.';
  const alerts = [c.offline && `${c.offline} offline`, c.away && `${c.away} away`].filter(Boolean);
  document.title = `${alerts.length ? `(${alerts.join(', ')}) ` : ''}invigil — proctor dashboard`;
}

// ---------------------------------------------------------------------------------------------
// Clock

function tick() {
  const now = Date.now();
  for (const view of views.values()) {
    if (view.matched) updateClockFields(view, now);
  }
  if (connState.state === 'reconnecting') renderConnState(connState);
  if (panel.key !== null) renderPanelFacts();
}

function renderConnState(s) {
  connState = s;
  const box = $('conn-state');
  box.dataset.state = s.state;
  $('grid').classList.toggle('stale', s.state !== 'live');
  const retry = $('conn-retry');
  retry.hidden = true;
  let text;
  switch (s.state) {
    case 'connecting':
      text = 'Connecting…';
      break;
    case 'live':
      text = 'Live';
      break;
    case 'reconnecting': {
      const secs = s.retryAt ? Math.max(0, Math.ceil((s.retryAt - Date.now()) / 1000)) : 0;
      text = `Reconnecting… ${s.reason ? `(${s.reason}) ` : ''}${secs > 0 ? `next try in ${secs} s` : 'trying now'}`;
      retry.hidden = secs <= 0;
      retry.textContent = 'Retry now';
      break;
    }
    case 'closed':
      text = `Disconnected: ${s.reason}.`;
      if (s.code === 4009) {
        retry.hidden = false;
        retry.textContent = 'Reconnect here';
      }
      if (s.expired) {
        // The page keeps showing what it knew; the paste box takes a fresh token.
        $('login').hidden = false;
        $('login-error').textContent = 'The token has expired: paste a new one to go on.';
      }
      break;
    default:
      text = s.state;
  }
  const el = $('conn-text');
  if (el.textContent !== text) el.textContent = text;
}

// ---------------------------------------------------------------------------------------------
// Incidents

let lastAnnounceAt = 0;
let announceTimer = null;
const pendingAnnouncements = [];

function flushIncidents(now) {
  if (!pendingIncidents.length) return;
  const list = $('incidents');
  list.querySelector('.placeholder')?.remove();
  // In a storm only the newest entries would survive the cap anyway: skip building the rest.
  const fresh = pendingIncidents.splice(0).slice(-LIST_LIMIT);
  const fragment = document.createDocumentFragment();
  for (const inc of fresh.reverse()) {
    const rec = roster.records.get(inc.key);
    const view = views.get(inc.key);
    if (!rec) continue;
    const li = document.createElement('li');
    li.className = `incident ${inc.kind}`;
    const time = document.createElement('time');
    time.dateTime = new Date(inc.t).toISOString();
    time.textContent = clockTime(inc.t);
    const who = document.createElement('button');
    who.type = 'button';
    who.className = 'link';
    who.textContent = rec.name;
    who.addEventListener('click', () => openPanel(inc.key, who));
    li.append(time, ' ', who, ` ${inc.text}`);
    fragment.append(li);
    if (view) flash(view, inc.kind);
  }
  list.prepend(fragment);
  while (list.children.length > LIST_LIMIT) list.lastElementChild.remove();
  for (const inc of fresh) {
    const rec = roster.records.get(inc.key);
    if (rec) pendingAnnouncements.push(`${rec.name} ${inc.text}`);
  }
  announce(null, false, now);
}

const reducedMotion = window.matchMedia('(prefers-reduced-motion: reduce)');
const darkScheme = window.matchMedia('(prefers-color-scheme: dark)');
/** The ring colours, read from the stylesheet once (and again when the colour scheme flips). */
let ringColours = null;
darkScheme.addEventListener('change', () => { ringColours = null; });

function ringColour(kind) {
  if (!ringColours) {
    const root = getComputedStyle(document.documentElement);
    ringColours = {
      away: root.getPropertyValue('--away-edge').trim() || '#e0a800',
      offline: root.getPropertyValue('--offline').trim() || '#b42318',
    };
  }
  return ringColours[kind] || ringColours.away;
}

/**
 * Rings the card for FLASH_MS. The Web Animations API restarts a ring without the forced
 * layout a CSS class toggle needs (at 20 incidents a second, each would lay out the grid).
 * With reduced motion the ring is still, and simply removed when the time is up.
 */
function flash(view, kind) {
  const colour = ringColour(kind);
  view.flashAnimation?.cancel();
  clearTimeout(view.flashTimer);
  if (reducedMotion.matches) {
    view.el.style.boxShadow = `0 0 0 4px ${colour}`;
    view.flashTimer = setTimeout(() => { view.el.style.boxShadow = ''; }, FLASH_MS);
    return;
  }
  view.flashAnimation = view.el.animate([
    { boxShadow: `0 0 0 4px ${colour}` },
    { boxShadow: `0 0 0 4px ${colour}`, offset: 0.3 },
    { boxShadow: '0 0 0 0 transparent' },
  ], { duration: FLASH_MS, easing: 'ease-out' });
}

/**
 * Speaks through the aria-live region, at most once per ANNOUNCE_EVERY_MS: what piles up in
 * between is merged ("Ann Lee went away; and 4 more incidents"). `urgent` texts go first.
 */
function announce(text, urgent = false, now = Date.now()) {
  if (text) {
    if (urgent) pendingAnnouncements.unshift(text);
    else pendingAnnouncements.push(text);
  }
  if (!pendingAnnouncements.length) return;
  const wait = lastAnnounceAt + ANNOUNCE_EVERY_MS - now;
  if (wait > 0) {
    if (!announceTimer) {
      announceTimer = setTimeout(() => {
        announceTimer = null;
        announce(null);
      }, wait);
    }
    return;
  }
  lastAnnounceAt = now;
  const items = pendingAnnouncements.splice(0);
  const head = items.slice(0, 2).join('. ');
  const more = items.length > 2 ? `. And ${items.length - 2} more.` : '.';
  $('announcer').textContent = head + more;
}

let audio = null;
let lastBeepAt = 0;

function beep(kind) {
  if (!$('sound').checked || !audio) return;
  const now = performance.now();
  if (now - lastBeepAt < BEEP_EVERY_MS) return;
  lastBeepAt = now;
  // Offline: two low tones; away: one high tone. Short and quiet: it is a nudge, not an alarm.
  const tones = kind === 'offline' ? [[440, 0], [330, 0.18]] : [[880, 0]];
  for (const [freq, at] of tones) {
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.frequency.value = freq;
    const t0 = audio.currentTime + at;
    gain.gain.setValueAtTime(0.0001, t0);
    gain.gain.exponentialRampToValueAtTime(0.15, t0 + 0.01);
    gain.gain.exponentialRampToValueAtTime(0.0001, t0 + 0.15);
    osc.connect(gain).connect(audio.destination);
    osc.start(t0);
    osc.stop(t0 + 0.16);
  }
}

// ---------------------------------------------------------------------------------------------
// Student panel

function openPanel(key, opener) {
  const rec = roster.records.get(key);
  if (!rec) return;
  panel = { key, opener: opener || document.activeElement, source: 'loading', serverEvents: null, timelineLen: -1 };
  for (const v of views.values()) v.el.classList.remove('selected');
  views.get(key)?.el.classList.add('selected');
  $('panel').hidden = false;
  document.body.classList.add('panel-open');
  $('msg-feedback').textContent = '';
  $('msg-text').value = '';
  renderPanel(true);
  $('panel').focus();
  if (unread && $('inbox').contains(opener)) {
    unread = 0;
    renderUnread();
  }
  loadServerTimeline(rec);
}

function closePanel() {
  if (panel.key === null) return;
  views.get(panel.key)?.el.classList.remove('selected');
  const opener = panel.opener;
  panel = { key: null, opener: null, source: 'live', serverEvents: null, timelineLen: -1 };
  $('panel').hidden = true;
  document.body.classList.remove('panel-open');
  if (opener && opener.isConnected) opener.focus();
}

function renderPanel(full) {
  const rec = roster.records.get(panel.key);
  if (!rec) return;
  $('panel-name').textContent = rec.name;
  const status = STATUS_LABELS[rec.status];
  const ps = $('panel-status');
  ps.dataset.status = rec.status;
  ps.textContent = `${status.icon} ${status.label}${rec.submitted ? ' · submitted' : ''}`
    + `${rec.status === 'offline' && rec.data.reason ? ` · ${rec.data.reason}` : ''}`;
  renderPanelFacts();
  if (full || panel.source === 'live') renderTimeline(rec);
}

function renderPanelFacts() {
  const rec = roster.records.get(panel.key);
  if (!rec) return;
  const d = rec.data;
  const now = Date.now();
  const timeEnd = parseTime(d.time_end);
  const facts = [
    ['Student id', d.student_id ?? '—'],
    ['Attempt', rec.attempt],
    ['Quiz', rec.quiz],
    ['Question', numberOrDash(d.question_number_current)],
    ['Answered', `${numberOrDash(d.question_answered)} / ${numberOrDash(d.question_total)}`],
    ['Time left', timeEnd === null ? '—' : formatRemaining(timeEnd - now)],
    ['Away events', String(d.away_count ?? 0)],
    ['Last seen', formatAgo(parseTime(d.last_seen), now)],
    ['Score', rec.submitted ? String(d.score) : '—'],
  ];
  const dl = $('panel-facts');
  const key = JSON.stringify(facts);
  if (dl.dataset.shown === key) return;
  dl.dataset.shown = key;
  dl.replaceChildren(...facts.flatMap(([k, v]) => {
    const dt = document.createElement('dt');
    dt.textContent = k;
    const dd = document.createElement('dd');
    dd.textContent = v;
    return [dt, dd];
  }));
}

/**
 * The server's history of the attempt when it offers one (GET .../events); otherwise the
 * transitions this page has seen, which keep growing while the panel is open.
 */
async function loadServerTimeline(rec) {
  const key = rec.key;
  const url = `/api/v1/quizzes/${encodeURIComponent(rec.quiz)}/events?attempt_id=${encodeURIComponent(rec.attempt)}`;
  let events = null;
  try {
    const res = await fetch(url, { headers: { Authorization: `Bearer ${proctor.token}` } });
    if (res.ok) {
      const body = await res.json();
      events = Array.isArray(body) ? body : Array.isArray(body?.events) ? body.events : null;
    }
  } catch {
    events = null;
  }
  if (panel.key !== key) return; // the proctor moved on meanwhile
  panel.source = events ? 'server' : 'live';
  panel.serverEvents = events;
  panel.timelineLen = -1;
  renderTimeline(roster.records.get(key));
}

function renderTimeline(rec) {
  const list = $('timeline');
  const source = $('timeline-source');
  if (panel.source === 'loading') {
    source.textContent = 'Loading history…';
    renderLiveTimeline(rec, list);
    return;
  }
  if (panel.source === 'server') {
    source.textContent = 'History from the server.';
    list.replaceChildren(...panel.serverEvents.slice().reverse().map(serverEventItem));
    if (!panel.serverEvents.length) list.replaceChildren(mutedItem('No events recorded.'));
    return;
  }
  source.textContent = 'Seen live by this page (no history from the server).';
  renderLiveTimeline(rec, list);
}

function renderLiveTimeline(rec, list) {
  if (panel.timelineLen === rec.timeline.length) return;
  panel.timelineLen = rec.timeline.length;
  const items = rec.timeline.slice().reverse().map(({ t, text }) => timelineItem(t, text));
  list.replaceChildren(...(items.length ? items : [mutedItem('Nothing yet.')]));
}

/** One event of the (not yet specified) events API; read leniently. */
function serverEventItem(e) {
  const t = parseTime(e.ts ?? e.t ?? e.timestamp ?? e.at ?? e.time ?? e.last_seen ?? e.data?.last_seen);
  const d = e.data && typeof e.data === 'object' ? e.data : e;
  const parts = [e.type || e.event || e.kind || 'event'];
  if (d.user_status) parts.push(d.user_status);
  if (d.reason) parts.push(`(${d.reason})`);
  if (e.text) parts.push(`“${e.text}”`);
  return timelineItem(t, parts.join(' '));
}

function timelineItem(t, text) {
  const li = document.createElement('li');
  const time = document.createElement('time');
  if (t !== null && t !== undefined) {
    time.dateTime = new Date(t).toISOString();
    time.textContent = clockTime(t);
  }
  li.append(time, ' ', text);
  return li;
}

function mutedItem(text) {
  const li = document.createElement('li');
  li.className = 'muted';
  li.textContent = text;
  return li;
}

function sendToStudent(ev) {
  ev.preventDefault();
  const rec = roster.records.get(panel.key);
  const text = $('msg-text').value.trim();
  if (!rec || !text) return;
  const kind = $('msg-kind').value === 'warning' ? 'warning' : 'chat';
  const feedback = $('msg-feedback');
  feedback.dataset.result = 'pending';
  feedback.textContent = `Sending ${kind}…`;
  const key = rec.key;
  const say = (result, message) => {
    if (panel.key !== key) return;
    feedback.dataset.result = result;
    feedback.textContent = message;
  };
  socket.send({ type: 'message_to_student', quiz_id: rec.quiz, quiz_attempt_id: rec.attempt, kind, text }, {
    onAck: () => {
      roster.note(rec, `you sent a ${kind}: “${text}”`);
      dirty.add(key);
      requestFrame();
      say('ok', `${kind === 'warning' ? 'Warning' : 'Message'} sent ✓`);
    },
    onError: (err) => say('error', describeSendError(err)),
  });
  $('msg-text').value = '';
}

function describeSendError(err) {
  switch (err.code) {
    case 'not_found':
      return 'Not delivered: student not connected.';
    case 'connection_lost':
      return 'Not sent: the dashboard is not connected.';
    case 'timeout':
      return 'No answer from the server; it may not have been delivered.';
    case 'rate_limited':
      return 'Not sent: too many messages, try again in a moment.';
    case 'forbidden':
      return 'Not sent: you may not message this quiz.';
    default:
      return `Not sent: ${err.message || err.code}`;
  }
}

// ---------------------------------------------------------------------------------------------
// Broadcast

async function broadcast(ev) {
  ev.preventDefault();
  const quiz = proctor.quizzes.length > 1 ? $('broadcast-quiz').value : proctor.quizzes[0];
  const kind = $('broadcast-kind').value === 'warning' ? 'warning' : 'chat';
  const text = $('broadcast-text').value.trim();
  const feedback = $('broadcast-feedback');
  if (!text) return;
  feedback.dataset.result = 'pending';
  feedback.textContent = 'Sending…';
  let ok = false;
  try {
    const res = await fetch(`/api/v1/quizzes/${encodeURIComponent(quiz)}/messages`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${proctor.token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ kind, text }),
    });
    ok = res.ok;
  } catch {
    ok = false;
  }
  $('broadcast-text').value = '';
  if (ok) {
    feedback.dataset.result = 'ok';
    feedback.textContent = `Sent to every student of quiz ${quiz} ✓`;
    return;
  }
  // The endpoint is for the LMS's API key; a proctor token may be refused. Fall back to one
  // message per connected student over the socket (paced by the socket's outbox).
  const targets = [...roster.records.values()].filter((r) => r.quiz === quiz && r.status !== 'offline');
  if (!targets.length) {
    feedback.dataset.result = 'error';
    feedback.textContent = 'No connected student to send to.';
    return;
  }
  const tally = { ok: 0, absent: 0, failed: 0 };
  const show = () => {
    const done = tally.ok + tally.absent + tally.failed;
    feedback.dataset.result = done < targets.length ? 'pending' : tally.failed || tally.absent ? 'partial' : 'ok';
    feedback.textContent = `One by one: ${tally.ok} of ${targets.length} delivered`
      + `${tally.absent ? `, ${tally.absent} not connected` : ''}${tally.failed ? `, ${tally.failed} failed` : ''}`
      + `${done < targets.length ? '…' : '.'}`;
  };
  show();
  for (const rec of targets) {
    let acked = false;
    socket.send({ type: 'message_to_student', quiz_id: quiz, quiz_attempt_id: rec.attempt, kind, text }, {
      onAck: () => {
        acked = true;
        tally.ok += 1;
        show();
      },
      onError: (err) => {
        // An error after an ack (not_found from another instance) moves it from ok to absent.
        if (acked) tally.ok -= 1;
        if (err.code === 'not_found') tally.absent += 1;
        else tally.failed += 1;
        show();
      },
    });
  }
}

// ---------------------------------------------------------------------------------------------
// UI wiring

function bindUi() {
  const grid = $('grid');
  grid.addEventListener('click', (ev) => {
    const card = ev.target.closest('.card');
    if (card) openPanel(cardKeys.get(card), card);
  });
  grid.addEventListener('keydown', onGridKey);
  $('panel-close').addEventListener('click', closePanel);
  document.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape' && panel.key !== null) {
      ev.preventDefault();
      closePanel();
    }
  });
  $('msg-form').addEventListener('submit', sendToStudent);
  $('broadcast').addEventListener('submit', broadcast);
  // Ctrl/Cmd+Enter sends from the text boxes, Enter alone makes a new line.
  for (const [box, form] of [['msg-text', 'msg-form'], ['broadcast-text', 'broadcast']]) {
    $(box).addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) {
        ev.preventDefault();
        $(form).requestSubmit();
      }
    });
  }
  $('toolbar').addEventListener('submit', (ev) => ev.preventDefault());
  $('filter-text').addEventListener('input', (ev) => {
    filter.text = ev.target.value.trim();
    filterDirty = true;
    requestFrame();
  });
  $('filter-status').addEventListener('change', (ev) => {
    filter.status = ev.target.value;
    filterDirty = true;
    requestFrame();
  });
  $('filter-quiz').addEventListener('change', (ev) => {
    filter.quiz = ev.target.value;
    filterDirty = true;
    requestFrame();
  });
  $('sort').addEventListener('change', (ev) => {
    sortMode = ev.target.value;
    orderDirty = true;
    lastSortAt = 0; // the proctor asked: sort now, not at the next slot
    requestFrame();
  });
  $('sound').addEventListener('change', (ev) => {
    // An AudioContext may only start from a user gesture: this change is one.
    if (ev.target.checked && !audio) {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      audio = Ctx ? new Ctx() : null;
    }
    audio?.resume?.();
  });
  $('conn-retry').addEventListener('click', () => {
    if (connState.state === 'closed') socket.start();
    else socket.retryNow();
  });
  // A frame asked for just before the tab was hidden would wait for the tab's return.
  document.addEventListener('visibilitychange', () => {
    if (document.hidden && framePending) setTimeout(frame, 500);
  });
  $('inbox').addEventListener('focusin', clearUnread);
  $('inbox').addEventListener('click', clearUnread);
}

/** Arrow keys move between visible cards (row by row with Up/Down), Enter/Space opens. */
function onGridKey(ev) {
  const card = ev.target.closest('.card');
  if (!card) return;
  if (ev.key === 'Enter' || ev.key === ' ') {
    ev.preventDefault();
    openPanel(cardKeys.get(card), card);
    return;
  }
  const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: 'down', ArrowUp: 'up', Home: 'home', End: 'end' };
  const move = moves[ev.key];
  if (move === undefined) return;
  ev.preventDefault();
  const cards = Array.from($('grid').children).filter((el) => !el.hidden);
  const i = cards.indexOf(card);
  const columns = Math.max(1, getComputedStyle($('grid')).gridTemplateColumns.split(' ').length);
  let j = i;
  if (move === 'home') j = 0;
  else if (move === 'end') j = cards.length - 1;
  else if (move === 'down') j = i + columns;
  else if (move === 'up') j = i - columns;
  else j = i + move;
  cards[Math.max(0, Math.min(cards.length - 1, j))]?.focus();
}

function clearUnread() {
  unread = 0;
  renderUnread();
}

function renderUnread() {
  const badge = $('inbox-unread');
  badge.hidden = unread === 0;
  badge.textContent = unread ? `${unread} new` : '';
}

// ---------------------------------------------------------------------------------------------
// Small helpers

function numberOrDash(v) {
  return v === null || v === undefined || v === '' ? '—' : String(v);
}

function clockTime(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

function prependCapped(list, li) {
  list.querySelector('.placeholder')?.remove();
  list.prepend(li);
  while (list.children.length > LIST_LIMIT) list.lastElementChild.remove();
}

/** A one-line problem for the proctor, shown in the incident list (not a student incident). */
function notice(text) {
  const li = document.createElement('li');
  li.className = 'incident notice';
  const time = document.createElement('time');
  time.textContent = clockTime(Date.now());
  li.append(time, ` ${text}`);
  prependCapped($('incidents'), li);
  announce(text, true);
}

boot();
