/**
 * invigil-student.js — what an exam page includes to report its student to the proctors.
 * Served at /static/invigil-student.js; no dependencies, no build step.
 *
 *   <script type="module">
 *     import * as Invigil from '/static/invigil-student.js';
 *     Invigil.connect({ token, fields: { time_end: '2025-01-01T10:00:00Z' } });
 *     Invigil.setQuestion(4); Invigil.setAnswered(3, 40); Invigil.submitted(87);
 *   </script>
 *
 * Loaded as a module it also sets `window.Invigil` (and fires `invigil:ready` on window), so
 * the page's classic scripts can use the same API once the module has run.
 *
 * What it owns:
 * - The status report of PROTOCOL.md (`message_to_master` / `lmsQuizMonitoringStudent`): sent
 *   on every change and every 5 s as a heartbeat of status, and again right after each
 *   reconnect, so the proctor always holds the latest state.
 * - Presence: `away` when the page is hidden (visibilitychange) or the window loses focus
 *   (blur) for more than 300 ms, `active` again as soon as it is visible and focused. Focus
 *   moving into one of the page's own iframes is not "away", nor is closing the tab (that is
 *   the server's "offline").
 * - The connection: reconnect with backoff and jitter (0.5 s doubling to 15 s); close 1012
 *   (server draining) reconnects at once; 4009 (this attempt was opened in a newer tab) does
 *   not reconnect, it shows a notice, because two tabs reconnecting would evict each other
 *   forever. An app-level ping every 20 s detects a dead connection the browser cannot see.
 * - Proctor messages: handed to `onProctorMessage`, or shown as a toast (warnings prominent
 *   and kept until dismissed) when no callback is given.
 */

const HEARTBEAT_MS = 5000;
const COALESCE_MS = 200;
/** A page hidden or blurred for less than this is not reported away (see onPresenceChange). */
const AWAY_GRACE_MS = 300;
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 15000;
/** Thousands of students are told to move at once when a server drains: spread them a bit. */
const DRAIN_JITTER_MS = 1000;
const PING_EVERY_MS = 20000;
const PONG_TIMEOUT_MS = 10000;
const ANSWER_TIMEOUT_MS = 10000;
/** Chat lines typed while disconnected wait for the next connection, up to this many. */
const OFFLINE_QUEUE_LIMIT = 20;
const CHAT_TOAST_MS = 12000;

/** Everything about the one connection this page keeps. */
const client = {
  opts: null,
  /** The token's claims: quiz_id, attempt_id, sub, name. */
  claims: null,
  ws: null,
  /** True between `welcome` and close. */
  live: false,
  /** Consecutive failed connections, for the backoff. */
  attempt: 0,
  /** disconnect() was called, or a newer tab took over: never reconnect. */
  stopped: true,
  /** What the student is doing; sent as the status report. */
  state: {
    user_status: 'active',
    question_answered: null,
    question_total: null,
    question_number_current: null,
    score: null,
  },
  /** Extra fields passed through to the proctor (time_start, time_end, quiz_participant_id…). */
  fields: {},
  presence: { hidden: false, blurred: false },
  /** pagehide fired: the page is going away, so a pending "away" must not be reported. */
  unloading: false,
  /** Counts blur and focus events, so that a blur handled late can tell it was overtaken. */
  focusSeq: 0,
  timers: {},
  lastStatusAt: 0,
  nextId: 1,
  /** id -> {resolve, reject, timer} for sendToProctor promises. */
  pending: new Map(),
  /** Chat lines waiting for a connection: [{text, resolve, reject}] */
  outbox: [],
  connection: 'closed',
};

// ---------------------------------------------------------------------------------------------
// Public API

/**
 * Starts reporting. Options:
 * - `token` (required): the student JWT from the LMS;
 * - `url`: the WebSocket endpoint, default `ws(s)://<this host>/ws`;
 * - `fields`: extra status fields (time_start, time_end, quiz_participant_id, student_name…);
 * - `onProctorMessage(msg)`: receives `{kind, from, text, ts}`; without it a toast is shown;
 * - `onConnectionChange(state, detail)`: 'connecting' | 'live' | 'reconnecting' | 'replaced' | 'closed';
 * - `onError(error)`: an `error` message from the server (e.g. forbidden).
 */
