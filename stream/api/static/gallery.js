// Gallery page: the enrolled persons; enroll by upload with each file's own verdict; add samples; rename; remove;
// past unknown events that look like a person (after an enrolment, or on asking) offered for relabelling.
import {api, enc} from './api.js';
import {clear, errText, fill, fmtNum, fmtTime, h, img, plural, toast} from './dom.js';

/** The per-file verdicts of an upload, from a 200 body or from the error details of a 422. */
function verdicts(body) {
  const list = h('ul', {class: 'verdicts'});
  for (const r of (body && body.results) || []) {
    list.append(h('li', {class: `verdict ${r.status}`, dataset: {file: r.file, status: r.status}},
      h('span', {class: `tag ${r.status === 'enrolled' ? 'ok' : 'bad'}`}, r.status),
      ' ', h('span', {class: 'file'}, r.file),
      r.reason ? h('span', {class: 'reason muted'}, ` — ${r.reason}`) : null));
  }
  return list;
}

const lookLike = (n, person) => `${plural(n, 'past unknown event')} look${n === 1 ? 's' : ''} like ${person}`;

/** "N past unknown events look like NAME — review": the candidates, each ticked, relabelled on request. */
function relabelReview(person, count) {
  const box = h('div', {class: 'relabel-review', dataset: {person}});
  const start = h('button', {type: 'button', class: 'small review'}, 'Review');
  const show = async () => {
    fill(box, h('p', {class: 'muted'}, 'Loading past events…'));
    try {
      const r = await api(`/api/gallery/${enc(person)}/relabel-candidates`);
      if (!r.candidates.length) { fill(box, h('p', {class: 'muted'}, `No past unknown events look like ${person}.`)); return; }
      const ticks = [];
      const list = h('ul', {class: 'relabel-list'}, r.candidates.map((c) => {
        const tick = h('input', {type: 'checkbox', checked: true, value: String(c.event.id)});
        ticks.push(tick);
        return h('li', {dataset: {eventId: c.event.id}}, tick, img(c.event.face_url, {class: 'chip small', alt: 'face'}),
          h('span', null, `#${c.event.id} · ${c.event.camera} · ${fmtTime(c.event.ts_capture || c.event.ts)}`),
          h('span', {class: 'muted'}, `score ${fmtNum(c.score)}`));
      }));
      const accept = h('button', {type: 'button', class: 'small primary accept'}, `Relabel as ${person}`);
      accept.addEventListener('click', async () => {
        const ids = ticks.filter((t) => t.checked).map((t) => Number(t.value));
        if (!ids.length) return;
        accept.disabled = true;
        try {
          const out = await api(`/api/gallery/${enc(person)}/relabel`, {method: 'POST', json: {event_ids: ids}});
          fill(box, h('p', {class: 'ok-text'}, `${plural(out.relabelled.length + out.already.length, 'event')} relabelled as ${person} (the original decisions are kept)`));
        } catch (err) {
          accept.disabled = false;
          box.append(h('p', {class: 'error-text', role: 'alert'}, `Not relabelled: ${errText(err)}`));
        }
      });
      fill(box, h('p', null, `${lookLike(r.total, person)} (score ≥ ${fmtNum(r.threshold)}):`), list, accept);
    } catch (err) {
      fill(box, h('p', {class: 'error-text', role: 'alert'}, `Could not load past events: ${errText(err)}`));
    }
  };
  start.addEventListener('click', show);
  if (count === null) show();
  else box.append(h('p', null, `${lookLike(count, person)} — `, start));
  return box;
}

function uploadBody(e) {
  // 422 when no file was enrolled: the per-file results are inside error.details (or the details themselves)
  const d = e.details;
  if (d && d.results) return d;
  if (e.body && e.body.results) return e.body;
  return null;
}

