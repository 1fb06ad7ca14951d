// Status page: the match threshold and where it came from, readiness checks, the effective configuration.
import {api} from './api.js';
import {errText, fill, fmtNum, h, plural} from './dom.js';

function fmtRate(x) {
  if (x === null || x === undefined) return '—';
  if (x === 0) return '0';
  return x < 0.001 ? Number(x).toExponential(1) : String(Number(x.toPrecision(3)));
}

export function createSettingsPage() {
  const thr = h('div', {class: 'panel', id: 'threshold-panel'});
  const ready = h('div', {class: 'panel', id: 'ready-panel'});
  const config = h('pre', {class: 'config', id: 'config-json'});

  async function loadThreshold() {
    fill(thr, h('h3', null, 'Match threshold'));
    try {
      const t = await api('/api/threshold');
      const grown = t.gallery_size !== null && t.gallery_size !== undefined && t.enrolled > t.gallery_size;
      thr.append(
        h('div', {class: 'big', id: 'threshold-value'}, fmtNum(t.threshold, 4)),
        h('dl', {class: 'kv'},
          h('dt', null, 'False accept rate, target'), h('dd', {id: 'threshold-far'}, fmtRate(t.far)),
          h('dt', null, 'Measured FAR, 95% upper bound'), h('dd', {id: 'threshold-far-upper'}, fmtRate(t.far_upper)),
          h('dt', null, 'Impostor pairs measured'), h('dd', null, t.impostors === null || t.impostors === undefined ? '—' : Number(t.impostors).toLocaleString()),
          h('dt', null, 'Calibrated for a gallery of'), h('dd', {id: 'threshold-n'}, t.gallery_size === null || t.gallery_size === undefined ? '—' : plural(t.gallery_size, 'person')),
          h('dt', null, 'Enrolled now'), h('dd', {id: 'threshold-enrolled'}, plural(t.enrolled, 'person')),
          h('dt', null, 'Source'), h('dd', {class: 'mono'}, t.source || '—')),
        grown
          ? h('p', {class: 'warn', id: 'threshold-warning', role: 'alert'},
            `The gallery (${t.enrolled} persons) is larger than the ${t.gallery_size} this threshold was calibrated for: ` +
            'each face is compared with more people, so false matches become more likely. Recalibrate (facewatch calibrate) for this size.')
          : h('p', {class: 'muted small'}, 'The gallery is within the size this threshold was calibrated for.'));
    } catch (e) {
      thr.append(h('p', {class: 'error-text'}, `Threshold unavailable: ${errText(e)}`));
    }
  }

  async function loadReady() {
    fill(ready, h('h3', null, 'Readiness'));
    try {
      const r = await api('/api/ready', {ok: [503]});
      ready.append(h('div', {class: `badge big-badge ${r.ready ? 'online' : 'offline'}`, id: 'ready-badge'}, r.ready ? 'READY' : 'NOT READY'));
      const tbl = h('table', {class: 'checks'});
      for (const [k, v] of Object.entries(r.checks || {})) {
        const ok = v === 'ok' || v === true;
        tbl.append(h('tr', null, h('td', null, k), h('td', {class: ok ? 'ok-text' : 'error-text'}, typeof v === 'string' ? v : JSON.stringify(v))));
      }
      ready.append(tbl);
    } catch (e) {
      ready.append(h('p', {class: 'error-text'}, `Readiness unknown: ${errText(e)}`));
    }
  }

  async function loadConfig() {
    try {
      config.textContent = JSON.stringify(await api('/api/config'), null, 2);
    } catch (e) {
      config.textContent = `Configuration unavailable: ${errText(e)}`;
    }
  }

  const el = h('section', {class: 'page', id: 'page-settings'},
    h('div', {class: 'section-head'}, h('h2', null, 'Status'), h('div', {class: 'spacer'}),
      h('button', {type: 'button', onclick: () => load()}, 'Refresh')),
    h('div', {class: 'settings-grid'}, thr, ready),
    h('details', {class: 'panel'}, h('summary', null, 'Effective configuration (secrets hidden)'), config));

  function load() {
    loadThreshold();
    loadReady();
    loadConfig();
  }
  return {el, show: load, hide() {}, stop() {}};
}