export function connect(options = {}) {
  if (!options.token) throw new Error('Invigil.connect: a token is required');
  if (!client.stopped) disconnect();
  const claims = decodeJwtPayload(options.token);
  if (!claims) throw new Error('Invigil.connect: the token is not a JWT');
  client.opts = options;
  client.claims = claims;
  client.fields = { ...(options.fields || {}) };
  client.stopped = false;
  client.attempt = 0;
  client.presence.hidden = document.visibilityState === 'hidden';
  client.presence.blurred = false;
  client.unloading = false;
  client.state.user_status = presenceStatus();
  listenPresence(true);
  open('connecting');
}

/** The question the student is looking at (1-based, as the LMS numbers them). */
export function setQuestion(n) {
  update({ question_number_current: n });
}

/** How many questions are answered, of how many. */
export function setAnswered(n, total) {
  update(total === undefined ? { question_answered: n } : { question_answered: n, question_total: total });
}

/** The attempt is submitted, with its score. */
export function submitted(score) {
  // The dashboard shows an attempt as submitted once `score` is not null, so pass the score
  // known at submission; when grading comes later, call submitted(score) again then.
  update({ score: score ?? null }, true);
}

/** More fields to pass through (e.g. an extended `time_end`). */
export function setFields(fields) {
  Object.assign(client.fields, fields);
  sendStatusSoon(false);
}

/**
 * A chat line to the quiz's proctors. Resolves when the server has taken it (ack), rejects
 * with the server's error or on timeout. Typed while disconnected, it waits for the next
 * connection.
 */
export function sendToProctor(text) {
  return new Promise((resolve, reject) => {
    const line = String(text ?? '').trim();
    if (!line) return reject(new Error('empty message'));
    if (client.live) return sendChat(line, resolve, reject);
    if (client.stopped) return reject(new Error('not connected'));
    if (client.outbox.length >= OFFLINE_QUEUE_LIMIT) return reject(new Error('too many unsent messages'));
    client.outbox.push({ text: line, resolve, reject });
  });
}

/** Stops reporting and closes the connection (the proctor then sees the student offline). */
export function disconnect() {
  client.stopped = true;
  listenPresence(false);
  closeSocket(1000, 'bye');
  clearTimer('retry');
  clearTimer('away');
  for (const { reject } of client.outbox.splice(0)) reject(new Error('disconnected'));
  setConnection('closed');
}

/** The connection state and the status last reported, for pages that show them. */
export function getState() {
  return { connection: client.connection, ...client.state };
}

// ---------------------------------------------------------------------------------------------
// Status reports

function update(changes, urgent = false) {
  let changed = false;
  for (const [k, v] of Object.entries(changes)) {
    if (client.state[k] !== v) {
      client.state[k] = v;
      changed = true;
    }
  }
  if (changed) sendStatusSoon(urgent);
}

/**
 * Presence changes go out at once (a short absence must not be folded into the next
 * report); the rest is coalesced to one report per COALESCE_MS, so that clicking quickly
 * through questions stays far below the server's rate limit.
 */
function sendStatusSoon(urgent) {
  if (!client.live) return; // sent in full right after the next welcome
  if (urgent) {
    sendStatus();
    return;
  }
  if (client.timers.coalesce) return;
  const wait = Math.max(0, client.lastStatusAt + COALESCE_MS - Date.now());
  setTimer('coalesce', wait, sendStatus);
}

function sendStatus() {
  clearTimer('coalesce');
  if (!client.live) return;
  const c = client.claims;
  const f = client.fields;
  const data = {
    ...f,
    // Identity comes from the token: the server refuses a report that disagrees with it.
    quiz_id: c.quiz_id,
    quiz_attempt_id: c.attempt_id,
    student_id: c.sub,
    ...client.state,
    student_name: f.student_name ?? c.name ?? null,
    time_start: f.time_start ?? null,
    time_end: f.time_end ?? null,
    timestamp_sent: Date.now(),
  };
  client.lastStatusAt = Date.now();
  sendFrame({
    type: 'message_to_master',
    id: client.nextId++,
    message: { action: 'lmsQuizMonitoringStudent', data },
  });
  // Each report restarts the heartbeat, so a busy student does not also send idle ones.
  setTimer('heartbeat', HEARTBEAT_MS, sendStatus);
}

