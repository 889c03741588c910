/* despool status page.
 *
 * Polls /api/view (every refresh_s) and /api/sites (every 10 s) and shows
 * the version matrix (packages x sites), the sites' consumer-group lag and,
 * on demand, one package's detail from /api/package. Everything from the
 * API goes into the page as text (textContent, attributes), never as HTML.
 *
 * The matrix is virtualized: a scroll container holds a spacer as tall as
 * all the filtered rows and a small pool of row elements; row at position
 * pos is drawn by pool[pos % pool.length], so a scroll by one row rewrites
 * one row. The filtered, sorted index (S.rows) is built once per data or
 * filter change, never per scroll.
 */
'use strict';

(() => {
  const ROW_H = 28;          /* px; matches --row-h in app.css */
  const OVERSCAN = 4;        /* rows drawn above and below the visible ones */
  const SITES_EVERY_MS = 10000;
  const FETCH_TIMEOUT_MS = 10000;
  const DEBOUNCE_MS = 150;
  const HOUR_MS = 3600000;

  const MARKS = ['ok', 'behind', 'late', 'failed', 'missing', 'retired'];
  const MARK_LABEL = {
    ok: 'current', behind: 'behind', late: 'late',
    failed: 'failed', missing: 'missing', retired: 'retired',
  };
  const CODES = { o: 'ok', b: 'behind', l: 'late', f: 'failed', m: 'missing', r: 'retired' };

  /* Per mark-character code: the mark name, the cell's class and how bad
   * it is for sorting (0 = worst: failed > late > behind > missing >
   * current > retired; unknown characters sort last). */
  const MARK_OF = [];
  const CELL_CLASS = [];
  const RANK = new Uint8Array(128).fill(6);
  for (const [ch, name] of Object.entries(CODES)) {
    const c = ch.charCodeAt(0);
    MARK_OF[c] = name;
    CELL_CLASS[c] = 'cell mark-' + name;
  }
  'flbmor'.split('').forEach((ch, i) => { RANK[ch.charCodeAt(0)] = i; });
  const C_BEHIND = 98, C_LATE = 108, C_FAILED = 102, C_RETIRED = 114;
  const rankOf = (c) => (c < 128 ? RANK[c] : 6); /* NaN < 128 is false */

  const S = {
    view: null,            /* last good /api/view */
    viewAt: 0,             /* client time it arrived */
    viewErr: null,
    viewBusy: false,
    skew: 0,               /* server clock - client clock, ms */
    refreshS: 5,
    sites: null,
    sitesAt: 0,
    sitesErr: null,
    sitesBusy: false,
    lower: [],             /* lower-cased package names, by package index */
    siteIndex: new Map(),  /* site name -> column in view.sites */
    f: { pkg: '', site: '', problems: false },
    sort: { type: 'package', site: '', desc: false },
    cols: [],              /* shown site columns (indices into view.sites) */
    colsKey: null,
    rows: [],              /* filtered + sorted package indices */
    gen: 0,                /* bumps when what rows show changes */
    pool: [],
    poolCols: null,
    layout: { pkgW: 220, pubW: 84, cellW: 52, headH: 40, key: '' },
    selected: null,
    detail: { name: null, data: null, err: null, seq: 0, busy: false, opener: null },
    cards: new Map(),
  };

  const $ = (id) => document.getElementById(id);
  const el = {};

  /* ---------- small helpers ---------- */

  function make(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }

  const pad2 = (n) => (n < 10 ? '0' : '') + n;

  function hms(ms) {
    const d = new Date(ms);
    return pad2(d.getHours()) + ':' + pad2(d.getMinutes()) + ':' + pad2(d.getSeconds());
  }

  /* Local time: HH:MM:SS today, else YYYY-MM-DD HH:MM:SS. */
  function localTime(ms) {
    const d = new Date(ms), now = new Date();
    if (d.toDateString() === now.toDateString()) return hms(ms);
    return d.getFullYear() + '-' + pad2(d.getMonth() + 1) + '-' + pad2(d.getDate()) + ' ' + hms(ms);
  }

  function span(ms) {
    const s = Math.abs(ms) / 1000;
    if (s < 60) return Math.round(s) + ' s';
    if (s < 3600) return Math.round(s / 60) + ' min';
    if (s < 86400) return trim1(s / 3600) + ' h';
    return trim1(s / 86400) + ' d';
  }

  const trim1 = (x) => (x < 10 ? x.toFixed(1).replace(/\.0$/, '') : String(Math.round(x)));

  /* "3 min ago", against the server's clock (timestamps come from it). */
  function ago(ms, clientClock) {
    const now = Date.now() + (clientClock ? 0 : S.skew);
    const d = now - ms;
    if (Math.abs(d) < 3000) return 'just now';
    return d > 0 ? span(d) + ' ago' : 'in ' + span(d);
  }

  const when = (ms) => (ms == null ? '-' : localTime(ms) + ' (' + ago(ms) + ')');

  /* Time lag: "0.4 s", "5.3 s", "42 s", "2 min", "2.5 min", "1.2 h", "3 d". */
  function humanLag(ms) {
    if (ms == null || ms < 0 || !isFinite(ms)) return '-';
    const s = ms / 1000;
    if (s < 60) return trim1(s) + ' s';
    if (s < 3600) return trim1(s / 60) + ' min';
    if (s < 86400) return trim1(s / 3600) + ' h';
    return trim1(s / 86400) + ' d';
  }

  function events(n) {
    if (n == null || n < 0) return 'unknown';
    return n.toLocaleString() + (n === 1 ? ' event' : ' events');
  }

  function cellText(c, ver) {
    if (c === C_RETIRED) return ver == null ? 'retired' : ver + ' retired';
    return ver == null ? '-' : String(ver);
  }

  function debounce(fn, ms) {
    let t = 0;
    return () => { clearTimeout(t); t = setTimeout(fn, ms); };
  }

  async function getJSON(url) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), FETCH_TIMEOUT_MS);
    let res, text;
    try {
      res = await fetch(url, { cache: 'no-store', signal: ctl.signal, headers: { Accept: 'application/json' } });
      text = await res.text();
    } catch (e) {
      throw new Error(ctl.signal.aborted
        ? 'no answer within ' + FETCH_TIMEOUT_MS / 1000 + ' s'
        : 'network error (' + (e && e.message ? e.message : e) + ')');
    } finally {
      clearTimeout(timer);
    }
    let body = null, bad = null;
    try { body = text ? JSON.parse(text) : null; } catch (e) { bad = e; }
    if (!res.ok) {
      const why = body && typeof body.error === 'string' ? body.error : res.statusText;
      const err = new Error('HTTP ' + res.status + (why ? ': ' + why : ''));
      err.status = res.status;
      err.body = body;
      throw err;
    }
    if (bad) throw new Error('unreadable JSON (' + bad.message + ')');
    if (body == null || typeof body !== 'object') throw new Error('empty answer');
    return body;
  }

  /* ---------- URL hash: package=&site=&problems=1&sort=&desc=1 ---------- */

  function readHash() {
    const p = new URLSearchParams(location.hash.replace(/^#/, ''));
    const sort = p.get('sort') || 'package';
    return {
      f: {
        pkg: p.get('package') || '',
        site: p.get('site') || '',
        problems: p.get('problems') === '1' || p.get('problems') === 'true',
      },
      sort: {
        type: sort === 'package' || sort === 'published' ? sort : 'site',
        site: sort === 'package' || sort === 'published' ? '' : sort,
        desc: p.get('desc') === '1' || p.get('desc') === 'true',
      },
    };
  }

  function writeHash() {
    const p = new URLSearchParams();
    if (S.f.pkg) p.set('package', S.f.pkg);
    if (S.f.site) p.set('site', S.f.site);
    if (S.f.problems) p.set('problems', '1');
    const key = S.sort.type === 'site' ? S.sort.site : S.sort.type;
    if (key !== 'package' || S.sort.desc) p.set('sort', key);
    if (S.sort.desc) p.set('desc', '1');
    const h = p.toString();
    if (location.hash.replace(/^#/, '') === h) return;
    history.replaceState(null, '', h ? '#' + h : location.pathname + location.search);
  }

  function applyHash() {
    const h = readHash();
    S.f = h.f;
    S.sort = h.sort;
    if (el.fPkg.value !== S.f.pkg) el.fPkg.value = S.f.pkg;
    if (el.fSite.value !== S.f.site) el.fSite.value = S.f.site;
    el.fProblems.checked = S.f.problems;
  }

  /* ---------- header ---------- */

  function buildSummary() {
    for (const m of MARKS) {
      const wrap = make('span', 'sum');
      const chip = make('span', 'chip mark-' + m, '0');
      chip.title = MARK_LABEL[m] + ' cells';
      wrap.append(chip, make('span', 'sum-l', MARK_LABEL[m]));
      el.summary.appendChild(wrap);
      el.chips[m] = chip;
    }
  }

  function buildLegend() {
    const items = [
      ['ok', '3', 'current', 'the site holds the published version'],
      ['behind', '2', 'behind', 'an older version, within max_behind'],
      ['late', '2', 'late', 'behind for longer than max_behind'],
      ['failed', '3', 'failed', 'the site reported a failed install'],
      ['missing', '-', 'missing', 'no record from the site'],
      ['retired', 'retired', 'retired', 'retired by the publisher and at the site'],
    ];
    for (const [m, sample, label, help] of items) {
      const li = make('li');
      li.title = help;
      const lab = make('span', null, label);
      li.append(make('span', 'sw sw-' + m, sample), lab);
      if (m === 'late') el.lateLabel = lab;
      el.legend.appendChild(li);
    }
  }

  function renderTop(v) {
    const counts = v.counts || {};
    for (const m of MARKS) {
      const n = Number(counts[m]) || 0;
      const chip = el.chips[m];
      const t = String(n);
      if (chip.textContent !== t) chip.textContent = t;
      chip.classList.toggle('zero', n === 0);
    }
    el.dims.textContent = v.packages.length + ' packages × ' + v.sites.length + ' sites';
    const r = v.reader || {};
    const recs = (Number(r.records) || 0).toLocaleString() + ' records';
    if (r.error) {
      el.reader.className = 'reader reader-error';
      el.reader.textContent = 'reader error: ' + r.error + ' (' + recs + ')';
      el.reader.title = String(r.error);
    } else if (r.caught_up) {
      el.reader.className = 'reader reader-ok';
      el.reader.textContent = recs + ' · caught up';
      el.reader.title = 'the reader has read the status topic to its end';
    } else {
      el.reader.className = 'reader reader-catching';
      el.reader.textContent = recs + ' · catching up';
      el.reader.title = 'the reader is still reading the status topic';
    }
    el.updated.textContent = 'updated ' + hms(v.generated_ms || Date.now());
    el.updated.title = 'data generated ' + localTime(v.generated_ms || Date.now());
    if (el.lateLabel && v.max_behind_s > 0)
      el.lateLabel.textContent = 'late (> ' + span(v.max_behind_s * 1000) + ')';
  }

  /* ---------- error banner ---------- */

  function renderError() {
    const why = [];
    if (S.viewErr) why.push('/api/view: ' + S.viewErr);
    if (S.sitesErr) why.push('/api/sites: ' + S.sitesErr);
    el.updated.classList.toggle('stale', !!S.viewErr);
    if (!why.length) {
      el.error.hidden = true;
      return;
    }
    el.errReason.textContent = why.join(' · ') + '.';
    let since;
    if (S.viewErr)
      since = S.viewAt
        ? 'Showing the data of ' + localTime(S.viewAt) + ' (' + ago(S.viewAt, true) + ').'
        : 'No data received yet.';
    else
      since = S.sitesAt
        ? 'Site lag is from ' + localTime(S.sitesAt) + ' (' + ago(S.sitesAt, true) + ').'
        : 'No site lag received yet.';
    el.errSince.textContent = since;
    el.error.hidden = false;
  }

  /* ---------- polling ---------- */

  let viewTimer = 0, sitesTimer = 0;

  async function pollView() {
    clearTimeout(viewTimer);
    if (S.viewBusy) return;
    S.viewBusy = true;
    try {
      const t0 = performance.now();
      const v = await getJSON('/api/view');
      performance.measure('despool:fetch-view', { start: t0, end: performance.now() });
      if (!Array.isArray(v.packages) || !Array.isArray(v.sites))
        throw new Error('unexpected answer (no packages or sites)');
      S.viewErr = null;
      onView(v);
      if (S.sitesErr && !S.sitesBusy) pollSites();
    } catch (e) {
      S.viewErr = e.message || String(e);
    } finally {
      S.viewBusy = false;
    }
    renderError();
    if (S.detail.name) loadDetail(false);
    viewTimer = setTimeout(pollView, S.refreshS * 1000);
  }

  async function pollSites() {
    clearTimeout(sitesTimer);
    if (S.sitesBusy) return;
    S.sitesBusy = true;
    try {
      const d = await getJSON('/api/sites');
      if (!Array.isArray(d.sites)) throw new Error('unexpected answer (no sites)');
      S.sitesErr = null;
      S.sites = d;
      S.sitesAt = Date.now();
      renderSites(d);
      document.body.dataset.sitesReady = '1';
      if (S.viewErr && !S.viewBusy) pollView();
    } catch (e) {
      S.sitesErr = e.message || String(e);
    } finally {
      S.sitesBusy = false;
    }
    renderError();
    sitesTimer = setTimeout(pollSites, SITES_EVERY_MS);
  }

  function onView(v) {
    const t0 = performance.now();
    S.view = v;
    S.viewAt = Date.now();
    if (v.generated_ms > 0) S.skew = v.generated_ms - S.viewAt;
    const r = Number(v.refresh_s);
    S.refreshS = r > 0 ? Math.min(Math.max(r, 1), 600) : 5;

    const P = v.packages;
    const lower = new Array(P.length);
    for (let i = 0; i < P.length; i++) lower[i] = String(P[i].n).toLowerCase();
    S.lower = lower;
    S.siteIndex = new Map(v.sites.map((s, i) => [s, i]));

    renderTop(v);
    refilter(false);
    document.body.dataset.ready = '1';
    performance.measure('despool:view', { start: t0, end: performance.now() });
  }

  /* ---------- filter + sort: the index ---------- */

  function computeCols() {
    const v = S.view;
    const q = S.f.site.toLowerCase();
    const cols = [];
    for (let i = 0; i < v.sites.length; i++)
      if (!q || v.sites[i].toLowerCase().includes(q)) cols.push(i);
    S.cols = cols;
    const key = v.sites.length + '|' + cols.map((i) => v.sites[i]).join('\n');
    const changed = key !== S.colsKey;
    S.colsKey = key;
    return changed;
  }

  function buildIndex() {
    const P = S.view.packages, lower = S.lower, cols = S.cols;
    const q = S.f.pkg.toLowerCase(), problems = S.f.problems;
    const out = [];
    for (let i = 0; i < P.length; i++) {
      if (q && !lower[i].includes(q)) continue;
      if (problems) {
        const m = P[i].m || '';
        let bad = false;
        for (let k = 0; k < cols.length; k++) {
          const c = m.charCodeAt(cols[k]);
          if (c === C_BEHIND || c === C_LATE || c === C_FAILED) { bad = true; break; }
        }
        if (!bad) continue;
      }
      out.push(i);
    }
    /* The server sends packages sorted by name: the index is the name order. */
    const dir = S.sort.desc ? -1 : 1;
    if (S.sort.type === 'package') {
      if (S.sort.desc) out.reverse();
    } else {
      const key = new Float64Array(P.length);
      if (S.sort.type === 'published') {
        for (const i of out) key[i] = P[i].p == null ? -1 : Number(P[i].p);
      } else {
        const col = S.siteIndex.get(S.sort.site);
        for (const i of out) key[i] = col == null ? 0 : rankOf((P[i].m || '').charCodeAt(col));
      }
      out.sort((a, b) => (key[a] - key[b]) * dir || a - b);
    }
    S.rows = out;
  }

  /* Rebuild the index and redraw; refilter(true) comes from the user. */
  function refilter(fromUser) {
    if (!S.view) return;
    const t0 = performance.now();
    const colsChanged = computeCols();
    buildIndex();
    S.gen++;
    if (colsChanged || S.layout.key === '') layoutMatrix(true);
    else if (!fromUser) layoutMatrix(false); /* new data: names may be longer */
    updateArrows();
    renderCount();
    renderRows();
    if (fromUser) performance.measure('despool:filter', { start: t0, end: performance.now() });
  }

  function renderCount() {
    const total = S.view.packages.length;
    el.count.textContent = S.rows.length + ' of ' + total + ' packages';
    const ns = S.view.sites.length;
    el.countSites.textContent = S.cols.length === ns ? '' : S.cols.length + ' of ' + ns + ' sites';
    let msg = '';
    if (total === 0) msg = 'No packages yet: nothing has been published or installed.';
    else if (S.rows.length === 0) msg = 'No package matches the filter.';
    el.empty.textContent = msg;
    el.empty.hidden = !msg;
  }

  /* ---------- matrix: layout, header, virtual rows ---------- */

  let measureCtx = null;
  function textWidth(s, font) {
    if (!measureCtx) measureCtx = document.createElement('canvas').getContext('2d');
    measureCtx.font = font;
    return measureCtx.measureText(s).width;
  }

  /* The longest package names (a few characters of slack for wide
   * letters), to measure only those. */
  function longestNames(P, n) {
    let max = 0;
    for (let i = 0; i < P.length; i++) if (P[i].n.length > max) max = P[i].n.length;
    const out = [];
    for (let i = 0; i < P.length && out.length < n; i++)
      if (P[i].n.length >= max - 3) out.push(String(P[i].n));
    return out;
  }

  function layoutMatrix(rebuild) {
    const v = S.view;
    const fam = getComputedStyle(document.body).fontFamily;
    const L = S.layout;
    const names = v.packages.length > 0 ? longestNames(v.packages, 24) : ['PACKAGE'];
    let pw = 0;
    for (const s of names) pw = Math.max(pw, textWidth(s, '600 14px ' + fam));
    L.pkgW = Math.round(Math.min(Math.max(pw + 28, 150), 340));
    L.pubW = 124;

    const n = S.cols.length;
    const avail = el.matrix.clientWidth - L.pkgW - L.pubW - 2;
    L.cellW = n ? Math.floor(Math.min(Math.max(avail / n, 52), 120)) : 52;

    let sw = 0;
    for (const i of S.cols) sw = Math.max(sw, textWidth(v.sites[i], '650 13px ' + fam));
    /* Wide columns keep the names level (ellipsis, full name in the
     * title); narrow ones turn them on their side. */
    const rotated = sw + 12 > L.cellW && L.cellW < 90;
    L.headH = rotated ? Math.round(Math.min(sw, 124) + 30) : 40;
    L.rotated = rotated;

    const total = L.pkgW + L.pubW + n * L.cellW;
    const st = el.matrix.style;
    st.setProperty('--pkg-w', L.pkgW + 'px');
    st.setProperty('--pub-w', L.pubW + 'px');
    st.setProperty('--cell-w', L.cellW + 'px');
    st.setProperty('--head-h', L.headH + 'px');
    st.setProperty('--total-w', total + 'px');
    L.key = [L.pkgW, L.cellW, L.headH, el.matrix.clientWidth].join(',');
    if (rebuild) {
      buildHead();
      resetPool();
    } else {
      el.head.classList.toggle('rotated', rotated);
    }
  }

  function headCell(cls, type, site, label, title) {
    const d = make('div', 'hcell ' + cls);
    d.dataset.sortType = type;
    if (site != null) d.dataset.col = site;
    d.tabIndex = 0;
    d.setAttribute('role', 'columnheader');
    d.title = title;
    d.append(make('span', 'hlabel', label), make('span', 'arrow', ''));
    return d;
  }

  function buildHead() {
    const v = S.view;
    el.head.textContent = '';
    el.head.classList.toggle('rotated', S.layout.rotated);
    el.head.append(
      headCell('hpkg', 'package', null, 'PACKAGE', 'Sort by package name'),
      headCell('hpub', 'published', null, 'PUBLISHED', 'Sort by published version'));
    for (const i of S.cols)
      el.head.appendChild(headCell('hsite', 'site', v.sites[i], v.sites[i],
        v.sites[i] + ': sort by how bad this site\'s cell is'));
  }

  function updateArrows() {
    for (const h of el.head.children) {
      const t = h.dataset.sortType;
      const on = t === S.sort.type && (t !== 'site' || h.dataset.col === S.sort.site);
      h.classList.toggle('sorted', on);
      h.lastChild.textContent = on ? (S.sort.desc ? '▼' : '▲') : '';
      if (on) h.setAttribute('aria-sort', S.sort.desc ? 'descending' : 'ascending');
      else h.removeAttribute('aria-sort');
    }
  }

  let rowTemplate = null;

  function resetPool() {
    for (const r of S.pool) r.remove();
    S.pool = [];
    const v = S.view;
    const t = make('div', 'row');
    t.setAttribute('role', 'row');
    const pk = make('div', 'pkg');
    pk.tabIndex = 0;
    pk.setAttribute('role', 'rowheader');
    t.append(pk, make('div', 'pub'));
    for (const i of S.cols) {
      const c = make('div', 'cell mark-missing');
      c.dataset.site = v.sites[i];
      c.setAttribute('role', 'gridcell');
      t.appendChild(c);
    }
    rowTemplate = t;
  }

  function poolSize() {
    return Math.ceil(Math.max(el.matrix.clientHeight, 200) / ROW_H) + 2 * OVERSCAN + 4;
  }

  function newRow() {
    const r = rowTemplate.cloneNode(true);
    r._pos = -1;
    r._gen = -1;
    r._cells = Array.prototype.slice.call(r.children, 2);
    return r;
  }

  function renderRows() {
    if (!S.view || !rowTemplate) return;
    const rows = S.rows, n = rows.length;
    el.body.style.height = n * ROW_H + 'px';
    const st = el.matrix.scrollTop, h = el.matrix.clientHeight;
    const first = Math.max(0, Math.floor(st / ROW_H) - OVERSCAN);
    const last = Math.min(n, Math.ceil((st + h - S.layout.headH) / ROW_H) + OVERSCAN);
    let cap = S.pool.length;
    if (last - first > cap || cap === 0) {
      for (const r of S.pool) r.remove();
      cap = Math.max(poolSize(), last - first);
      S.pool = [];
      for (let k = 0; k < cap; k++) S.pool.push(newRow());
    }
    const pool = S.pool;
    for (const r of pool)
      if (r._pos >= 0 && (r._pos < first || r._pos >= last || r._pos >= n)) {
        if (r.parentNode) r.remove();
        r._pos = -1;
      }
    let frag = null;
    for (let pos = first; pos < last; pos++) {
      const r = pool[pos % cap];
      if (r._pos !== pos || r._gen !== S.gen) fillRow(r, pos);
      if (!r.parentNode) (frag || (frag = document.createDocumentFragment())).appendChild(r);
    }
    if (frag) el.body.appendChild(frag);
  }

  function fillRow(r, pos) {
    const v = S.view;
    const i = S.rows[pos];
    const p = v.packages[i];
    const name = String(p.n);
    r._pos = pos;
    r._gen = S.gen;
    r.style.top = pos * ROW_H + 'px';
    if (r.dataset.package !== name) r.dataset.package = name;
    const cls = 'row' + (pos & 1 ? ' odd' : '') + (name === S.selected ? ' selected' : '');
    if (r.className !== cls) r.className = cls;

    const pk = r.firstChild, pb = pk.nextSibling;
    if (pk.textContent !== name) { pk.textContent = name; pk.title = name; }
    const pub = p.p == null ? '-' : String(p.p);
    const pcls = 'pub' + (p.p == null ? ' unpublished' : '') + (p.r ? ' is-retired' : '');
    if (pb.textContent !== pub) pb.textContent = pub;
    if (pb.className !== pcls) pb.className = pcls;
    const ptitle = p.p == null ? 'never published' : 'published ' + pub + (p.r ? ', retired by the publisher' : '');
    if (pb.title !== ptitle) pb.title = ptitle;

    const m = p.m || '', vs = p.v || [], cols = S.cols, cells = r._cells, sites = v.sites;
    for (let k = 0; k < cols.length; k++) {
      const col = cols[k];
      const c = m.charCodeAt(col);
      const cell = cells[k];
      const ccls = CELL_CLASS[c] || 'cell mark-missing';
      if (cell.className !== ccls) cell.className = ccls;
      const ver = vs[col];
      const txt = cellText(c, ver);
      if (cell._t !== txt) { cell.textContent = txt; cell._t = txt; }
      const mark = MARK_OF[c] || 'missing';
      let title = sites[col] + ' · ' + name + ' · ' + mark;
      if (ver != null) title += ' (has ' + ver + (p.p == null ? '' : ', published ' + p.p) + ')';
      if (cell._h !== title) { cell.title = title; cell._h = title; }
    }
  }

  let raf = 0;
  function onScroll() {
    if (!raf) raf = requestAnimationFrame(() => { raf = 0; renderRows(); });
  }

  function onResize() {
    if (!S.view) return;
    const key = el.matrix.clientWidth;
    if (S.layout.key.split(',').pop() !== String(key)) {
      const before = S.layout.cellW + ',' + S.layout.headH + ',' + S.layout.rotated;
      layoutMatrix(false);
      if (before !== S.layout.cellW + ',' + S.layout.headH + ',' + S.layout.rotated) S.gen++;
    }
    if (S.pool.length < poolSize()) {
      for (const r of S.pool) r.remove();
      S.pool = [];
    }
    renderRows();
  }

  /* Scroll row pos into view and draw now (keyboard navigation). */
  function revealRow(pos) {
    const m = el.matrix, top = pos * ROW_H, vis = m.clientHeight - S.layout.headH;
    if (top < m.scrollTop) m.scrollTop = top;
    else if (top + ROW_H > m.scrollTop + vis) m.scrollTop = top + ROW_H - vis;
    renderRows();
    const r = S.pool.find((x) => x._pos === pos && x.parentNode);
    return r || null;
  }

  /* ---------- sorting ---------- */

  function sortBy(h) {
    const type = h.dataset.sortType;
    const site = type === 'site' ? h.dataset.col : '';
    if (S.sort.type === type && S.sort.site === site) S.sort.desc = !S.sort.desc;
    else S.sort = { type, site, desc: false };
    writeHash();
    el.matrix.scrollTop = 0;
    refilter(true);
  }

  /* ---------- sites ---------- */

  const SVG = 'http://www.w3.org/2000/svg';

  function svgEl(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    return e;
  }

  function makeCard(name) {
    const c = make('div', 'site');
    c.dataset.site = name;
    const nm = make('div', 'site-name', name);
    nm.title = name;
    const verdict = make('div', 'verdict verdict-none', '-');
    const nums = make('div', 'site-nums');
    nums.append(make('span', 'lag', ''), make('span', 'time-lag', ''));
    const meta = make('div', 'site-meta', '');
    const svg = svgEl('svg', { class: 'spark', width: '120', height: '28', viewBox: '0 0 120 28', preserveAspectRatio: 'none', role: 'img' });
    const err = make('div', 'site-error', '');
    err.hidden = true;
    c.append(nm, verdict, nums, meta, svg, err);
    c._v = verdict; c._lag = nums.firstChild; c._tl = nums.lastChild;
    c._meta = meta; c._svg = svg; c._err = err;
    return c;
  }

  const VERDICT = { OK: 'ok', WARN: 'warn', ERR: 'err' };

  function updateCard(c, s) {
    const status = s.status === 'OK' || s.status === 'WARN' || s.status === 'ERR' ? s.status : '-';
    const vk = VERDICT[status] || 'none';
    c.className = 'site st-' + vk;
    c._v.className = 'verdict verdict-' + vk;
    c._v.textContent = status;
    c._v.title = status === '-' ? 'no verdict until two lag samples exist' : 'lag verdict: ' + status;
    c._lag.textContent = events(s.total_lag);
    c._lag.title = 'total lag of ' + (s.group || 'the group') + ': events not yet consumed';
    c._tl.textContent = humanLag(s.max_time_lag_ms);
    c._tl.title = 'max time lag: age of the oldest unconsumed event';
    const meta = [];
    /* members -1 and state "-": unknown (the note says why) */
    if (typeof s.members === 'number' && s.members >= 0)
      meta.push(s.members + (s.members === 1 ? ' member' : ' members'));
    if (s.state && s.state !== '-') meta.push(String(s.state));
    c._meta.textContent = meta.join(' · ');
    c._meta.title = (s.group ? s.group + ' · ' : '') + meta.join(' · ') + (s.note ? ' · ' + s.note : '');
    if (s.note) {
      const note = make('span', 'site-note', (meta.length ? ' · ' : '') + s.note);
      c._meta.appendChild(note);
    }
    c._err.hidden = !s.error;
    c._err.textContent = s.error ? String(s.error) : '';
    drawSpark(c._svg, Array.isArray(s.samples) ? s.samples : []);
  }

  function drawSpark(svg, samples) {
    const W = 120, H = 28, top = 3, bottom = H - 1.5;
    svg.textContent = '';
    const title = svgEl('title', {});
    svg.appendChild(title);
    svg.appendChild(svgEl('line', { class: 'base', x1: 0, y1: bottom, x2: W, y2: bottom }));
    let pts = samples.filter((x) => Array.isArray(x) && x.length >= 2 && x[1] != null && x[1] >= 0);
    if (pts.length) {
      const cut = pts[pts.length - 1][0] - HOUR_MS;
      pts = pts.filter((x) => x[0] >= cut);
    }
    if (pts.length === 0) {
      title.textContent = 'total lag, last hour: no samples yet';
      return;
    }
    /* The last hour, or less when the samples cover less (a new server):
     * then the line spans what there is, and the title says since when. */
    const end = pts[pts.length - 1][0];
    const start = Math.max(pts[0][0], end - HOUR_MS);
    const width = Math.max(end - start, 1);
    let min = Infinity, max = 0;
    for (const x of pts) { min = Math.min(min, x[1]); max = Math.max(max, x[1]); }
    const xy = [];
    for (const x of pts) {
      const px = pts.length === 1 ? W : Math.max(0, Math.min(W, ((x[0] - start) / width) * W));
      const py = max > 0 ? bottom - (x[1] / max) * (bottom - top) : bottom;
      xy.push(px.toFixed(1) + ',' + py.toFixed(1));
    }
    if (pts.length === 1) {
      const [px, py] = xy[0].split(',');
      xy.unshift(Math.max(0, px - 3).toFixed(1) + ',' + py);
      svg.appendChild(svgEl('circle', { class: 'dot', cx: px, cy: py, r: 1.8 }));
    }
    const firstX = xy[0].split(',')[0], lastX = xy[xy.length - 1].split(',')[0];
    svg.appendChild(svgEl('polygon', { class: 'area', points: firstX + ',' + bottom + ' ' + xy.join(' ') + ' ' + lastX + ',' + bottom }));
    svg.appendChild(svgEl('polyline', { class: 'line', points: xy.join(' ') }));
    title.textContent = 'total lag, last hour: min ' + min.toLocaleString() + ', max ' + max.toLocaleString() +
      ' events (' + pts.length + ' samples since ' + hms(pts[0][0]) + ')';
  }

  function renderSites(d) {
    const list = d.sites;
    const box = el.sites;
    const seen = new Set();
    const tally = { OK: 0, WARN: 0, ERR: 0, '-': 0 };
    if (list.length === 0) {
      for (const c of S.cards.values()) c.remove();
      S.cards.clear();
      if (!box.querySelector('.empty')) box.replaceChildren(make('p', 'empty', 'No sites yet: no consumer group despool.<site> found.'));
      el.sitesSummary.textContent = '';
      return;
    }
    const empty = box.querySelector('.empty');
    if (empty) empty.remove();
    list.forEach((s, k) => {
      const name = String(s.site);
      seen.add(name);
      let c = S.cards.get(name);
      if (!c) { c = makeCard(name); S.cards.set(name, c); }
      updateCard(c, s);
      if (box.children[k] !== c) box.insertBefore(c, box.children[k] || null);
      tally[tally[s.status] != null ? s.status : '-']++;
    });
    for (const [name, c] of S.cards)
      if (!seen.has(name)) { c.remove(); S.cards.delete(name); }

    const parts = [[String(list.length) + (list.length === 1 ? ' site' : ' sites'), '']];
    if (tally.ERR) parts.push([tally.ERR + ' ERR', 'bad']);
    if (tally.WARN) parts.push([tally.WARN + ' WARN', 'warn']);
    parts.push([tally.OK + ' OK', '']);
    if (tally['-']) parts.push([tally['-'] + ' without verdict', '']);
    el.sitesSummary.textContent = '';
    parts.forEach(([t, cls], k) => {
      if (k) el.sitesSummary.appendChild(document.createTextNode(' · '));
      el.sitesSummary.appendChild(make(cls ? 'b' : 'span', cls || null, t));
    });
    if (d.interval_s > 0)
      el.sitesSummary.appendChild(document.createTextNode(' · lag sampled every ' + span(d.interval_s * 1000)));
  }

  /* ---------- package detail ---------- */

  function openDetail(name, opener) {
    const same = S.detail.name === name;
    S.detail.name = name;
    S.detail.opener = opener || null;
    if (!same) {
      S.detail.data = null;
      S.detail.err = null;
      S.detail.seq++;
      S.detail.busy = false;
      el.detailTitle.textContent = name;
      el.detailMeta.textContent = 'loading…';
      el.detailError.hidden = true;
      el.detailSites.textContent = '';
      el.history.textContent = '';
      el.dead.textContent = '';
      el.detailBody.scrollTop = 0;
    }
    S.selected = name;
    el.detail.hidden = false;
    S.gen++;
    renderRows();
    el.detailClose.focus({ preventScroll: true });
    loadDetail(true);
  }

  function closeDetail() {
    if (el.detail.hidden) return;
    el.detail.hidden = true;
    const name = S.detail.name;
    S.detail.name = null;
    S.detail.seq++;
    S.selected = null;
    S.gen++;
    renderRows();
    let back = null;
    for (const r of S.pool) if (r.parentNode && r.dataset.package === name) back = r.firstChild;
    (back || el.matrix).focus({ preventScroll: true });
  }

  async function loadDetail(force) {
    const name = S.detail.name;
    if (name == null || (S.detail.busy && !force)) return;
    const seq = ++S.detail.seq;
    S.detail.busy = true;
    try {
      const d = await getJSON('/api/package?name=' + encodeURIComponent(name));
      if (seq !== S.detail.seq) return;
      S.detail.data = d;
      S.detail.err = null;
    } catch (e) {
      if (seq !== S.detail.seq) return;
      if (e.status === 404) S.detail.data = null;
      S.detail.err = e.status === 404
        ? (e.body && e.body.error ? String(e.body.error) : 'unknown package')
        : 'Cannot load the package: ' + e.message + (S.detail.data ? ' (showing older data)' : '');
    } finally {
      if (seq === S.detail.seq) S.detail.busy = false;
    }
    renderDetail();
  }

  function td(text, cls) {
    return make('td', cls || null, text == null || text === '' ? '' : String(text));
  }

  function timeCell(ms) {
    const c = make('td');
    if (ms == null) { c.textContent = '-'; return c; }
    c.append(document.createTextNode(localTime(ms) + ' '), make('span', 'age', ago(ms)));
    return c;
  }

  function table(headers) {
    const t = make('table', 'dtable');
    const tr = make('tr');
    for (const h of headers) tr.appendChild(make('th', null, h));
    t.appendChild(make('thead')).appendChild(tr);
    return [t, t.appendChild(make('tbody'))];
  }

  function markChip(m) {
    const name = MARKS.includes(m) ? m : 'missing';
    const s = make('span', 'mk mk-' + name, m || 'missing');
    s.title = MARK_LABEL[name];
    return s;
  }

  function renderDetail() {
    const d = S.detail.data;
    el.detailError.hidden = !S.detail.err;
    el.detailError.textContent = S.detail.err || '';
    if (!d) {
      el.detailMeta.textContent = S.detail.err ? '' : 'loading…';
      if (S.detail.err) {
        el.detailSites.replaceChildren(make('p', 'none', '-'));
        el.history.replaceChildren(make('p', 'none', '-'));
        el.dead.replaceChildren(make('p', 'none', 'no dead letters'));
      }
      return;
    }
    el.detailTitle.textContent = String(d.package);

    /* meta line */
    const meta = el.detailMeta;
    meta.textContent = '';
    if (d.published == null) meta.appendChild(make('b', null, 'never published'));
    else {
      meta.append('published ', make('b', null, 'version ' + d.published));
      if (d.published_at_ms != null) meta.append(' at ' + when(d.published_at_ms));
    }
    if (d.retired) meta.append(' · ', make('b', null, 'retired by the publisher'));
    const cells = Array.isArray(d.sites) ? d.sites : [];
    const tally = {};
    for (const c of cells) tally[c.mark] = (tally[c.mark] || 0) + 1;
    const bits = MARKS.filter((m) => tally[m]).map((m) => tally[m] + ' ' + MARK_LABEL[m]);
    if (bits.length) meta.append(' · ' + bits.join(', '));

    /* per-site table */
    if (cells.length === 0) el.detailSites.replaceChildren(make('p', 'none', 'no sites'));
    else {
      const [t, body] = table(['Site', 'Version', 'State', 'Mark', 'At', 'Detail']);
      for (const c of cells) {
        const tr = make('tr');
        tr.dataset.site = String(c.site);
        const mk = make('td');
        mk.appendChild(markChip(c.mark));
        tr.append(td(c.site, 'site-col'), td(c.version == null ? '-' : c.version, 'num'),
          td(c.state == null ? '-' : c.state), mk, timeCell(c.at_ms), td(c.detail, 'wrap'));
        body.appendChild(tr);
      }
      el.detailSites.replaceChildren(t);
    }

    /* history, newest version first */
    const hist = Array.isArray(d.history) ? d.history : [];
    if (hist.length === 0) el.history.replaceChildren(make('p', 'none', 'no history recorded'));
    else {
      const frag = document.createDocumentFragment();
      for (const h of hist) {
        const box = make('div', 'hist');
        box.dataset.version = String(h.version);
        const head = make('div', 'hist-head');
        const inst = Array.isArray(h.installed) ? h.installed : [];
        head.append(make('span', 'hist-ver', 'v' + h.version),
          make('span', 'hist-when', h.published_at_ms == null ? 'publish time unknown' : 'published ' + when(h.published_at_ms)),
          make('span', 'hist-when', inst.length ? 'at ' + inst.length + (inst.length === 1 ? ' site' : ' sites') : ''));
        box.appendChild(head);
        if (inst.length === 0) box.appendChild(make('div', 'hist-none', 'not installed anywhere'));
        else {
          const ul = make('ul', 'hist-sites');
          for (const x of inst) {
            const li = make('li', x.state === 'failed' ? 'failed' : null);
            li.appendChild(make('b', null, String(x.site)));
            let t = ' ' + (x.at_ms == null ? '-' : localTime(x.at_ms));
            if (x.state && x.state !== 'installed') t += ' · ' + x.state;
            li.appendChild(document.createTextNode(t));
            if (x.at_ms != null && h.published_at_ms != null && x.at_ms >= h.published_at_ms)
              li.appendChild(make('span', 'age', ' +' + span(x.at_ms - h.published_at_ms)));
            li.title = x.site + ' ' + (x.state || '') + ' ' + (x.at_ms == null ? '' : when(x.at_ms));
            ul.appendChild(li);
          }
          box.appendChild(ul);
        }
        frag.appendChild(box);
      }
      el.history.replaceChildren(frag);
    }

    /* dead letters, newest first */
    const dl = Array.isArray(d.dead_letters) ? d.dead_letters : [];
    if (dl.length === 0) el.dead.replaceChildren(make('p', 'none', 'no dead letters'));
    else {
      const [t, body] = table(['Time', 'Site', 'Reason', 'Detail', 'Partition / offset']);
      for (const x of dl) {
        const tr = make('tr');
        tr.append(timeCell(x.at_ms), td(x.site, 'site-col'), td(x.reason), td(x.detail, 'wrap'),
          td((x.partition == null ? '-' : x.partition) + ' / ' + (x.offset == null ? '-' : x.offset), 'num'));
        body.appendChild(tr);
      }
      el.dead.replaceChildren(t);
    }
  }

  /* ---------- events ---------- */

  function applyFilters() {
    const pkg = el.fPkg.value.trim(), site = el.fSite.value.trim(), problems = el.fProblems.checked;
    if (pkg === S.f.pkg && site === S.f.site && problems === S.f.problems) return;
    S.f = { pkg, site, problems };
    writeHash();
    refilter(true);
  }

  function wire() {
    const typed = debounce(applyFilters, DEBOUNCE_MS);
    el.fPkg.addEventListener('input', typed);
    el.fSite.addEventListener('input', typed);
    el.fProblems.addEventListener('change', applyFilters);

    window.addEventListener('hashchange', () => {
      applyHash();
      refilter(true);
    });

    el.matrix.addEventListener('scroll', onScroll, { passive: true });
    if (window.ResizeObserver) new ResizeObserver(onResize).observe(el.matrix);
    else window.addEventListener('resize', onResize);

    el.head.addEventListener('click', (e) => {
      const h = e.target.closest('.hcell');
      if (h) sortBy(h);
    });
    el.head.addEventListener('keydown', (e) => {
      const h = e.target.closest('.hcell');
      if (h && (e.key === 'Enter' || e.key === ' ')) { e.preventDefault(); sortBy(h); }
    });

    el.body.addEventListener('click', (e) => {
      const c = e.target.closest('.pkg, .pub, .cell');
      if (c) openDetail(c.parentNode.dataset.package, c.parentNode.firstChild);
    });
    el.body.addEventListener('keydown', (e) => {
      const pk = e.target.closest('.pkg');
      if (!pk) return;
      const r = pk.parentNode;
      if (e.key === 'Enter') {
        e.preventDefault();
        openDetail(r.dataset.package, pk);
      } else if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
        e.preventDefault();
        const pos = r._pos + (e.key === 'ArrowDown' ? 1 : -1);
        if (pos < 0 || pos >= S.rows.length) return;
        const next = revealRow(pos);
        if (next) next.firstChild.focus({ preventScroll: true });
      }
    });

    el.detailClose.addEventListener('click', closeDetail);
    document.addEventListener('keydown', (e) => {
      if (e.key === 'Escape' && !el.detail.hidden) { e.preventDefault(); closeDetail(); }
    });

    const toggle = $('sites-toggle');
    const setSites = (shown) => {
      el.sites.hidden = !shown;
      toggle.textContent = shown ? 'hide' : 'show';
      toggle.setAttribute('aria-expanded', String(shown));
    };
    try { if (localStorage.getItem('despool.sites-hidden') === '1') setSites(false); } catch (e) { /* no storage */ }
    toggle.addEventListener('click', () => {
      const shown = el.sites.hidden;
      setSites(shown);
      try { localStorage.setItem('despool.sites-hidden', shown ? '0' : '1'); } catch (e) { /* no storage */ }
    });
  }

  function start() {
    Object.assign(el, {
      summary: $('summary'), dims: $('dims'), reader: $('reader'), updated: $('updated'),
      error: $('error'), sites: $('sites'), sitesSummary: $('sites-summary'),
      fPkg: $('filter-package'), fSite: $('filter-site'), fProblems: $('only-problems'),
      count: $('matrix-count'), countSites: $('matrix-sites'), legend: $('legend'),
      matrix: $('matrix'), detail: $('detail'), detailClose: $('detail-close'),
      detailTitle: $('detail-title'), chips: {},
    });
    el.errReason = el.error.querySelector('.error-reason');
    el.errSince = el.error.querySelector('.error-since');
    el.head = el.matrix.querySelector('.mhead');
    el.body = el.matrix.querySelector('.mbody');
    el.empty = $('matrix-empty');
    el.detailBody = el.detail.querySelector('.detail-body');
    el.detailMeta = el.detail.querySelector('.detail-meta');
    el.detailError = el.detail.querySelector('.detail-error');
    el.detailSites = el.detail.querySelector('.detail-sites');
    el.history = el.detail.querySelector('.history');
    el.dead = el.detail.querySelector('.dead-letters');

    buildSummary();
    buildLegend();
    applyHash();
    wire();
    pollView();
    pollSites();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
