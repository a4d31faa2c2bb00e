/**
 * roster.js — the proctor dashboard's model: what the page knows about every attempt it
 * watches, with no DOM and no socket, so that it can be unit-tested in Node
 * (tests/e2e/roster.test.js).
 *
 * It owns:
 * - the `seq` rule of PROTOCOL.md: a `student_status` whose `seq` is not above the one held
 *   for that attempt (key: quiz_id + quiz_attempt_id) is stale and ignored; a `snapshot` is
 *   the truth at the moment it is sent and replaces what is held, `seq` included, because a
 *   restarted server may number from scratch;
 * - deriving the displayed status (active / away / offline) and spotting the transitions a
 *   proctor must be told about (into away, into offline);
 * - the live timeline of each attempt (transitions seen by this page), kept short;
 * - counting, sorting and filtering, and the fewest-moves plan for reordering cards;
 * - the small pure helpers the page needs: JWT payload decoding, time parsing and formatting.
 *
 * dashboard.js owns everything that touches the DOM; proctor-socket.js owns the connection.
 */

/** How many entries each attempt's live timeline keeps; older ones fall off the front. */
export const TIMELINE_LIMIT = 300;

/**
 * Decodes a JWT's payload (the middle part, base64url JSON). Nothing is verified: the server
 * does that; the page only needs the claims to know whom to show and what to subscribe to.
 * Returns null when the token is not a JWT.
 */
export function decodeJwtPayload(token) {
  if (typeof token !== 'string') return null;
  const parts = token.trim().split('.');
  if (parts.length !== 3) return null;
  try {
    let b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    b64 += '='.repeat((4 - (b64.length % 4)) % 4);
    const binary = atob(b64);
    // atob yields one char per byte; names may be UTF-8 (e.g. "Zoë"), so decode the bytes.
    const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    const payload = JSON.parse(new TextDecoder().decode(bytes));
    return payload && typeof payload === 'object' ? payload : null;
  } catch {
    return null;
  }
}

/**
 * A time field as milliseconds since the epoch, or null. The LMS sends `time_end` either as an
 * ISO string or as a number of milliseconds; a number small enough to be seconds (before 1973
 * as milliseconds) is taken as seconds, since no exam ends in 1970.
 */
export function parseTime(value) {
  if (value === null || value === undefined || value === '') return null;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) return null;
    return value < 1e11 ? value * 1000 : value;
  }
  if (typeof value === 'string') {
    const trimmed = value.trim();
    if (/^\d+(\.\d+)?$/.test(trimmed)) return parseTime(Number(trimmed));
    const ms = Date.parse(trimmed);
    return Number.isNaN(ms) ? null : ms;
  }
  return null;
}