// ---------------------------------------------------------------------------------------------
// Presence

function presenceStatus() {
  return client.presence.hidden || client.presence.blurred ? 'away' : 'active';
}

/**
 * Returning is reported at once; leaving only after AWAY_GRACE_MS. Closing the tab hides the
 * page (visibilitychange) before it unloads: without the grace every closed tab would first
 * count as an "away" and raise a second, misleading incident next to the "offline".
 */
function onPresenceChange() {
  const status = presenceStatus();
  if (status === 'active') {
    clearTimer('away');
    update({ user_status: 'active' }, true);
    return;
  }
  if (client.timers.away || client.state.user_status === 'away') return;
  setTimer('away', AWAY_GRACE_MS, () => {
    if (!client.unloading && presenceStatus() === 'away') update({ user_status: 'away' }, true);
  });
}

const presenceHandlers = {
  visibilitychange() {
    client.presence.hidden = document.visibilityState === 'hidden';
    // Coming back to a tab also focuses it, but the focus event may come first or not at all
    // (e.g. the window was already focused): trust hasFocus() when visible.
    if (!client.presence.hidden && document.hasFocus()) client.presence.blurred = false;
    onPresenceChange();
  },
  blur() {
    // Wait for focus to settle: clicking into the page's own iframe blurs the window too, and
    // a focus right after the blur (counted by focusSeq) makes it moot.
    const seq = ++client.focusSeq;
    setTimeout(() => {
      if (seq !== client.focusSeq) return;
      if (document.activeElement && document.activeElement.tagName === 'IFRAME') return;
      client.presence.blurred = true;
      onPresenceChange();
    }, 0);
  },
  focus() {
    client.focusSeq += 1;
    client.presence.blurred = false;
    onPresenceChange();
  },
  pagehide() {
    client.unloading = true;
  },
  pageshow() {
    client.unloading = false; // back from the back/forward cache
  },
};

function listenPresence(on) {
  const method = on ? 'addEventListener' : 'removeEventListener';
  document[method]('visibilitychange', presenceHandlers.visibilitychange);
  window[method]('blur', presenceHandlers.blur);
  window[method]('focus', presenceHandlers.focus);
  window[method]('pagehide', presenceHandlers.pagehide);
  window[method]('pageshow', presenceHandlers.pageshow);
}

// ---------------------------------------------------------------------------------------------
// Connection

function open(state) {
  setConnection(state);
  const url = endpoint();
  let ws;
  try {
    ws = new WebSocket(url);
  } catch (err) {
    // A malformed `url` option: retrying will not help, but say so rather than die silently.
    console.warn('invigil: cannot open the WebSocket', err.message);
    scheduleRetry();
    return;
  }
  client.ws = ws;
  client.live = false;
  ws.onmessage = (ev) => onFrame(ev.data);
  ws.onclose = (ev) => onClose(ev.code);
  ws.onerror = () => {}; // always followed by onclose
}

