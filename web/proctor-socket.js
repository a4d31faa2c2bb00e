/**
 * proctor-socket.js — the dashboard's WebSocket to the server, and nothing else: connecting,
 * waiting for `welcome`, reconnecting, detecting a dead connection, pacing what it sends, and
 * matching `ack` / `error` answers to the messages that asked for them. It knows the close
 * codes and message envelope of PROTOCOL.md but not what a snapshot or a status means; that
 * is dashboard.js's business (it is told through the callbacks).
 *
 * Why each mechanism is here:
 * - Backoff with jitter (0.5 s doubling to 15 s, each delay drawn between half and all of it):
 *   after a server restart, hundreds of dashboards and thousands of students must not knock on
 *   the door in the same millisecond.
 * - Close 1012 (server draining) reconnects at once, with under 300 ms of jitter: another
 *   instance is ready to take us. 4008 (policy) waits the longest delay, since reconnecting
 *   hard would just repeat the offence. 4009 (replaced) does not reconnect: two tabs that kept
 *   reconnecting would push each other out forever.
 * - App-level ping every 20 s (or the server's heartbeat if shorter): a browser never sees
 *   protocol pings, and a connection through a dead network can look open for minutes. No
 *   message within 10 s of a ping means the connection is gone; we drop it and reconnect.
 * - An outbox paced below the server's limit (10 messages/s sustained, bursts of 20, then
 *   `rate_limited` and eventually close 4008): a broadcast fallback to 500 students must trickle
 *   out, not get the dashboard thrown off.
 */

const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 15000;
const DRAIN_JITTER_MS = 300;
const PING_EVERY_MS = 20000;
const PONG_TIMEOUT_MS = 10000;
const WELCOME_TIMEOUT_MS = 10000;
/** Sustained send rate and burst, kept under the server's defaults (10/s, burst 20). */
const SEND_PER_SECOND = 8;
const SEND_BURST = 15;
/** How long an answer (ack or error) to a message with an `id` is waited for. */
const ANSWER_TIMEOUT_MS = 10000;
/** After an ack, how long a late `error` for the same id (e.g. not_found) is still matched. */
const AFTER_ACK_GRACE_MS = 5000;

/** What a close code means to a user, for the banner. */
const CLOSE_REASONS = {
  1009: 'a message was too large',
  1012: 'the server is restarting',
  4008: 'closed by the server for policy (too many or invalid messages)',
  4009: 'replaced by a newer connection',
};

export class ProctorSocket {
  /**
   * @param {object} opts
   * @param {string} opts.url  ws(s)://host/ws?token=...
   * @param {number|null} opts.expiresAt  token expiry in ms, or null; past it we stop trying
   * @param {(welcome: object) => void} opts.onWelcome  a connection is live (also after reconnects)
   * @param {(msg: object) => void} opts.onMessage  every other server message except ack/error/pong
   * @param {(state: object) => void} opts.onState  {state: 'connecting'|'live'|'reconnecting'|'closed',
   *   attempt, retryAt, reason, code (the close code), expired (closed for an expired token)}
   */
  constructor({ url, expiresAt = null, onWelcome, onMessage, onState }) {
    this.url = url;
    this.expiresAt = expiresAt;
    this.onWelcome = onWelcome;
    this.onMessage = onMessage;
    this.onState = onState;

    /** The current WebSocket, or null between connections. */
    this.ws = null;
    /** Consecutive failed connections; the next delay is derived from it. */
    this.attempt = 0;
    /** True once `welcome` arrived on the current socket. */
    this.live = false;
    /** Messages waiting for send budget: [{frame, pending}] */
    this.outbox = [];
    this.tokens = SEND_BURST;
    this.tokensAt = performance.now();
    /** id -> {onAck, onError, timer, acked} for messages that asked for an answer. */
    this.pending = new Map();
    this.nextId = 1;
    this.timers = { retry: null, ping: null, pong: null, welcome: null, pump: null };
    this.stopped = false;
  }

  start() {
    this.stopped = false;
    this.#open('connecting');
  }