/** Remaining time as "1:02:03", "12:04" or "0:00"; "—" when unknown. */
export function formatRemaining(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '—';
  const total = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const ss = String(s).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/** "just now", "42 s ago", "5 min ago", "3 h ago", "2 d ago"; "—" when unknown. */
export function formatAgo(thenMs, nowMs) {
  if (thenMs === null || thenMs === undefined || Number.isNaN(thenMs)) return '—';
  const s = Math.max(0, Math.floor((nowMs - thenMs) / 1000));
  if (s < 5) return 'just now';
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

/** "1st", "2nd", "3rd", "4th", ... for incident texts ("went away (2nd time)"). */
export function ordinal(n) {
  const mod100 = n % 100;
  if (mod100 >= 11 && mod100 <= 13) return `${n}th`;
  return `${n}${{ 1: 'st', 2: 'nd', 3: 'rd' }[n % 10] || 'th'}`;
}

/**
 * The status a card shows. A socket the server reports as gone is offline whatever the last
 * `user_status` said; otherwise the student's own report decides.
 */
export function statusOf(data) {
  if (!data || data.connected === false || data.user_status === 'offline') return 'offline';
  if (data.user_status === 'away') return 'away';
  return 'active';
}

/** Submitted means the LMS has put a score on the attempt. */
export function isSubmitted(data) {
  return !!data && data.score !== null && data.score !== undefined;
}

/** The name a proctor reads: `student_name`, else `student_id`, else the attempt id. */
export function displayName(data, attemptId) {
  return (data && (data.student_name || data.student_id)) || attemptId || '?';
}

/** Sort orders offered by the dashboard, by the value of its sort `<select>`. */
export const SORTS = {
  // Offline first, then away, then active: the students needing attention come first.
  attention: (a, b) =>
    STATUS_RANK[a.status] - STATUS_RANK[b.status] ||
    (b.data.away_count || 0) - (a.data.away_count || 0) ||
    a.sortName.localeCompare(b.sortName) ||
    a.key.localeCompare(b.key),
  away: (a, b) =>
    (b.data.away_count || 0) - (a.data.away_count || 0) ||
    STATUS_RANK[a.status] - STATUS_RANK[b.status] ||
    a.sortName.localeCompare(b.sortName) ||
    a.key.localeCompare(b.key),
  name: (a, b) => a.sortName.localeCompare(b.sortName) || a.key.localeCompare(b.key),
};

const STATUS_RANK = { offline: 0, away: 1, active: 2 };

/** The part of a record that its place in each sort order depends on. */
export function sortSignature(rec) {
  return `${rec.status}|${rec.data.away_count || 0}|${rec.sortName}`;
}

/**
 * Whether a record passes the filters: `text` (case-insensitive, on name, student id and
 * attempt id) and `status` ("all", "active", "away", "offline" or "submitted").
 */
export function matchesFilter(rec, text, status) {
  if (status && status !== 'all') {
    if (status === 'submitted' ? !rec.submitted : rec.status !== status) return false;
  }
  if (text) {
    const needle = text.toLowerCase();
    const hay = `${rec.name}\n${rec.data.student_id || ''}\n${rec.attempt}`.toLowerCase();
    if (!hay.includes(needle)) return false;
  }
  return true;
}

/**
 * Every attempt the page knows, keyed by quiz id + attempt id.
 *
 * `applyStatus` and `applySnapshot` return a `Change` for every record they touched:
 * `{rec, prevStatus, incident}` where `incident` is null or `{kind: 'away'|'offline', text}`.
 * The caller renders the records and raises the incidents.
 */
export class Roster {
  constructor() {
    /** key -> record; a record is {key, quiz, attempt, seq, data, status, submitted, name,
     *  sortName, timeline: [{t, text}]}. */
    this.records = new Map();
  }

  static key(quizId, attemptId) {
    // A NUL cannot occur in either id as sent over JSON by the LMS in practice, and unlike
    // ":" it cannot make two different pairs collide.
    return `${quizId}\u0000${attemptId}`;
  }

  get(quizId, attemptId) {
    return this.records.get(Roster.key(quizId, attemptId));
  }

  /**
   * A live `student_status`. Returns null (and changes nothing) when `seq` is not above the
   * one held, or when the message names no attempt.
   */
  applyStatus(quizId, seq, data, now = Date.now()) {
    if (!data || typeof data !== 'object') return null;
    const quiz = quizId ?? data.quiz_id;
    const attempt = data.quiz_attempt_id;
    if (quiz === undefined || attempt === undefined || attempt === null) return null;
    const key = Roster.key(quiz, attempt);
    const rec = this.records.get(key);
    if (rec && typeof seq === 'number' && typeof rec.seq === 'number' && seq <= rec.seq) {
      return null;
    }
    return this.#store(key, String(quiz), String(attempt), seq, data, now, { live: true });
  }

  /**
   * A `snapshot` of one quiz. Every listed attempt is replaced (and its `seq` reset to the
   * snapshot's), because after a reconnect the server may be a fresh process numbering anew.
   * Attempts held but not listed are unknown to the server now: they are kept, so that the
   * proctor does not lose sight of a student, but shown offline and their `seq` forgotten so
   * that the next live status is taken whatever its number.
   */
  applySnapshot(quizId, students, now = Date.now()) {
    const quiz = String(quizId);
    const changes = [];
    const listed = new Set();
    for (const data of Array.isArray(students) ? students : []) {
      if (!data || data.quiz_attempt_id === undefined || data.quiz_attempt_id === null) continue;
      const key = Roster.key(quiz, data.quiz_attempt_id);
      listed.add(key);
      changes.push(this.#store(key, quiz, String(data.quiz_attempt_id), data.seq, data, now, {
        live: false,
      }));
    }
    for (const rec of this.records.values()) {
      if (rec.quiz !== quiz || listed.has(rec.key)) continue;
      const data = { ...rec.data, connected: false, user_status: 'offline', reason: 'unknown to server' };
      changes.push(this.#store(rec.key, quiz, rec.attempt, undefined, data, now, { live: false }));
    }
    return changes;
  }

  /** Adds a line to an attempt's live timeline (status changes, messages sent and received). */
  note(rec, text, t = Date.now()) {
    rec.timeline.push({ t, text });
    if (rec.timeline.length > TIMELINE_LIMIT) {
      rec.timeline.splice(0, rec.timeline.length - TIMELINE_LIMIT);
    }
  }

  /** Counts for the summary bar; `submitted` overlaps the three statuses. */
  counts(quizFilter = null) {
    const c = { total: 0, active: 0, away: 0, offline: 0, submitted: 0 };
    for (const rec of this.records.values()) {
      if (quizFilter && rec.quiz !== quizFilter) continue;
      c.total += 1;
      c[rec.status] += 1;
      if (rec.submitted) c.submitted += 1;
    }
    return c;
  }

  /** All records in the order of `SORTS[mode]` (attention order when the mode is unknown). */
  sorted(mode) {
    return [...this.records.values()].sort(SORTS[mode] || SORTS.attention);
  }

  #store(key, quiz, attempt, seq, data, now, { live }) {
    let rec = this.records.get(key);
    const isNew = !rec;
    const prev = rec ? rec.data : null;
    const prevStatus = rec ? rec.status : null;
    if (isNew) {
      rec = { key, quiz, attempt, seq: undefined, data: {}, status: 'offline', submitted: false,
        name: '', sortName: '', timeline: [] };
      this.records.set(key, rec);
    }
    rec.seq = typeof seq === 'number' ? seq : undefined;
    rec.data = data;
    rec.status = statusOf(data);
    rec.submitted = isSubmitted(data);
    rec.name = displayName(data, attempt);
    rec.sortName = rec.name.toLowerCase();

    const incident = this.#incident(prev, prevStatus, rec, live);
    this.#recordTransition(rec, prev, prevStatus, isNew, live, now);
    return { rec, prevStatus, incident };
  }

  /**
   * What a proctor must be alerted to. Only a change against something this page already
   * knew, or a live status of a newcomer, counts: the first snapshot is the starting point,
   * not an alarm. A rising `away_count` while still away also counts, because the page may
   * have missed the "active" in between.
   */
  #incident(prev, prevStatus, rec, live) {
    if (!prev && !live) return null;
    const awayCount = rec.data.away_count || 0;
    if (rec.status === 'away') {
      const prevAwayCount = prev ? prev.away_count || 0 : 0;
      if (prevStatus !== 'away' || awayCount > prevAwayCount) {
        const times = awayCount > 0 ? ` (${ordinal(awayCount)} time)` : '';
        return { kind: 'away', text: `went away${times}` };
      }
    }
    if (rec.status === 'offline' && prevStatus !== 'offline') {
      const why = rec.data.reason ? `: ${rec.data.reason}` : '';
      return { kind: 'offline', text: `went offline${why}` };
    }
    return null;
  }

  #recordTransition(rec, prev, prevStatus, isNew, live, now) {
    const d = rec.data;
    const via = live ? '' : ' (on resync)';
    if (isNew) {
      this.note(rec, `first seen: ${describeStatus(d)}${via}`, now);
      return;
    }
    if (prevStatus !== rec.status) {
      this.note(rec, `${prevStatus} → ${describeStatus(d)}${via}`, now);
    } else if (rec.status === 'away' && (d.away_count || 0) > (prev.away_count || 0)) {
      this.note(rec, `away again (${ordinal(d.away_count)} time)${via}`, now);
    }
    if (!isSubmitted(prev) && rec.submitted) {
      this.note(rec, `submitted, score ${d.score}`, now);
    }
  }
}

function describeStatus(d) {
  const status = statusOf(d);
  if (status === 'offline') return d.reason ? `offline (${d.reason})` : 'offline';
  return status;
}

/**
 * Indices (into `positions`) of a longest strictly increasing subsequence, ignoring entries
 * below 0. Reordering the cards moves only the nodes outside it: the fewest DOM moves that
 * produce the new order, so a re-sort of 1,000 cards where three changed moves about three.
 */
export function longestIncreasingRun(positions) {
  const tails = []; // tails[k] = index in positions of the smallest tail of a run of length k+1
  const prevIdx = new Array(positions.length).fill(-1);
  for (let i = 0; i < positions.length; i++) {
    const p = positions[i];
    if (p < 0) continue;
    let lo = 0;
    let hi = tails.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (positions[tails[mid]] < p) lo = mid + 1;
      else hi = mid;
    }
    if (lo > 0) prevIdx[i] = tails[lo - 1];
    tails[lo] = i;
  }
  const keep = new Set();
  let i = tails.length ? tails[tails.length - 1] : -1;
  while (i >= 0) {
    keep.add(i);
    i = prevIdx[i];
  }
  return keep;
}
