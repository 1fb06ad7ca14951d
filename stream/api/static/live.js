// Live page: the alert feed (Server-Sent Events from /api/stream) and the camera grid (/api/cameras).
import {api} from './api.js';
import {bust, clear, errText, fill, fmtAgo, fmtClock, fmtNum, fmtTime, h, img, lightbox, scoreView, toast, who} from './dom.js';

const MAX_CARDS = 200;
const STALE_S = 45; // no message (not even the 15 s ping) for this long: the stream is dead even if the socket is open

/** Everything the stream says, for the other pages: 'alert' and 'camera' events with detail = the JSON. */
export const bus = new EventTarget();

// Benchmark hook: end-to-end latency (capture -> card on screen) of every alert that arrived live.
window.facewatchLatencies = window.facewatchLatencies || [];

export function createLivePage() {
  const feed = h('div', {class: 'feed', id: 'alert-feed', 'aria-live': 'polite'});
  const feedEmpty = h('p', {class: 'empty', id: 'feed-empty'}, 'No alerts yet.');
  const grid = h('div', {class: 'cam-grid', id: 'camera-grid'});
  const gridMsg = h('p', {class: 'empty'}, 'Loading cameras…');
  const alertCount = h('span', {class: 'count'});
  const el = h('section', {class: 'page', id: 'page-live'},
    h('div', {class: 'section-head'}, h('h2', null, 'Cameras')),
    gridMsg, grid,
    h('div', {class: 'section-head'}, h('h2', null, 'Alerts ', alertCount),
      h('span', {class: 'muted small'}, 'newest first · click a snapshot to enlarge')),
    feedEmpty, feed);

  const cards = new Map(); // event id -> card element
  const tiles = new Map(); // camera name -> {el, parts}
  let cameraTimer = null;
  let visible = false;

  // ------------------------------------------------------------------- alerts
  function card(ev) {
    const frame = ev.frame_url
      ? h('button', {class: 'thumb-btn', type: 'button', title: 'enlarge the frame',
        onclick: () => lightbox(ev.frame_url, `${who(ev)} · ${ev.camera} · ${fmtTime(ev.ts_capture || ev.ts)}`)},
      img(ev.frame_url, {class: 'thumb', alt: 'frame snapshot'}))
      : h('div', {class: 'noimg thumb'}, 'no frame');
    const fb = ev.feedback
      ? h('span', {class: `tag fb-${ev.feedback}`}, ev.feedback === 'rejected'
        ? `rejected: not ${ev.feedback_identity || ev.identity || ''}` : `confirmed: ${ev.feedback_identity || ''}`)
      : null;
    return h('article', {class: `alert-card kind-${ev.kind}`, dataset: {eventId: ev.id, camera: ev.camera}},
      img(ev.face_url, {class: 'chip', alt: 'face'}),
      h('div', {class: 'alert-info'},
        h('div', {class: 'alert-who'}, h('span', {class: 'who'}, who(ev)),
          h('span', {class: `tag kind ${ev.kind}`}, ev.kind === 'watchlist' ? 'WATCHLIST' : 'UNKNOWN'), fb),
        h('div', {class: 'alert-meta'},
          h('span', {class: 'camera'}, ev.camera), ' · ',
          h('time', {datetime: new Date((ev.ts_capture || ev.ts) * 1000).toISOString(), title: fmtTime(ev.ts_capture || ev.ts)},
            fmtClock(ev.ts_capture || ev.ts)),
          ev.source === 'scan' && ev.video_file ? h('span', {class: 'muted'}, ` · ${ev.video_file} @ ${fmtNum(ev.video_time, 1)} s`) : null),
        scoreView(ev.score, ev.threshold),
        h('div', {class: 'alert-lat muted small'},
          h('span', {title: 'capture to alert, in the pipeline'}, 'latency '), h('span', {class: 'latency'}, ev.latency_ms === null || ev.latency_ms === undefined ? '—' : `${Math.round(ev.latency_ms)} ms`),
          h('span', {class: 'e2e'}))),
      frame);
  }

  function updateCount() {
    alertCount.textContent = cards.size ? `(${cards.size})` : '';
    feedEmpty.hidden = cards.size > 0;
  }

  /** Insert an event card; live ones go on top at once, history in time order. */
  function addAlert(ev, live) {
    if (cards.has(ev.id)) return;
    const c = card(ev);
    cards.set(ev.id, c);
    if (live) {
      feed.prepend(c);
      c.classList.add('fresh');
      requestAnimationFrame(() => {
        const ms = (Date.now() / 1000 - ev.ts_capture) * 1000;
        window.facewatchLatencies.push({id: ev.id, camera: ev.camera, ms});
        c.dataset.e2eMs = ms.toFixed(0);
        const e2e = c.querySelector('.e2e');
        if (e2e) e2e.textContent = ` · on screen ${Math.round(ms)} ms`;
      });
    } else {
      // history: keep the feed newest first (event ids grow with time)
      let before = null;
      for (const other of feed.children) {
        if (Number(other.dataset.eventId) < ev.id) { before = other; break; }
      }
      feed.insertBefore(c, before);
    }
    while (feed.children.length > MAX_CARDS) {
      const last = feed.lastElementChild;
      cards.delete(Number(last.dataset.eventId));
      last.remove();
    }
    updateCount();
  }

  /** The latest events from the store: at start and after every reconnect (the stream sends only what is new). */
  async function backfill() {
    try {
      const r = await api('/api/events?limit=30');
      for (const ev of r.events) addAlert(ev, false);
    } catch (e) {
      if (e.status !== 401) toast(`Could not load recent alerts: ${errText(e)}`);
    }
  }

  // ------------------------------------------------------------------- cameras
  function tile(name) {
    const parts = {
      frame: h('div', {class: 'cam-frame'}, h('div', {class: 'noimg'}, 'no frame yet')),
      badge: h('span', {class: 'badge unknown'}, '…'),
      detail: h('div', {class: 'cam-detail'}),
      stats: h('div', {class: 'cam-stats'}),
      last: h('div', {class: 'cam-last muted small'}),
      img: null,
    };
    const el = h('div', {class: 'cam-tile', dataset: {camera: name}}, parts.frame,
      h('div', {class: 'cam-head'}, h('span', {class: 'cam-name'}, name), parts.badge),
      parts.detail, parts.stats, parts.last);
    parts.frame.addEventListener('click', () => { if (parts.img) lightbox(parts.img.src, name); });
    return {el, parts, data: {}};
  }

  function renderTile(cam) {
    let t = tiles.get(cam.name);
    if (!t) {
      t = tile(cam.name);
      tiles.set(cam.name, t);
      grid.append(t.el);
    }
    t.data = {...t.data, ...cam};
    const d = t.data;
    const {badge, detail, stats, last} = t.parts;
    const stale = d.online && d.last_frame_ts && Date.now() / 1000 - d.last_frame_ts > 10;
    const state = d.online === true ? (stale ? 'stale' : 'online') : d.online === false ? 'offline' : 'unknown';
    badge.className = `badge ${state}`;
    badge.textContent = {online: 'ONLINE', offline: 'OFFLINE', stale: 'NO FRAMES', unknown: 'UNKNOWN'}[state];
    t.el.className = `cam-tile ${state}`;
    detail.textContent = d.detail || (d.online === null || d.online === undefined ? 'no state reported (is facewatch run running?)' : '');
    fill(stats, 
      h('span', null, 'in ', h('b', null, fmtNum(d.fps_in, 1)), ' fps'),
      h('span', null, 'processed ', h('b', null, fmtNum(d.fps_processed, 1)), ' fps'),
      h('span', null, 'drops ', h('b', null, d.dropped === null || d.dropped === undefined ? '—' : String(d.dropped))));
    last.textContent = d.last_frame_ts ? `last frame ${fmtClock(d.last_frame_ts)} (${fmtAgo(d.last_frame_ts)})` : 'no frame received';
    if (d.frame_url) refreshFrame(t);
  }

  function refreshFrame(t) {
    const url = bust(t.data.frame_url);
    const next = new Image();
    next.alt = `latest frame of ${t.data.name}`;
    next.className = 'cam-img';
    next.addEventListener('load', () => {
      if (t.parts.img) {
        t.parts.img.src = next.src;
      } else {
        t.parts.img = next;
        fill(t.parts.frame, next);
      }
    });
    next.src = url;
  }

  async function loadCameras() {
    try {
      const r = await api('/api/cameras');
      gridMsg.hidden = r.cameras.length > 0;
      gridMsg.textContent = 'No cameras configured.';
      const names = new Set(r.cameras.map((c) => c.name));
      for (const [name, t] of tiles) if (!names.has(name)) { t.el.remove(); tiles.delete(name); }
      for (const cam of r.cameras) renderTile(cam);
    } catch (e) {
      if (e.status === 401) return;
      gridMsg.hidden = false;
      gridMsg.textContent = `Camera state unavailable: ${errText(e)}`;
      gridMsg.className = 'error-text';
    }
  }

  bus.addEventListener('alert', (m) => addAlert(m.detail, true));
  bus.addEventListener('camera', (m) => { if (m.detail && m.detail.name) renderTile(m.detail); });
  bus.addEventListener('open', () => backfill());

  return {
    el,
    show() {
      visible = true;
      loadCameras();
      if (!cameraTimer) cameraTimer = setInterval(() => { if (visible) loadCameras(); }, 2000);
    },
    hide() { visible = false; },
    stop() { clearInterval(cameraTimer); cameraTimer = null; },
  };
}