  /** Gives up for good (page leaving). */
  stop() {
    this.stopped = true;
    this.#drop(1000, 'page closed');
    this.#clearTimer('retry');
  }

  /** Skips the remaining backoff (the banner's "Retry now" button). */
  retryNow() {
    if (this.ws || this.stopped) return;
    this.#clearTimer('retry');
    this.#open('reconnecting');
  }

  /**
   * Queues a message. When `onAck` or `onError` is given an `id` is added, and exactly one of
   * them is called: the server's ack or error, or an error with code `connection_lost` /
   * `timeout` when no answer can come. Returns the id (or undefined).
   */
  send(message, { onAck, onError } = {}) {
    const wantsAnswer = Boolean(onAck || onError);
    let id;
    if (wantsAnswer) {
      id = this.nextId++;
      message = { ...message, id };
      this.pending.set(id, { onAck, onError, timer: null, acked: false });
    }
    if (!this.live) {
      // Nothing is sent between connections: what the page needs after a reconnect (the
      // subscriptions) it sends again from onWelcome; anything else would be stale.
      if (wantsAnswer) this.#answer(id, { code: 'connection_lost', message: 'not connected' });
      return id;
    }
    this.outbox.push({ frame: JSON.stringify(message), id });
    this.#pump();
    return id;
  }

  /** Messages still waiting for send budget (the broadcast fallback shows progress with it). */
  get queued() {
    return this.outbox.length;
  }

