// Events page: review with filters and paging, export, feedback (Is … / Not …), search by face, visitors;
// an unknown face relabelled after its person was enrolled shows the new name and the original decision.
import {api, qs} from './api.js';
import {clear, errText, fill, fmtAgo, fmtClock, fmtDate, fmtNum, fmtShort, fmtTime, h, img, lightbox, scoreView, toast, who} from './dom.js';
import {bus} from './live.js';

const PAGE_SIZES = [25, 50, 100];

function toEpoch(v) {
  if (!v) return '';
  const t = new Date(v).getTime();
  return Number.isNaN(t) ? '' : t / 1000;
}

function feedbackText(ev) {
  if (ev.feedback === 'rejected') return `rejected: not ${ev.feedback_identity || ev.identity || '?'}`;
  if (ev.feedback === 'confirmed') return `confirmed: ${ev.feedback_identity || ev.identity || '?'}`;
  return '';
}

export function createEventsPage() {
  // ------------------------------------------------------------------- filters
  const f = {
    camera: h('select', {name: 'camera', id: 'f-camera'}, h('option', {value: ''}, 'any camera')),
    identity: h('input', {name: 'identity', id: 'f-identity', type: 'text', placeholder: 'any person', list: 'f-identity-list', autocomplete: 'off'}),
    identityList: h('datalist', {id: 'f-identity-list'}),
    kind: h('select', {name: 'kind', id: 'f-kind'}, h('option', {value: ''}, 'any kind'),
      h('option', {value: 'watchlist'}, 'watchlist'), h('option', {value: 'unknown'}, 'unknown')),
    source: h('select', {name: 'source', id: 'f-source'}, h('option', {value: ''}, 'live and scans'),
      h('option', {value: 'live'}, 'live cameras'), h('option', {value: 'scan'}, 'scanned videos')),
    since: h('input', {name: 'since', id: 'f-since', type: 'datetime-local', step: 1}),
    until: h('input', {name: 'until', id: 'f-until', type: 'datetime-local', step: 1}),
    minScore: h('input', {name: 'min_score', id: 'f-min-score', type: 'number', step: '0.01', min: '-1', max: '1', placeholder: 'any'}),
    limit: h('select', {name: 'limit', id: 'f-limit'}, PAGE_SIZES.map((n) => h('option', {value: String(n)}, `${n} per page`))),
  };
  const visitorChip = h('span', {class: 'chip-filter', hidden: true});
  let unknownId = '';
  let offset = 0;
  const form = h('form', {class: 'filters', id: 'event-filters'},
    h('label', null, 'Camera', f.camera),
    h('label', null, 'Person', f.identity, f.identityList),
    h('label', null, 'Kind', f.kind),
    h('label', null, 'Source', f.source),
    h('label', null, 'From', f.since),
    h('label', null, 'To', f.until),
    h('label', null, 'Min score', f.minScore),
    h('label', null, 'Page', f.limit),
    visitorChip,
    h('div', {class: 'filter-buttons'},
      h('button', {type: 'submit', class: 'primary'}, 'Apply'),
      h('button', {type: 'button', onclick: () => { form.reset(); setVisitor(''); offset = 0; load(); }}, 'Reset')));
  form.addEventListener('submit', (e) => { e.preventDefault(); offset = 0; load(); });

  function setVisitor(id) {
    unknownId = id === null || id === undefined ? '' : String(id);
    clear(visitorChip);
    visitorChip.hidden = unknownId === '';
    if (unknownId !== '') {
      visitorChip.append(`Unknown visitor #${unknownId} `,
        h('button', {type: 'button', 'aria-label': 'clear visitor filter', onclick: () => { setVisitor(''); offset = 0; load(); }}, '×'));
    }
  }

  function filters() {
    return {camera: f.camera.value, identity: f.identity.value.trim(), kind: f.kind.value, source: f.source.value,
      since: toEpoch(f.since.value), until: toEpoch(f.until.value), min_score: f.minScore.value,
      unknown_id: unknownId};
  }

  // ------------------------------------------------------------------- table
  const tbody = h('tbody');
  const summary = h('span', {class: 'summary', id: 'events-summary'});
  const prev = h('button', {type: 'button', id: 'events-prev'}, '‹ Newer');
  const next = h('button', {type: 'button', id: 'events-next'}, 'Older ›');
  const csv = h('a', {class: 'button', id: 'export-csv', download: 'facewatch-events.csv'}, 'Export CSV');
  const json = h('a', {class: 'button', id: 'export-json', download: 'facewatch-events.json'}, 'Export JSON');
  const newBadge = h('button', {type: 'button', class: 'new-badge', hidden: true, onclick: () => { offset = 0; load(); }});
  let newCount = 0;
  prev.addEventListener('click', () => { offset = Math.max(0, offset - Number(f.limit.value)); load(); });
  next.addEventListener('click', () => { offset += Number(f.limit.value); load(); });
  const table = h('table', {class: 'events', id: 'events-table'},
    h('thead', null, h('tr', null, ['Face', 'Time', 'Camera', 'Who', 'Score', 'Feedback', ''].map((t) => h('th', null, t)))),
    tbody);

  function row(ev) {
    const fbCell = h('td', {class: 'feedback'}, ev.feedback ? h('span', {class: `tag fb-${ev.feedback}`}, feedbackText(ev)) : null);
    const msg = h('div', {class: 'row-msg', role: 'status'});
    const say = (text, kind = 'ok') => { msg.className = `row-msg ${kind}`; msg.textContent = text; };
    const update = (updated) => {
      if (!updated) return;
      fill(fbCell, updated.feedback ? h('span', {class: `tag fb-${updated.feedback}`}, feedbackText(updated)) : null);
    };
    const isBtn = h('button', {type: 'button', class: 'small confirm', title: 'say who this really is: their face is added to the gallery'}, 'Is …');
    isBtn.addEventListener('click', async () => {
      const name = prompt('Who is this? Their face will be enrolled under this name.', ev.identity || '');
      if (name === null || !name.trim()) return;
      isBtn.disabled = true;
      try {
        const r = await api(`/api/events/${ev.id}/confirm`, {method: 'POST', json: {identity: name.trim()}});
        say(`Confirmed: this is ${r.person} (${r.samples} samples)`);
        update(r.event);
      } catch (e) {
        say(`Not saved: ${errText(e)}`, 'err');
      } finally {
        isBtn.disabled = false;
      }
    });
    const notBtn = ev.identity
      ? h('button', {type: 'button', class: 'small reject', title: `this face is not ${ev.identity}: it will no longer match them`}, `Not ${ev.identity}`)
      : null;
    if (notBtn) {
      notBtn.addEventListener('click', async () => {
        notBtn.disabled = true;
        try {
          const r = await api(`/api/events/${ev.id}/reject`, {method: 'POST', json: {identity: ev.identity}});
          say(`Noted: this face is not ${r.person}; it will no longer match them (${r.negatives} negative samples)`);
          update(r.event);
        } catch (e) {
          say(`Not saved: ${errText(e)}`, 'err');
          notBtn.disabled = false;
        }
      });
    }
    const simBtn = h('button', {type: 'button', class: 'small', onclick: () => similar(ev)}, 'Find similar');
    const frame = ev.frame_url
      ? h('a', {href: ev.frame_url, class: 'button small frame-link', target: '_blank', rel: 'noopener',
        onclick: (e) => { e.preventDefault(); lightbox(ev.frame_url, `${who(ev)} · ${ev.camera} · ${fmtTime(ev.ts_capture || ev.ts)}`); }}, 'Frame')
      : h('span', {class: 'muted'}, 'no frame');
    return h('tr', {dataset: {eventId: ev.id}, class: `kind-${ev.kind}`},
      h('td', null, img(ev.face_url, {class: 'chip small', alt: 'face'})),
      h('td', {class: 'nowrap', title: fmtTime(ev.ts_capture || ev.ts)}, fmtClock(ev.ts_capture || ev.ts),
        h('div', {class: 'muted small'}, `${fmtDate(ev.ts_capture || ev.ts)} · #${ev.id}${ev.source === 'scan' ? ' · scan' : ''}`)),
      h('td', {class: 'camera'}, ev.camera,
        ev.video_file ? h('div', {class: 'muted small'}, `${ev.video_file} @ ${fmtNum(ev.video_time, 1)} s`) : null),
      h('td', {class: 'who'}, h('span', {class: 'name'}, who(ev)), ' ',
        ev.relabel_name ? h('span', {class: 'tag kind relabelled'}, 'relabelled') : h('span', {class: `tag kind ${ev.kind}`}, ev.kind),
        ev.relabel_name ? h('div', {class: 'muted small originally', title: `relabelled ${fmtTime(ev.relabel_at)} (${ev.relabel_by || '?'})`},
          `originally: ${ev.identity || ev.kind} (score ${fmtNum(ev.score)})`) : null),
      h('td', null, scoreView(ev.score, ev.threshold)),
      fbCell,
      h('td', {class: 'actions'}, h('div', {class: 'btns'}, frame, simBtn, isBtn, notBtn), msg));
  }

  let loadSeq = 0; // only the latest request's answer is shown (an older one may come back later)
  async function load() {
    const seq = ++loadSeq;
    const params = {...filters(), limit: f.limit.value, offset};
    csv.href = `/api/events/export${qs({format: 'csv', ...filters()})}`;
    json.href = `/api/events/export${qs({format: 'json', ...filters()})}`;
    summary.textContent = 'Loading…';
    try {
      const r = await api(`/api/events${qs(params)}`);
      if (seq !== loadSeq) return;
      clear(tbody);
      if (!r.events.length) {
        tbody.append(h('tr', null, h('td', {colspan: 7, class: 'empty'}, r.total ? 'No events on this page.' : 'No events match these filters.')));
      }
      for (const ev of r.events) tbody.append(row(ev));
      const first = r.total ? r.offset + 1 : 0;
      summary.textContent = `${first}–${r.offset + r.events.length} of ${r.total}`;
      prev.disabled = r.offset <= 0;
      next.disabled = r.offset + r.events.length >= r.total;
      newCount = 0;
      newBadge.hidden = true;
    } catch (e) {
      if (seq !== loadSeq) return;
      summary.textContent = '';
      fill(tbody, h('tr', null, h('td', {colspan: 7, class: 'error-text'}, `Could not load events: ${errText(e)}`)));
    }
  }

  bus.addEventListener('alert', () => {
    newCount += 1;
    newBadge.hidden = false;
    newBadge.textContent = `${newCount} new — show`;
  });

  // ------------------------------------------------------------------- search by face
  const file = h('input', {type: 'file', name: 'file', id: 'search-file', accept: 'image/*', required: true});
  const searchForm = h('form', {class: 'search-form', id: 'search-form'},
    h('label', null, 'Photo', file),
    h('button', {type: 'submit', class: 'primary'}, 'Search'));
  const results = h('div', {class: 'results', id: 'search-results'});
  const resultsHead = h('div', {class: 'results-head muted'});

  function showResults(title, list) {
    clear(results);
    resultsHead.textContent = title;
    if (!list.length) results.append(h('p', {class: 'empty'}, 'No similar events.'));
    list.forEach((r, i) => {
      const ev = r.event;
      results.append(h('div', {class: 'result', dataset: {eventId: ev.id, similarity: r.similarity}},
        h('span', {class: 'rank'}, String(i + 1)),
        img(ev.face_url, {class: 'chip small', alt: 'face'}),
        h('div', {class: 'result-info'},
          h('div', {class: 'who'}, who(ev)),
          h('div', {class: 'muted small', title: fmtTime(ev.ts_capture || ev.ts)}, `#${ev.id} · ${ev.camera} · ${fmtShort(ev.ts_capture || ev.ts)}`)),
        h('div', {class: 'similarity', title: 'cosine similarity'}, fmtNum(r.similarity)),
        ev.frame_url ? h('button', {type: 'button', class: 'small', onclick: () => lightbox(ev.frame_url, `${who(ev)} · ${ev.camera}`)}, 'Frame') : null));
    });
  }

  let searchSeq = 0;
  searchForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const seq = ++searchSeq;
    if (!file.files.length) return;
    const fd = new FormData();
    fd.append('file', file.files[0]);
    fd.append('limit', '20');
    resultsHead.textContent = 'Searching…';
    clear(results);
    try {
      const r = await api('/api/search', {method: 'POST', form: fd});
      if (seq !== searchSeq) return;
      const face = r.face ? ` (face detected, score ${fmtNum(r.face.det_score, 2)})` : '';
      showResults(`Events like ${file.files[0].name}${face}, best first`, r.results);
    } catch (err) {
      if (seq !== searchSeq) return;
      resultsHead.textContent = '';
      results.append(h('p', {class: 'error-text', role: 'alert'}, err.code === 'no_face' ? `No face found in that photo: ${err.message}` : `Search failed: ${errText(err)}`));
    }
  });

  async function similar(ev) {
    const seq = ++searchSeq;
    resultsHead.textContent = `Searching events like #${ev.id}…`;
    clear(results);
    searchPanel.scrollIntoView({block: 'nearest'});
    try {
      const r = await api(`/api/events/${ev.id}/similar?limit=20`);
      if (seq !== searchSeq) return;
      showResults(`Events like #${ev.id} (${who(ev)}, ${ev.camera}), best first`, r.results);
    } catch (err) {
      if (seq !== searchSeq) return;
      resultsHead.textContent = '';
      results.append(h('p', {class: 'error-text', role: 'alert'}, `Search failed: ${errText(err)}`));
    }
  }

  const searchPanel = h('div', {class: 'panel', id: 'search-panel'},
    h('h3', null, 'Search by face'),
    h('p', {class: 'muted small'}, 'Upload a photo to find the events with that face, or use “Find similar” on an event.'),
    searchForm, resultsHead, results);

  // ------------------------------------------------------------------- visitors
  const visitors = h('div', {class: 'visitors', id: 'visitors'});
  async function loadVisitors() {
    try {
      const r = await api('/api/visitors?limit=50');
      clear(visitors);
      if (!r.visitors.length) visitors.append(h('p', {class: 'empty'}, 'No unknown visitors.'));
      for (const v of r.visitors) {
        visitors.append(h('div', {class: 'visitor', dataset: {unknownId: v.unknown_id}},
          img(v.event && v.event.face_url, {class: 'chip small', alt: 'face'}),
          h('div', {class: 'visitor-info'},
            h('div', {class: 'who'}, `Unknown visitor #${v.unknown_id}`),
            h('div', {class: 'muted small'}, `seen ${v.count}× · ${(v.cameras || []).join(', ')}`),
            h('div', {class: 'muted small'}, `first ${fmtTime(v.first_ts)} · last ${fmtAgo(v.last_ts)}`)),
          h('button', {type: 'button', class: 'small', onclick: () => { setVisitor(v.unknown_id); offset = 0; load(); table.scrollIntoView({block: 'start'}); }}, 'Events')));
      }
    } catch (e) {
      fill(visitors, h('p', {class: 'error-text'}, `Could not load visitors: ${errText(e)}`));
    }
  }

  // ------------------------------------------------------------------- choices for the filters
  async function loadChoices() {
    try {
      const [cams, gal] = await Promise.all([api('/api/cameras'), api('/api/gallery')]);
      const cur = f.camera.value;
      fill(f.camera, h('option', {value: ''}, 'any camera'), cams.cameras.map((c) => h('option', {value: c.name}, c.name)));
      f.camera.value = cur;
      fill(f.identityList, gal.persons.map((p) => h('option', {value: p.name})));
    } catch (e) {
      if (e.status !== 401) toast(`Could not load filter choices: ${errText(e)}`);
    }
  }

  const el = h('section', {class: 'page', id: 'page-events'},
    h('div', {class: 'section-head'}, h('h2', null, 'Events'), newBadge,
      h('div', {class: 'spacer'}), csv, json),
    form,
    h('div', {class: 'events-layout'},
      h('div', {class: 'events-main'}, h('div', {class: 'table-wrap'}, table),
        h('div', {class: 'pager'}, prev, summary, next)),
      h('aside', {class: 'events-side'}, searchPanel,
        h('div', {class: 'panel'}, h('h3', null, 'Visitors'),
          h('p', {class: 'muted small'}, 'Unknown faces grouped by who they look like.'), visitors))));

  return {
    el,
    show() { loadChoices(); load(); loadVisitors(); },
    hide() {},
    stop() {},
  };
}