export function createGalleryPage() {
  const name = h('input', {type: 'text', name: 'name', id: 'enroll-name', required: true, placeholder: 'Full name', autocomplete: 'off'});
  const files = h('input', {type: 'file', name: 'files', id: 'enroll-files', accept: 'image/*', multiple: true, required: true});
  const submit = h('button', {type: 'submit', class: 'primary'}, 'Enroll');
  const result = h('div', {class: 'upload-result', id: 'enroll-result', 'aria-live': 'polite'});
  const form = h('form', {class: 'enroll-form', id: 'enroll-form'},
    h('label', null, 'Name', name),
    h('label', null, 'Photos (one face each; several angles help)', files),
    submit);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const fd = new FormData();
    fd.append('name', name.value.trim());
    for (const f of files.files) fd.append('files', f, f.name);
    submit.disabled = true;
    fill(result, h('p', {class: 'muted'}, `Uploading ${files.files.length} file(s)…`));
    try {
      const r = await api('/api/gallery', {method: 'POST', form: fd});
      fill(result, h('p', {class: 'ok-text'}, `${r.person}: ${plural(r.samples, 'sample')} enrolled`), verdicts(r),
        r.relabel_candidates ? relabelReview(r.person, r.relabel_candidates) : null);
      form.reset();
      load();
    } catch (err) {
      const body = uploadBody(err);
      fill(result, h('p', {class: 'error-text', role: 'alert'}, `Not enrolled: ${errText(err)}`), body ? verdicts(body) : null);
    } finally {
      submit.disabled = false;
    }
  });

  const persons = h('div', {class: 'persons', id: 'persons'});
  const count = h('span', {class: 'count'});

  function personCard(p) {
    const msg = h('div', {class: 'person-msg', 'aria-live': 'polite'});
    const more = h('input', {type: 'file', accept: 'image/*', multiple: true, hidden: true, class: 'add-files'});
    more.addEventListener('change', async () => {
      if (!more.files.length) return;
      const fd = new FormData();
      for (const f of more.files) fd.append('files', f, f.name);
      fill(msg, h('p', {class: 'muted'}, 'Uploading…'));
      try {
        const r = await api(`/api/gallery/${enc(p.name)}/samples`, {method: 'POST', form: fd});
        fill(msg, h('p', {class: 'ok-text'}, `${plural(r.samples, 'sample')} now`), verdicts(r),
          r.relabel_candidates ? relabelReview(p.name, r.relabel_candidates) : null);
        samples.textContent = plural(r.samples, 'sample');
      } catch (err) {
        const body = uploadBody(err);
        fill(msg, h('p', {class: 'error-text', role: 'alert'}, `Not added: ${errText(err)}`), body ? verdicts(body) : null);
      }
      more.value = '';
    });
    const samples = h('span', {class: 'samples'}, plural(p.samples, 'sample'));
    return h('div', {class: 'person', dataset: {name: p.name}},
      p.thumbnail_url ? img(p.thumbnail_url, {class: 'thumbnail', alt: 'thumbnail'}) : h('div', {class: 'noimg thumbnail'}, 'no thumbnail'),
      h('div', {class: 'person-name'}, p.name),
      h('div', {class: 'muted small'}, samples, ' · ', h('span', {class: 'negatives'}, plural(p.negatives, 'negative'))),
      h('div', {class: 'btns'},
        h('button', {type: 'button', class: 'small', onclick: () => more.click()}, 'Add photos'),
        h('button', {type: 'button', class: 'small', onclick: () => rename(p, msg)}, 'Rename'),
        h('button', {type: 'button', class: 'small past', title: 'past unknown events that look like this person',
          onclick: () => fill(msg, relabelReview(p.name, null))}, 'Past events'),
        h('button', {type: 'button', class: 'small danger', onclick: () => remove(p, msg)}, 'Remove')),
      more, msg);
  }

  async function rename(p, msg) {
    const to = prompt(`Rename ${p.name} to:`, p.name);
    if (to === null || !to.trim() || to.trim() === p.name) return;
    try {
      const r = await api(`/api/gallery/${enc(p.name)}`, {method: 'PATCH', json: {name: to.trim()}});
      toast(`Renamed ${p.name} to ${r.person}`, 'info');
      load();
    } catch (err) {
      fill(msg, h('p', {class: 'error-text', role: 'alert'}, `Not renamed: ${errText(err)}`));
    }
  }

  async function remove(p, msg) {
    if (!confirm(`Remove ${p.name} and all ${p.samples} samples from the gallery? This cannot be undone.`)) return;
    try {
      const r = await api(`/api/gallery/${enc(p.name)}`, {method: 'DELETE'});
      toast(`Removed ${r.removed} (${r.samples} samples)`, 'info');
      load();
    } catch (err) {
      fill(msg, h('p', {class: 'error-text', role: 'alert'}, `Not removed: ${errText(err)}`));
    }
  }

  let loadSeq = 0; // only the latest answer is shown: an older one would undo a change just made
  async function load() {
    const seq = ++loadSeq;
    try {
      const r = await api('/api/gallery');
      if (seq !== loadSeq) return;
      clear(persons);
      count.textContent = `(${r.persons.length})`;
      if (!r.persons.length) persons.append(h('p', {class: 'empty'}, 'Nobody is enrolled yet: add someone above.'));
      for (const p of r.persons) persons.append(personCard(p));
    } catch (e) {
      if (seq !== loadSeq) return;
      fill(persons, h('p', {class: 'error-text'}, `Could not load the gallery: ${errText(e)}`));
    }
  }

  const el = h('section', {class: 'page', id: 'page-gallery'},
    h('div', {class: 'section-head'}, h('h2', null, 'Gallery ', count)),
    h('div', {class: 'panel'}, h('h3', null, 'Enroll a person'), form, result),
    persons);
  return {el, show: load, hide() {}, stop() {}};
}