  #open(state) {
    if (this.expiresAt !== null && Date.now() >= this.expiresAt) {
      this.#setState({ state: 'closed', expired: true, reason: 'the token has expired' });
      return;
    }
    this.#setState({ state, attempt: this.attempt });
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      this.#scheduleRetry(`cannot connect (${err.message})`);
      return;
    }
    this.ws = ws;
    this.live = false;
    ws.onmessage = (ev) => this.#onFrame(ev.data);
    ws.onclose = (ev) => this.#onClose(ev.code, ev.reason);
    // onerror is always followed by onclose, which does the work.
    ws.onerror = () => {};
    this.#setTimer('welcome', WELCOME_TIMEOUT_MS, () => {
      this.#drop(4000, 'no welcome');
      this.#scheduleRetry('the server did not greet us');
    });
  }

  #onFrame(raw) {
    // Any traffic proves the connection alive: no need to wait for the pong itself.
    this.#clearTimer('pong');
    let msg;
    try {
      msg = JSON.parse(raw);
    } catch {
      return; // not ours to interpret; the protocol only has JSON objects
    }
    if (!msg || typeof msg !== 'object') return;
    switch (msg.type) {
      case 'welcome':
        this.#clearTimer('welcome');
        this.live = true;
        this.attempt = 0;
        this.#startPing(msg.heartbeat_ms);
        this.#setState({ state: 'live', welcome: msg });
        this.onWelcome(msg);
        return;
      case 'pong':
        return;
      case 'ack':
        this.#answer(msg.id, null);
        return;
      case 'error':
        if (msg.id !== undefined && this.pending.has(msg.id)) {
          this.#answer(msg.id, msg);
          return;
        }
        this.onMessage(msg); // an error about no message of ours: let the page show it
        return;
      default:
        this.onMessage(msg);
    }
  }

  #onClose(code, reason) {
    this.#detach();
    if (this.stopped) return;
    if (code === 4009) {
      this.#setState({ state: 'closed', code, reason: CLOSE_REASONS[4009] });
      return;
    }
    const why = CLOSE_REASONS[code] || (reason ? `closed: ${reason}` : 'connection lost');
    if (code === 1012) {
      this.#scheduleRetry(why, Math.random() * DRAIN_JITTER_MS);
    } else if (code === 4008) {
      this.#scheduleRetry(why, BACKOFF_MAX_MS);
    } else {
      this.#scheduleRetry(why);
    }
  }

  #scheduleRetry(reason, delayMs) {
    if (this.stopped) return;
    if (delayMs === undefined) {
      const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** this.attempt);
      delayMs = ceiling / 2 + Math.random() * (ceiling / 2);
    }
    this.attempt += 1;
    const retryAt = Date.now() + delayMs;
    this.#setState({ state: 'reconnecting', attempt: this.attempt, retryAt, reason });
    this.#setTimer('retry', delayMs, () => this.#open('reconnecting'));
  }

  /** Closes the current socket, if any, without letting its late events reach us. */
  #drop(code, reason) {
    const ws = this.ws;
    this.#detach();
    if (ws) {
      try {
        ws.close(code === 1000 ? 1000 : 4000, reason);
      } catch {
        // already closing
      }
    }
  }

  /** Forgets the current socket: timers, queued frames, unanswered messages. */
  #detach() {
    if (this.ws) {
      this.ws.onmessage = this.ws.onclose = this.ws.onerror = null;
    }
    this.ws = null;
    this.live = false;
    for (const name of ['ping', 'pong', 'welcome', 'pump']) this.#clearTimer(name);
    this.outbox = [];
    for (const id of [...this.pending.keys()]) {
      this.#answer(id, { code: 'connection_lost', message: 'connection lost before an answer' });
    }
  }

  #startPing(heartbeatMs) {
    const every = Math.min(PING_EVERY_MS, Number(heartbeatMs) > 0 ? Number(heartbeatMs) : PING_EVERY_MS);
    const tick = () => {
      if (!this.live) return;
      this.outbox.push({ frame: '{"type":"ping"}' });
      this.#pump();
      // Armed once per silence: a ping sent while an earlier one is unanswered must not push
      // the deadline further out (with a short heartbeat it would never come).
      if (!this.timers.pong) {
        this.#setTimer('pong', PONG_TIMEOUT_MS, () => {
          this.#drop(4000, 'pong timeout');
          this.#scheduleRetry('no answer from the server');
        });
      }
      this.#setTimer('ping', every, tick);
    };
    this.#setTimer('ping', every, tick);
  }

  /** Sends what the token bucket allows now, and comes back when it has refilled. */
  #pump() {
    if (!this.ws || !this.live) return;
    const now = performance.now();
    this.tokens = Math.min(SEND_BURST, this.tokens + ((now - this.tokensAt) / 1000) * SEND_PER_SECOND);
    this.tokensAt = now;
    while (this.outbox.length && this.tokens >= 1) {
      const { frame, id } = this.outbox.shift();
      this.tokens -= 1;
      this.ws.send(frame);
      if (id !== undefined && this.pending.has(id)) {
        const entry = this.pending.get(id);
        entry.timer = setTimeout(
          () => this.#answer(id, { code: 'timeout', message: 'no answer from the server' }),
          ANSWER_TIMEOUT_MS,
        );
      }
    }
    if (this.outbox.length && !this.timers.pump) {
      const wait = ((1 - this.tokens) / SEND_PER_SECOND) * 1000;
      this.timers.pump = setTimeout(() => {
        this.timers.pump = null;
        this.#pump();
      }, Math.max(10, wait));
    }
  }

  /** Delivers the answer to message `id`: null for an ack, else the error object. */
  #answer(id, error) {
    const entry = this.pending.get(id);
    if (!entry) return;
    clearTimeout(entry.timer);
    if (error === null) {
      if (entry.acked) return;
      entry.acked = true;
      entry.onAck?.();
      // Keep listening a little: routing to another instance may still answer not_found.
      entry.timer = setTimeout(() => this.pending.delete(id), AFTER_ACK_GRACE_MS);
      return;
    }
    this.pending.delete(id);
    // A late error after an ack is a real error (e.g. not_found) and is reported; a lost
    // connection or timeout after an ack is not: the server already took the message.
    if (entry.acked && (error.code === 'connection_lost' || error.code === 'timeout')) return;
    entry.onError?.(error);
  }

  #setState(s) {
    this.onState(s);
  }

  #setTimer(name, ms, fn) {
    clearTimeout(this.timers[name]);
    this.timers[name] = setTimeout(() => {
      this.timers[name] = null;
      fn();
    }, ms);
  }

  #clearTimer(name) {
    clearTimeout(this.timers[name]);
    this.timers[name] = null;
  }
}