function endpoint() {
  const base = client.opts.url
    || `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
  return `${base}${base.includes('?') ? '&' : '?'}token=${encodeURIComponent(client.opts.token)}`;
}

function onFrame(raw) {
  clearTimer('pong'); // any traffic proves the connection alive
  let msg;
  try {
    msg = JSON.parse(raw);
  } catch {
    return;
  }
  if (!msg || typeof msg !== 'object') return;
  switch (msg.type) {
    case 'welcome':
      client.live = true;
      client.attempt = 0;
      setConnection('live', msg);
      startPing(msg.heartbeat_ms);
      sendStatus();
      for (const { text, resolve, reject } of client.outbox.splice(0)) sendChat(text, resolve, reject);
      return;
    case 'proctor_message':
      showProctorMessage(msg);
      return;
    case 'ack':
      settle(msg.id, null);
      return;
    case 'error':
      // An error about a chat line rejects its promise; any other (e.g. `forbidden` for a
      // status report) goes to onError, or the console for lack of a better place.
      if (settle(msg.id, msg)) return;
      if (client.opts.onError) client.opts.onError(msg);
      else console.warn('invigil: server error', msg);
      return;
    default:
      // pong and anything newer: nothing to do
  }
}

function onClose(code) {
  detach();
  if (client.stopped) return;
  if (code === 4009) {
    client.stopped = true;
    listenPresence(false);
    setConnection('replaced');
    showNotice('This exam was opened in another tab or window. This page no longer reports to '
      + 'your proctor: please continue in the other one.');
    return;
  }
  if (code === 1012) scheduleRetry(Math.random() * DRAIN_JITTER_MS);
  else if (code === 4008) scheduleRetry(BACKOFF_MAX_MS);
  else scheduleRetry();
}

function scheduleRetry(delayMs) {
  if (client.stopped) return;
  if (delayMs === undefined) {
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** client.attempt);
    delayMs = ceiling / 2 + Math.random() * (ceiling / 2);
  }
  client.attempt += 1;
  setConnection('reconnecting', { retryAt: Date.now() + delayMs, attempt: client.attempt });
  setTimer('retry', delayMs, () => open('reconnecting'));
}

function startPing(heartbeatMs) {
  const every = Math.min(PING_EVERY_MS, Number(heartbeatMs) > 0 ? Number(heartbeatMs) : PING_EVERY_MS);
  const tick = () => {
    if (!client.live) return;
    sendFrame({ type: 'ping' });
    // Armed once per silence: later pings must not push the deadline further out.
    if (!client.timers.pong) {
      setTimer('pong', PONG_TIMEOUT_MS, () => {
        closeSocket(4000, 'pong timeout');
        scheduleRetry();
      });
    }
    setTimer('ping', every, tick);
  };
  setTimer('ping', every, tick);
}

function sendFrame(message) {
  if (client.ws && client.ws.readyState === WebSocket.OPEN) client.ws.send(JSON.stringify(message));
}

function closeSocket(code, reason) {
  const ws = client.ws;
  detach();
  if (ws) {
    try {
      ws.close(code, reason);
    } catch {
      // already closing
    }
  }
}

/** Forgets the current socket; unanswered chat lines fail (their sender may retry). */
function detach() {
  if (client.ws) client.ws.onmessage = client.ws.onclose = client.ws.onerror = null;
  client.ws = null;
  client.live = false;
  for (const t of ['heartbeat', 'coalesce', 'ping', 'pong']) clearTimer(t);
  for (const id of [...client.pending.keys()]) settle(id, { code: 'connection_lost', message: 'connection lost' });
}

function setConnection(state, detail = {}) {
  client.connection = state;
  client.opts?.onConnectionChange?.(state, detail);
}

// ---------------------------------------------------------------------------------------------
// Chat with the proctor

function sendChat(text, resolve, reject) {
  const id = client.nextId++;
  const timer = setTimeout(() => settle(id, { code: 'timeout', message: 'no answer from the server' }),
    ANSWER_TIMEOUT_MS);
  client.pending.set(id, { resolve, reject, timer });
  sendFrame({ type: 'message_to_proctor', text, id });
}

/** Answers a pending chat line; returns false when `id` was not one. */
function settle(id, error) {
  const entry = client.pending.get(id);
  if (!entry) return false;
  client.pending.delete(id);
  clearTimeout(entry.timer);
  if (error) {
    const err = new Error(error.message || error.code);
    err.code = error.code;
    entry.reject(err);
  } else {
    entry.resolve();
  }
  return true;
}

function showProctorMessage(msg) {
  const message = {
    kind: msg.kind === 'warning' ? 'warning' : 'chat',
    from: msg.from ?? 'Proctor',
    text: String(msg.text ?? ''),
    ts: msg.ts,
  };
  if (client.opts?.onProctorMessage) {
    client.opts.onProctorMessage(message);
    return;
  }
  toast(message);
}

// ---------------------------------------------------------------------------------------------
// Default UI: toasts and the replaced notice (only when the page has no UI of its own)

// Class names are prefixed and every element sets what it relies on, so the exam page's own
// styles (e.g. a rule for all <header> or <p>) do not reshape the toasts.
const STYLE = `
.invigil-toasts{position:fixed;z-index:2147483646;display:grid;gap:10px;
  font:15px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
.invigil-toasts.invigil-chat{right:16px;bottom:16px;width:min(380px,calc(100vw - 32px))}
.invigil-toasts.invigil-warnings{left:50%;top:16px;transform:translateX(-50%);width:min(560px,calc(100vw - 32px))}
.invigil-toast{margin:0;background:#fff;color:#1d2330;border:1px solid #cfd5df;border-left:6px solid #2457c5;
  border-radius:10px;padding:10px 12px;box-shadow:0 6px 24px rgba(16,24,40,.18);text-align:left}
.invigil-toast[data-kind="warning"]{background:#fff4e5;border:2px solid #b42318;border-left-width:10px;
  font-size:17px;box-shadow:0 10px 40px rgba(180,35,24,.35)}
.invigil-toast-head{display:flex;justify-content:space-between;gap:8px;align-items:center;margin:0;padding:0;
  background:none;border:0;font-weight:700}
.invigil-toast[data-kind="warning"] .invigil-toast-head{color:#b42318;text-transform:uppercase;letter-spacing:.03em}
.invigil-toast-text{margin:6px 0 0;padding:0;white-space:pre-wrap;overflow-wrap:anywhere}
.invigil-toast-close{flex:none;border:1px solid currentColor;background:transparent;border-radius:6px;
  padding:2px 10px;margin:0;cursor:pointer;font:inherit;font-size:13px;text-transform:none;letter-spacing:0;color:inherit}
.invigil-notice{position:fixed;left:0;right:0;top:0;z-index:2147483647;background:#b42318;color:#fff;margin:0;
  padding:14px 18px;font:600 16px/1.4 system-ui,sans-serif;text-align:center}
`;

function ensureStyle() {
  if (document.getElementById('invigil-style')) return;
  const style = document.createElement('style');
  style.id = 'invigil-style';
  style.textContent = STYLE;
  document.head.append(style);
}

/** Warnings stack at the top centre, where they cannot be missed; chat lines bottom right. */
function toastBox(kind) {
  const cls = kind === 'warning' ? 'invigil-warnings' : 'invigil-chat';
  let box = document.querySelector(`.invigil-toasts.${cls}`);
  if (!box) {
    ensureStyle();
    box = document.createElement('div');
    box.className = `invigil-toasts ${cls}`;
    document.body.append(box);
  }
  return box;
}

function toast({ kind, from, text }) {
  const el = document.createElement('div');
  el.className = 'invigil-toast';
  el.dataset.kind = kind;
  // A warning interrupts (alert) and stays until dismissed; a chat line is polite and fades.
  el.setAttribute('role', kind === 'warning' ? 'alert' : 'status');
  const head = document.createElement('div');
  head.className = 'invigil-toast-head';
  const title = document.createElement('span');
  title.textContent = kind === 'warning' ? `⚠ Warning from ${from}` : `Message from ${from}`;
  const close = document.createElement('button');
  close.type = 'button';
  close.className = 'invigil-toast-close';
  close.textContent = kind === 'warning' ? 'I understand' : 'Dismiss';
  close.addEventListener('click', () => el.remove());
  head.append(title, close);
  const body = document.createElement('p');
  body.className = 'invigil-toast-text';
  body.textContent = text;
  el.append(head, body);
  toastBox(kind).append(el);
  if (kind !== 'warning') setTimeout(() => el.remove(), CHAT_TOAST_MS);
}

function showNotice(text) {
  ensureStyle();
  let el = document.querySelector('.invigil-notice');
  if (!el) {
    el = document.createElement('div');
    el.className = 'invigil-notice';
    el.setAttribute('role', 'alert');
    document.body.prepend(el);
  }
  el.textContent = text;
}

// ---------------------------------------------------------------------------------------------
// Helpers

function decodeJwtPayload(token) {
  const parts = String(token).trim().split('.');
  if (parts.length !== 3) return null;
  try {
    let b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    b64 += '='.repeat((4 - (b64.length % 4)) % 4);
    const bytes = Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return claims && typeof claims === 'object' ? claims : null;
  } catch {
    return null;
  }
}

function setTimer(name, ms, fn) {
  clearTimeout(client.timers[name]);
  client.timers[name] = setTimeout(() => {
    client.timers[name] = null;
    fn();
  }, ms);
}

function clearTimer(name) {
  clearTimeout(client.timers[name]);
  client.timers[name] = null;
}

const Invigil = { connect, setQuestion, setAnswered, submitted, setFields, sendToProctor, disconnect, getState };

if (typeof window !== 'undefined') {
  window.Invigil = Invigil;
  window.dispatchEvent(new Event('invigil:ready'));
}

export default Invigil;