// ----------------------------------------------------------------------------- the stream
let es = null;
let retry = null;
let watchdog = null;
let lastMessage = 0;
let wanted = false;

function setConnected(ok, why) {
  const banner = document.getElementById('stream-banner');
  const ind = document.getElementById('stream-indicator');
  banner.hidden = ok || !wanted;
  if (!ok) document.getElementById('stream-banner-why').textContent = why || '';
  ind.className = `indicator ${ok ? 'up' : 'down'}`;
  ind.textContent = ok ? '● LIVE' : '● DISCONNECTED';
  ind.title = ok ? 'live alert stream connected' : 'live alert stream lost: alerts are not shown until it reconnects';
}

/** Connect to /api/stream; on loss show the banner and keep reconnecting. checkAuth(): a 401 -> token form. */
export function connectStream(checkAuth) {
  wanted = true;
  clearTimeout(retry);
  if (es) es.close();
  es = new EventSource('/api/stream');
  const seen = () => { lastMessage = Date.now(); };
  es.addEventListener('open', () => { seen(); setConnected(true); bus.dispatchEvent(new Event('open')); });
  for (const type of ['alert', 'camera']) {
    es.addEventListener(type, (m) => {
      seen();
      let data;
      try { data = JSON.parse(m.data); } catch (e) { toast(`Malformed ${type} message on the live stream`); return; }
      bus.dispatchEvent(new CustomEvent(type, {detail: data}));
    });
  }
  es.addEventListener('ping', seen);
  es.addEventListener('hello', seen);
  // the server dropped this client for being too far behind: it reconnects, and 'open' reloads the history
  es.addEventListener('overflow', () => { seen(); toast('The live stream fell behind; reloading recent alerts.', 'info'); });
  es.addEventListener('message', seen);
  es.addEventListener('error', () => {
    if (!wanted) return;
    setConnected(false, es && es.readyState === EventSource.CONNECTING ? 'reconnecting…' : 'retrying in 3 s…');
    if (es && es.readyState === EventSource.CLOSED) {
      // The browser gave up (an HTTP error such as 401, or a wrong content type): find out why, then retry.
      es.close();
      es = null;
      retry = setTimeout(async () => {
        if (!wanted) return;
        if (await checkAuth()) connectStream(checkAuth);
      }, 3000);
    }
  });
  clearInterval(watchdog);
  watchdog = setInterval(() => {
    if (wanted && es && es.readyState === EventSource.OPEN && Date.now() - lastMessage > STALE_S * 1000) {
      setConnected(false, `no message for ${STALE_S} s, reconnecting…`);
      connectStream(checkAuth);
    }
  }, 5000);
}

export function disconnectStream() {
  wanted = false;
  clearTimeout(retry);
  clearInterval(watchdog);
  if (es) es.close();
  es = null;
  setConnected(false);
}
