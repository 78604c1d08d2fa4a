// Folio search page. Plain ES2020, no dependencies, nothing loaded from elsewhere.
//
// Server text (titles, snippets, paths, error messages) is only ever put into the page as text
// nodes (textContent / createTextNode), never as HTML.
'use strict';

(() => {
  /** localStorage key shared with the API explorer (api.js). */
  const KEY_STORAGE = 'folio.apiKey';
  const MAX_IMAGE_BYTES = 20 * 1024 * 1024;
  const MAX_RESULTS = 1000;
  const POLL_MS = 500;

  const $ = (sel, root = document) => root.querySelector(sel);

  /** Builds an element: attrs may hold `class`, `text`, `dataset` and plain attributes. */
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (name === 'class') node.className = value;
      else if (name === 'text') node.textContent = String(value);
      else if (name === 'dataset') Object.assign(node.dataset, value);
      else node.setAttribute(name, value === true ? '' : String(value));
    }
    for (const child of children) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  let uidCounter = 0;
  const uid = (prefix) => `${prefix}-${++uidCounter}`;

  // ---------------------------------------------------------------- API access

  class ApiError extends Error {
    constructor(status, code, message, retryAfter) {
      super(message);
      this.status = status;
      this.code = code;
      this.retryAfter = retryAfter;
    }
  }

  function storedKey() {
    try {
      return localStorage.getItem(KEY_STORAGE) || '';
    } catch (_) {
      return '';
    }
  }

  /** The Authorization header for /v1/* calls when a key is set. */
  function authHeaders(path) {
    const key = storedKey();
    return key && path.startsWith('/v1/') ? { Authorization: `Bearer ${key}` } : {};
  }

  /** Turns a non-2xx response into an ApiError, reading the `{"error": {...}}` body if any. */
  async function errorFrom(res) {
    let code = `http_${res.status}`;
    let message = res.statusText || 'request failed';
    try {
      const text = await res.text();
      try {
        const body = JSON.parse(text);
        if (body && body.error) {
          if (typeof body.error.code === 'string') code = body.error.code;
          if (typeof body.error.message === 'string') message = body.error.message;
        }
      } catch (_) {
        if (text && text.length < 300) message = text;
      }
    } catch (_) {
      /* keep the status text */
    }
    return new ApiError(res.status, code, message, res.headers.get('retry-after'));
  }

  /** fetch() with the key, JSON in and out, and API errors thrown as ApiError. */
  async function api(path, { method = 'GET', json, body, signal } = {}) {
    const headers = { Accept: 'application/json', ...authHeaders(path) };
    if (json !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(json);
    }
    let res;
    try {
      res = await fetch(path, { method, headers, body, signal, cache: 'no-store' });
    } catch (e) {
      if (e && e.name === 'AbortError') throw e;
      throw new ApiError(0, 'network', `could not reach the server (${e && e.message ? e.message : e})`);
    }
    if (!res.ok) throw await errorFrom(res);
    let data = null;
    if ((res.headers.get('content-type') || '').includes('json')) {
      try {
        data = await res.json();
      } catch (_) {
        throw new ApiError(res.status, 'bad_response', 'the server answered malformed JSON');
      }
    }
    return { data, res };
  }

  function describeError(e) {
    if (e instanceof ApiError) {
      let text = e.status ? `${e.message} (${e.status} ${e.code})` : `Error: ${e.message}`;
      if (e.status === 401) text += ' — set an API key in the panel “API key”.';
      if (e.status === 403) text += ' — this key may not do that; an admin key is needed.';
      if (e.status === 429 && e.retryAfter) text += ` — try again in ${e.retryAfter} s.`;
      return text;
    }
    return `Error: ${e && e.message ? e.message : String(e)}`;
  }

  // ---------------------------------------------------------------- images (fetch + blob URLs)

  // Page images are fetched with fetch() so that the API key can be sent (an <img src> cannot
  // carry headers) and shown through blob: URLs, revoked when the results are replaced.
  const imageCache = new Map();

  function blobUrl(url) {
    let p = imageCache.get(url);
    if (!p) {
      p = fetch(url, { headers: authHeaders(url) }).then(async (res) => {
        if (!res.ok) throw await errorFrom(res);
        return URL.createObjectURL(await res.blob());
      });
      p.catch(() => imageCache.delete(url));
      imageCache.set(url, p);
    }
    return p;
  }

  function clearImages() {
    for (const p of imageCache.values()) p.then((u) => URL.revokeObjectURL(u), () => {});
    imageCache.clear();
  }

  const pageUrl = (docId, page, kind) =>
    `/v1/documents/${encodeURIComponent(docId)}/pages/${page}/${kind}`;

  // Thumbnails load when their card scrolls near the viewport.
  const thumbObserver = 'IntersectionObserver' in window
    ? new IntersectionObserver((entries) => {
      for (const entry of entries) {
        if (entry.isIntersecting) {
          thumbObserver.unobserve(entry.target);
          loadThumb(entry.target);
        }
      }
    }, { rootMargin: '300px' })
    : null;

  function loadThumb(img) {
    const url = img.dataset.src;
    if (!url) return;
    delete img.dataset.src;
    blobUrl(url).then(
      (src) => {
        img.src = src;
      },
      () => {
        img.replaceWith(el('span', { class: 'noimg', text: 'no page image' }));
      },
    );
  }

  // ---------------------------------------------------------------- page state

  const state = {
    health: null,
    uncheckedRoutes: new Set(),
    image: null, // {base64, previewUrl, name}
    lastRequest: null,
    nextOffset: 0,
    searchController: null,
    taskToken: 0,
  };

  const ui = {
    q: $('#q'),
    searchForm: $('#search-form'),
    searchArea: $('#search-area'),
    imageFile: $('#image-file'),
    preview: $('#image-preview'),
    previewImg: $('#image-preview-img'),
    previewName: $('#image-preview-name'),
    imageRemove: $('#image-remove'),
    options: $('#options'),
    k: $('#opt-k'),
    fusion: $('#opt-fusion'),
    rerank: $('#opt-rerank'),
    defense: $('#opt-defense'),
    collection: $('#opt-collection'),
    routes: $('#opt-routes-list'),
    status: $('#status'),
    summary: $('#results-summary'),
    results: $('#results'),
    more: $('#more'),
    empty: $('#empty-state'),
    indexInfo: $('#index-info'),
    uploadForm: $('#upload-form'),
    uploadFile: $('#upload-file'),
    uploadDrop: $('#upload-drop'),
    uploadCollection: $('#upload-collection'),
    uploadTags: $('#upload-tags'),
    uploadButton: $('#upload-button'),
    taskStatus: $('#task-status'),
    keyForm: $('#key-form'),
    key: $('#api-key'),
    keyClear: $('#key-clear'),
    keyState: $('#key-state'),
    viewer: $('#viewer'),
    viewerTitle: $('#viewer-title'),
    viewerCounter: $('#viewer-counter'),
    viewerPrev: $('#viewer-prev'),
    viewerNext: $('#viewer-next'),
    viewerClose: $('#viewer-close'),
    viewerFit: $('#viewer-fit'),
    viewerBody: $('#viewer-body'),
    viewerPage: $('#viewer-page'),
    viewerImg: $('#viewer-img'),
    viewerOverlay: $('#viewer-overlay'),
    viewerMsg: $('#viewer-page-msg'),
    viewerSnippet: $('#viewer-snippet'),
  };

  function showStatus(message, kind = 'info') {
    ui.status.className = `status ${kind}`;
    ui.status.textContent = message;
    ui.status.hidden = false;
  }

  function showError(e) {
    showStatus(describeError(e), 'error');
  }

  function clearStatus() {
    ui.status.hidden = true;
    ui.status.textContent = '';
  }

  // ---------------------------------------------------------------- health, routes, rerankers

  const nameOf = (x) => (typeof x === 'string' ? x : x && typeof x.name === 'string' ? x.name : null);

  function renderRoutes(routes) {
    ui.routes.replaceChildren();
    if (!routes.length) {
      ui.routes.append(el('span', { class: 'hint', text: 'No routes yet (the index is empty).' }));
      return;
    }
    for (const name of routes) {
      const id = uid('route');
      const box = el('input', { type: 'checkbox', id, value: name, name: 'routes' });
      box.checked = !state.uncheckedRoutes.has(name);
      box.addEventListener('change', () => {
        if (box.checked) state.uncheckedRoutes.delete(name);
        else state.uncheckedRoutes.add(name);
      });
      ui.routes.append(el('label', { for: id }, box, name));
    }
  }

  function renderRerankers(names) {
    const current = ui.rerank.value || 'none';
    const all = ['none', ...names.filter((n) => n !== 'none')];
    ui.rerank.replaceChildren(...all.map((n) => el('option', { value: n, text: n })));
    ui.rerank.value = all.includes(current) ? current : 'none';
  }

  function renderIndexInfo(h) {
    const parts = [];
    if (typeof h.documents === 'number') parts.push(`${h.documents} document${h.documents === 1 ? '' : 's'}`);
    if (typeof h.passages === 'number') parts.push(`${h.passages} passages`);
    if (typeof h.generation === 'number') parts.push(`generation ${h.generation}`);
    ui.indexInfo.textContent = parts.join(' · ');
    if (h.documents === 0) ui.indexInfo.textContent += ' — the index is empty: add PDFs with “Add documents”.';
  }

  let healthRetry = null;

  async function loadHealth() {
    clearTimeout(healthRetry);
    try {
      const { data } = await api('/healthz');
      state.health = data || {};
      const routes = (Array.isArray(state.health.routes) ? state.health.routes : []).map(nameOf).filter(Boolean);
      const rerankers = (Array.isArray(state.health.rerankers) ? state.health.rerankers : []).map(nameOf).filter(Boolean);
      renderRoutes(routes);
      renderRerankers(rerankers);
      renderIndexInfo(state.health);
      setIngest(state.health.ingest !== false, state.health.read_only === true);
    } catch (e) {
      ui.indexInfo.textContent = 'Server not reachable; retrying…';
      ui.routes.replaceChildren(el('span', { class: 'hint', text: 'Unknown: the server default is used.' }));
      healthRetry = setTimeout(loadHealth, 3000);
    }
  }

  // ---------------------------------------------------------------- query image

  function blobToBase64(blob) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => {
        const s = String(reader.result);
        resolve(s.slice(s.indexOf(',') + 1));
      };
      reader.onerror = () => reject(reader.error || new Error('could not read the image'));
      reader.readAsDataURL(blob);
    });
  }

  /** Re-encodes an image the API does not take (GIF, WebP, …) as PNG. */
  async function toPng(blob) {
    const bitmap = await createImageBitmap(blob);
    const canvas = document.createElement('canvas');
    canvas.width = bitmap.width;
    canvas.height = bitmap.height;
    canvas.getContext('2d').drawImage(bitmap, 0, 0);
    if (bitmap.close) bitmap.close();
    return new Promise((resolve, reject) =>
      canvas.toBlob((b) => (b ? resolve(b) : reject(new Error('could not convert the image to PNG'))), 'image/png'));
  }

  async function setQueryImage(file, label) {
    if (!file) return;
    if (!file.type || !file.type.startsWith('image/')) {
      const pdf = file.type === 'application/pdf' || /\.pdf$/i.test(file.name || '');
      showStatus(pdf
        ? 'That is a PDF: to index it, use “Add documents”. Searching by picture takes a PNG or JPEG.'
        : `“${file.name || 'that file'}” is not an image: search by picture takes a PNG or JPEG.`, 'error');
      return;
    }
    let blob = file;
    try {
      if (file.type !== 'image/png' && file.type !== 'image/jpeg') blob = await toPng(file);
      if (blob.size > MAX_IMAGE_BYTES) {
        showStatus(`The image is ${(blob.size / 1048576).toFixed(1)} MiB; the limit is 20 MiB.`, 'error');
        return;
      }
      const base64 = await blobToBase64(blob);
      removeQueryImage(false);
      const previewUrl = URL.createObjectURL(blob);
      state.image = { base64, previewUrl, name: label || file.name || 'image' };
      ui.previewImg.src = previewUrl;
      ui.previewName.textContent = `${state.image.name} · ${(blob.size / 1024).toFixed(0)} KiB`;
      ui.preview.hidden = false;
      clearStatus();
      runSearch(false);
    } catch (e) {
      showStatus(`Could not read the image: ${e && e.message ? e.message : e}`, 'error');
    }
  }

  function removeQueryImage(focus = true) {
    if (state.image) URL.revokeObjectURL(state.image.previewUrl);
    state.image = null;
    ui.preview.hidden = true;
    ui.previewImg.removeAttribute('src');
    ui.imageFile.value = '';
    if (focus) ui.q.focus();
  }

  const hasFiles = (e) => e.dataTransfer && Array.from(e.dataTransfer.types || []).includes('Files');

  function wireImageInput() {
    ui.imageFile.addEventListener('change', () => {
      const f = ui.imageFile.files && ui.imageFile.files[0];
      if (f) setQueryImage(f);
    });
    ui.imageRemove.addEventListener('click', () => removeQueryImage(true));

    let depth = 0;
    ui.searchArea.addEventListener('dragenter', (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      depth += 1;
      ui.searchArea.classList.add('dragging');
    });
    ui.searchArea.addEventListener('dragover', (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      e.dataTransfer.dropEffect = 'copy';
    });
    ui.searchArea.addEventListener('dragleave', () => {
      depth = Math.max(0, depth - 1);
      if (!depth) ui.searchArea.classList.remove('dragging');
    });
    ui.searchArea.addEventListener('drop', (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      depth = 0;
      ui.searchArea.classList.remove('dragging');
      const files = Array.from(e.dataTransfer.files || []);
      setQueryImage(files.find((f) => f.type.startsWith('image/')) || files[0]);
    });

    // A file dropped beside the drop areas must not navigate away from the page.
    for (const type of ['dragover', 'drop']) {
      window.addEventListener(type, (e) => {
        if (hasFiles(e) && !(e.target instanceof HTMLInputElement && e.target.type === 'file')) {
          e.preventDefault();
        }
      });
    }

    document.addEventListener('paste', (e) => {
      if (ui.viewer.open) return;
      const items = Array.from((e.clipboardData && e.clipboardData.items) || []);
      const item = items.find((i) => i.kind === 'file' && i.type.startsWith('image/'));
      if (!item) return;
      const file = item.getAsFile();
      if (!file) return;
      e.preventDefault();
      setQueryImage(file, 'pasted image');
    });
  }

  // ---------------------------------------------------------------- search

  function buildRequest() {
    const query = ui.q.value.trim();
    if (!query && !state.image) {
      return { error: 'Type a query, or add an image to search by picture.', focus: ui.q };
    }
    const k = Number(ui.k.value);
    if (!Number.isInteger(k) || k < 1 || k > MAX_RESULTS) {
      ui.options.open = true;
      return { error: `Results (k) must be a whole number from 1 to ${MAX_RESULTS}.`, focus: ui.k };
    }
    // Defaults (rrf, no re-ranking, every route) are left out of the request.
    const request = { query, k };
    if (ui.fusion.value && ui.fusion.value !== 'rrf') request.fusion = ui.fusion.value;
    if (ui.rerank.value && ui.rerank.value !== 'none') request.rerank = ui.rerank.value;
    if (ui.defense.value && ui.defense.value !== 'none') request.defense = ui.defense.value;
    const boxes = Array.from(ui.routes.querySelectorAll('input[type=checkbox]'));
    if (boxes.length) {
      const chosen = boxes.filter((b) => b.checked).map((b) => b.value);
      if (!chosen.length) {
        ui.options.open = true;
        return { error: 'Choose at least one route.', focus: boxes[0] };
      }
      if (chosen.length < boxes.length) request.routes = chosen;
    }
    const collections = ui.collection.value.split(',').map((s) => s.trim()).filter(Boolean);
    if (collections.length) request.filter = { collections };
    if (state.image) request.image = state.image.base64;
    return { request };
  }

  async function runSearch(append) {
    let request;
    if (append && state.lastRequest) {
      request = { ...state.lastRequest, offset: state.nextOffset };
      request.k = Math.min(request.k, MAX_RESULTS - request.offset);
      if (request.k < 1) return;
    } else {
      const built = buildRequest();
      if (built.error) {
        showStatus(built.error, 'error');
        built.focus.focus();
        return;
      }
      request = built.request;
      const params = request.query ? `?q=${encodeURIComponent(request.query)}` : location.pathname;
      try {
        history.replaceState(null, '', params);
      } catch (_) {
        /* not fatal */
      }
    }

    if (state.searchController) state.searchController.abort();
    const controller = new AbortController();
    state.searchController = controller;
    ui.results.setAttribute('aria-busy', 'true');
    ui.more.disabled = true;
    if (!append) ui.summary.textContent = 'Searching…';
    const started = performance.now();

    let data;
    try {
      ({ data } = await api('/v1/search', { method: 'POST', json: request, signal: controller.signal }));
    } catch (e) {
      if (e && e.name === 'AbortError') return;
      showError(e);
      if (!append) ui.summary.textContent = '';
      ui.results.removeAttribute('aria-busy');
      ui.more.disabled = false;
      return;
    } finally {
      if (state.searchController === controller) state.searchController = null;
    }
    const elapsed = performance.now() - started;
    clearStatus();
    renderResults(request, data || {}, append, elapsed);
  }

  function renderResults(request, data, append, elapsed) {
    const hits = Array.isArray(data.hits) ? data.hits : [];
    const offset = request.offset || 0;
    if (!append) {
      clearImages();
      ui.results.replaceChildren();
    }
    ui.empty.hidden = true;
    const items = hits.map((hit, i) => renderCard(hit, offset + i + 1));
    ui.results.append(...items);
    ui.results.removeAttribute('aria-busy');

    state.lastRequest = { ...request };
    delete state.lastRequest.offset;
    state.nextOffset = offset + hits.length;
    ui.more.hidden = !(hits.length === request.k && state.nextOffset < MAX_RESULTS);
    ui.more.disabled = false;

    const total = ui.results.children.length;
    const what = [request.query && `“${request.query}”`, request.image && 'the image'].filter(Boolean).join(' and ');
    let text = total
      ? `${total} result${total === 1 ? '' : 's'} for ${what} · ${Math.round(elapsed)} ms`
      : `No pages matched ${what}.`;
    if (data.reranker && data.reranker !== 'none') text += ` · re-ranked by ${data.reranker}`;
    ui.summary.replaceChildren(text);
    if (data.degraded) {
      const why = data.rerank_error ? `: ${data.rerank_error}` : '';
      ui.summary.append(' · ', el('span', { class: 'degraded', text: `re-ranking did not finish, fused order shown${why}` }));
    }
    if (append && items.length) items[0].querySelector('.card').focus();
  }

  /** Sorted, merged, clamped [start, end) code-point ranges. */
  function normalizeRanges(ranges, length) {
    const out = [];
    for (const r of Array.isArray(ranges) ? ranges : []) {
      let s = Array.isArray(r) ? r[0] : r && r.start;
      let e = Array.isArray(r) ? r[1] : r && r.end;
      if (!Number.isFinite(s) || !Number.isFinite(e)) continue;
      s = Math.max(0, Math.min(length, Math.floor(s)));
      e = Math.max(0, Math.min(length, Math.floor(e)));
      if (e > s) out.push([s, e]);
    }
    out.sort((a, b) => a[0] - b[0]);
    const merged = [];
    for (const r of out) {
      const last = merged[merged.length - 1];
      if (last && r[0] <= last[1]) last[1] = Math.max(last[1], r[1]);
      else merged.push(r);
    }
    return merged;
  }

  /**
   * The snippet as text nodes with <mark> around the highlight ranges. Offsets count Unicode
   * code points (Rust chars), not UTF-16 units, hence Array.from.
   */
  function markedText(text, ranges) {
    const frag = document.createDocumentFragment();
    const chars = Array.from(text || '');
    let pos = 0;
    for (const [s, e] of normalizeRanges(ranges, chars.length)) {
      if (s > pos) frag.append(chars.slice(pos, s).join(''));
      frag.append(el('mark', {}, chars.slice(s, e).join('')));
      pos = e;
    }
    if (pos < chars.length) frag.append(chars.slice(pos).join(''));
    return frag;
  }

  function baseName(path) {
    const s = String(path || '');
    return s.slice(Math.max(s.lastIndexOf('/'), s.lastIndexOf('\\')) + 1);
  }

  function titleOf(hit) {
    if (hit.title) return String(hit.title);
    const base = baseName(hit.path).replace(/\.pdf$/i, '');
    return base || String(hit.doc_id || 'document');
  }

  function fmtScore(x) {
    if (typeof x !== 'number' || !Number.isFinite(x)) return '';
    const a = Math.abs(x);
    return a !== 0 && (a < 0.001 || a >= 10000) ? x.toExponential(2) : String(Number(x.toPrecision(3)));
  }

  function boxesOf(hit) {
    const raw = hit.passage && Array.isArray(hit.passage.boxes) ? hit.passage.boxes : [];
    const clamp = (v) => Math.max(0, Math.min(1, v));
    const boxes = [];
    for (const b of raw) {
      const [x0, y0, x1, y1] = Array.isArray(b) ? b : [b && b.x0, b && b.y0, b && b.x1, b && b.y1];
      if (![x0, y0, x1, y1].every(Number.isFinite)) continue;
      const box = { x0: clamp(Math.min(x0, x1)), y0: clamp(Math.min(y0, y1)), x1: clamp(Math.max(x0, x1)), y1: clamp(Math.max(y0, y1)) };
      if (box.x1 > box.x0 && box.y1 > box.y0) boxes.push(box);
    }
    return boxes;
  }

  function renderCard(hit, rank) {
    const title = titleOf(hit);
    const page = Number(hit.page) || 1;
    const titleId = uid('title');
    const pageId = uid('page');
    const descId = uid('desc');
    const scanned = hit.text_layer === 'none';

    // No thumbnail_url (nor image_url): the index keeps no picture of this page.
    const thumbUrl = hit.thumbnail_url || hit.image_url;
    let img = el('span', { class: 'noimg', text: 'no page image' });
    if (thumbUrl) {
      img = el('img', { alt: '', decoding: 'async' });
      img.dataset.src = thumbUrl;
      if (thumbObserver) thumbObserver.observe(img);
      else loadThumb(img);
    }

    const text = scanned
      ? el('p', { class: 'scanned', id: descId, text: 'scanned page (matched by image)' })
      : el('p', { class: 'snippet', id: descId }, markedText(hit.snippet, hit.highlights));

    const badges = Object.entries(hit.routes && typeof hit.routes === 'object' ? hit.routes : {})
      .filter(([, r]) => Number.isFinite(r))
      .sort((a, b) => a[1] - b[1])
      .map(([name, r]) => {
        const s = hit.route_scores && hit.route_scores[name];
        const tip = `rank ${r} in the ${name} route${Number.isFinite(s) ? `, score ${fmtScore(s)}` : ''}`;
        return el('span', { class: 'badge route', title: tip, 'aria-label': tip, text: `${name} #${r}` });
      });
    if (Number.isFinite(hit.rerank_score)) {
      badges.push(el('span', { class: 'badge rerank', title: 're-ranker score', text: `rerank ${fmtScore(hit.rerank_score)}` }));
    }
    if (hit.suspicion && typeof hit.suspicion === 'object') {
      const reasons = Array.isArray(hit.suspicion.reasons) ? hit.suspicion.reasons.join('; ') : '';
      const tip = `flagged by ${hit.suspicion.detector || 'a detector'}${reasons ? `: ${reasons}` : ''}`;
      badges.push(el('span', { class: 'badge suspicion', title: tip, 'aria-label': tip, text: 'flagged' }));
    }

    const card = el('div', {
      class: 'card',
      tabindex: '0',
      role: 'button',
      'aria-haspopup': 'dialog',
      'aria-labelledby': `${titleId} ${pageId}`,
      'aria-describedby': descId,
      dataset: { docId: String(hit.doc_id || ''), page: String(page), rank: String(rank), boxes: String(boxesOf(hit).length) },
    },
    el('div', { class: 'thumb' }, img, el('span', { class: 'rank', 'aria-hidden': 'true', text: `#${rank}` })),
    el('div', { class: 'card-body' },
      el('div', { class: 'card-head' },
        el('span', { class: 'title', id: titleId, title, text: title }),
        el('span', { class: 'page', id: pageId, text: `page ${page}` })),
      hit.path ? el('p', { class: 'path', title: String(hit.path), text: baseName(hit.path) }) : null,
      text,
      el('div', { class: 'card-foot' }, ...badges,
        el('span', { class: 'score', title: 'fused score', text: `score ${fmtScore(hit.score)}` }))));

    card.addEventListener('click', () => openViewer(hit, card));
    card.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' || e.key === ' ') {
        e.preventDefault();
        openViewer(hit, card);
      }
    });
    return el('li', {}, card);
  }

  // ---------------------------------------------------------------- document viewer

  const viewer = {
    hit: null,
    docId: '',
    title: '',
    page: 1,
    pages: 0,
    pageInfo: new Map(),
    returnFocus: null,
    token: 0,
  };

  async function openViewer(hit, card) {
    viewer.hit = hit;
    viewer.docId = String(hit.doc_id || '');
    viewer.title = titleOf(hit);
    viewer.page = Number(hit.page) || 1;
    viewer.pages = 0;
    viewer.pageInfo = new Map();
    viewer.returnFocus = card || document.activeElement;
    ui.viewerTitle.textContent = viewer.title;
    ui.viewer.dataset.docId = viewer.docId;
    if (!ui.viewer.open) ui.viewer.showModal();
    ui.viewerBody.setAttribute('tabindex', '-1');
    ui.viewerBody.focus();
    showPage(viewer.page);

    const docId = viewer.docId;
    try {
      const { data } = await api(`/v1/documents/${encodeURIComponent(docId)}`);
      if (viewer.docId !== docId || !data) return;
      const info = Array.isArray(data.page_info) ? data.page_info : [];
      for (const p of info) if (p && Number.isFinite(p.page)) viewer.pageInfo.set(p.page, p);
      viewer.pages = Number(data.pages) || info.length || 0;
      if (data.title) {
        viewer.title = String(data.title);
        ui.viewerTitle.textContent = viewer.title;
      }
      updateNav();
    } catch (e) {
      // Without the page count the hit's page is still shown; paging stays off.
      if (viewer.docId === docId) ui.viewerCounter.textContent = `Page ${viewer.page}`;
    }
  }

  function updateNav() {
    const { page, pages } = viewer;
    ui.viewerCounter.textContent = pages ? `Page ${page} of ${pages}` : `Page ${page}`;
    ui.viewerPrev.disabled = page <= 1 || !pages;
    ui.viewerNext.disabled = !pages || page >= pages;
    ui.viewer.dataset.page = String(page);
    ui.viewer.dataset.pages = String(pages);
  }

  function drawBoxes(boxes) {
    ui.viewerOverlay.replaceChildren(...boxes.map((b) => el('div', {
      class: 'highlight',
      style: `left:${b.x0 * 100}%;top:${b.y0 * 100}%;width:${(b.x1 - b.x0) * 100}%;height:${(b.y1 - b.y0) * 100}%`,
    })));
    ui.viewer.dataset.boxes = String(boxes.length);
  }

  function showPage(n) {
    const hit = viewer.hit;
    if (!hit) return;
    viewer.page = n;
    const token = ++viewer.token;
    const onHitPage = n === (Number(hit.page) || 1);
    const boxes = onHitPage ? boxesOf(hit) : [];
    updateNav();
    drawBoxes([]);
    ui.viewer.dataset.loaded = 'false';
    ui.viewerMsg.hidden = true;
    ui.viewerPage.classList.remove('missing');
    ui.viewerPage.classList.add('loading');
    ui.viewerImg.alt = `Page ${n} of ${viewer.title}`;

    // The passage as text under the page when it cannot be drawn on it.
    ui.viewerSnippet.hidden = !(onHitPage && !boxes.length && hit.text_layer !== 'none' && hit.snippet);
    ui.viewerSnippet.replaceChildren(ui.viewerSnippet.hidden ? '' : markedText(hit.snippet, hit.highlights));
    ui.viewer.classList.toggle('with-snippet', !ui.viewerSnippet.hidden);

    const info = viewer.pageInfo.get(n);
    if ((info && info.image === false) || (onHitPage && !hit.image_url)) {
      pageMissing(token, `No stored image for page ${n}.`);
      return;
    }
    const url = onHitPage ? hit.image_url : pageUrl(viewer.docId, n, 'image');
    blobUrl(url).then((src) => {
      if (token !== viewer.token) return;
      ui.viewerImg.onload = () => {
        if (token !== viewer.token) return;
        ui.viewerPage.classList.remove('loading');
        drawBoxes(boxes);
        ui.viewer.dataset.loaded = 'true';
        const first = ui.viewerOverlay.firstElementChild;
        if (first) first.scrollIntoView({ block: 'nearest', inline: 'nearest' });
        if (viewer.pages && n < viewer.pages) blobUrl(pageUrl(viewer.docId, n + 1, 'image')).catch(() => {});
      };
      ui.viewerImg.onerror = () => pageMissing(token, `Page ${n} could not be shown.`);
      ui.viewerImg.src = src;
    }, (e) => pageMissing(token, `Page ${n} could not be loaded: ${describeError(e)}`));
  }

  function pageMissing(token, message) {
    if (token !== viewer.token) return;
    ui.viewerPage.classList.remove('loading');
    ui.viewerPage.classList.add('missing');
    ui.viewerImg.removeAttribute('src');
    ui.viewerMsg.textContent = message;
    ui.viewerMsg.hidden = false;
    ui.viewer.dataset.loaded = 'error';
  }

  function stepPage(delta) {
    const n = viewer.page + delta;
    if (!viewer.pages || n < 1 || n > viewer.pages) return;
    showPage(n);
  }

  function focusables(root) {
    return Array.from(root.querySelectorAll('button, [href], input, select, textarea, [tabindex]:not([tabindex="-1"])'))
      .filter((n) => !n.disabled && n.offsetParent !== null);
  }

  function wireViewer() {
    ui.viewerPrev.addEventListener('click', () => stepPage(-1));
    ui.viewerNext.addEventListener('click', () => stepPage(1));
    ui.viewerClose.addEventListener('click', () => ui.viewer.close());
    ui.viewerFit.addEventListener('click', () => {
      const on = ui.viewer.classList.toggle('fit-width');
      ui.viewerFit.setAttribute('aria-pressed', String(on));
    });
    ui.viewer.addEventListener('click', (e) => {
      if (e.target === ui.viewer) ui.viewer.close(); // a click on the backdrop
    });
    ui.viewer.addEventListener('keydown', (e) => {
      if (e.altKey || e.ctrlKey || e.metaKey) return;
      switch (e.key) {
        case 'ArrowLeft':
        case 'PageUp':
          e.preventDefault();
          stepPage(-1);
          break;
        case 'ArrowRight':
        case 'PageDown':
          e.preventDefault();
          stepPage(1);
          break;
        case 'Home':
          if (viewer.pages) { e.preventDefault(); showPage(1); }
          break;
        case 'End':
          if (viewer.pages) { e.preventDefault(); showPage(viewer.pages); }
          break;
        case 'Escape':
          e.preventDefault();
          ui.viewer.close();
          break;
        case 'Tab': {
          // Keep focus inside the dialog.
          const list = focusables(ui.viewer);
          if (!list.length) break;
          const first = list[0];
          const last = list[list.length - 1];
          const active = document.activeElement;
          if (e.shiftKey && (active === first || !ui.viewer.contains(active) || active === ui.viewerBody)) {
            e.preventDefault();
            last.focus();
          } else if (!e.shiftKey && (active === last || !ui.viewer.contains(active))) {
            e.preventDefault();
            first.focus();
          }
          break;
        }
        default:
          break;
      }
    });
    ui.viewer.addEventListener('close', () => {
      viewer.token += 1;
      viewer.hit = null;
      viewer.docId = '';
      ui.viewerImg.removeAttribute('src');
      drawBoxes([]);
      ui.viewer.dataset.loaded = 'false';
      const back = viewer.returnFocus;
      viewer.returnFocus = null;
      if (back && back.isConnected) back.focus();
    });
  }

  // ---------------------------------------------------------------- upload and task progress

  /** POST multipart with upload progress (fetch() cannot report it). */
  function postMultipart(path, form, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open('POST', path);
      xhr.setRequestHeader('Accept', 'application/json');
      for (const [k, v] of Object.entries(authHeaders(path))) xhr.setRequestHeader(k, v);
      xhr.upload.onprogress = (e) => {
        if (e.lengthComputable) onProgress(e.loaded / e.total);
      };
      xhr.onerror = () => reject(new ApiError(0, 'network', 'could not reach the server'));
      xhr.ontimeout = () => reject(new ApiError(0, 'timeout', 'the upload timed out'));
      xhr.onload = () => {
        let body = null;
        try {
          body = JSON.parse(xhr.responseText);
        } catch (_) {
          body = null;
        }
        if (xhr.status >= 200 && xhr.status < 300) {
          resolve({ data: body, location: xhr.getResponseHeader('location') });
        } else {
          const err = body && body.error ? body.error : {};
          reject(new ApiError(xhr.status, typeof err.code === 'string' ? err.code : `http_${xhr.status}`,
            typeof err.message === 'string' ? err.message : xhr.statusText || 'upload refused',
            xhr.getResponseHeader('retry-after')));
        }
      };
      xhr.send(form);
    });
  }

  let lastTaskView = '';

  function renderTask(task, note) {
    const view = JSON.stringify([task, note]);
    if (view === lastTaskView) return;
    lastTaskView = view;
    const taskState = String(task.state || 'unknown');
    ui.taskStatus.dataset.state = taskState;
    const head = el('div', { class: 'task-head' },
      el('span', { class: `state state-${taskState}`, text: taskState }),
      task.id ? el('span', { class: 'hint', text: `task ${task.id}` }) : null);
    const parts = [head];
    const progress = task.progress || {};
    if (Number.isFinite(progress.total) && progress.total > 0) {
      parts.push(el('progress', { max: String(progress.total), value: String(progress.done || 0), 'aria-label': 'Indexing progress' }));
      parts.push(el('div', { class: 'hint', text: `${progress.done || 0} of ${progress.total} file${progress.total === 1 ? '' : 's'} done` }));
    } else if (Number.isFinite(task.uploaded)) {
      parts.push(el('progress', { max: '100', value: String(Math.round(task.uploaded * 100)), 'aria-label': 'Upload progress' }));
    }
    if (note) parts.push(el('div', { class: 'hint', text: note }));
    const files = Array.isArray(task.files) ? task.files : [];
    if (files.length) {
      parts.push(el('ul', { class: 'task-files' }, ...files.map((f) => {
        const status = String(f.status || 'pending');
        return el('li', {},
          el('span', { class: 'fname', text: f.name || '' }),
          el('span', { class: `state state-${status}`, text: status }),
          Number.isFinite(f.pages) ? el('span', { class: 'hint', text: `${f.pages} page${f.pages === 1 ? '' : 's'}` }) : null,
          f.reason ? el('span', { class: 'reason', text: String(f.reason) }) : null,
          f.warning ? el('span', { class: 'warning', text: String(f.warning) }) : null);
      })));
    }
    if (task.error) parts.push(el('p', { class: 'task-error', text: String(task.error) }));
    ui.taskStatus.replaceChildren(...parts);
  }

  /** The upload form is off when the server takes no uploads (`ingest: false` in /healthz);
   *  a read-only query node says so. */
  function setIngest(on, readOnly) {
    for (const node of ui.uploadForm.elements) node.disabled = !on;
    let note = $('#upload-off');
    if (!on && !note) {
      const why = readOnly
        ? 'This is a read-only query node: documents are indexed elsewhere and appear here within seconds.'
        : 'This server does not take uploads (no ingestion configured).';
      note = el('p', { id: 'upload-off', class: 'hint', text: why });
      ui.uploadForm.before(note);
    } else if (on && note) {
      note.remove();
    }
  }

  function finishUpload(task) {
    ui.uploadButton.disabled = false;
    if (task && task.state === 'succeeded') {
      ui.uploadForm.reset();
      const failed = (task.files || []).filter((f) => f.status === 'failed').length;
      if (failed) showStatus(`Indexing finished; ${failed} file${failed === 1 ? '' : 's'} failed (see “Add documents”).`, 'warn');
      loadHealth();
    }
  }

  async function pollTask(id, token) {
    let errors = 0;
    const tick = async () => {
      if (token !== state.taskToken) return;
      try {
        const { data } = await api(`/v1/tasks/${encodeURIComponent(id)}`);
        if (token !== state.taskToken) return;
        errors = 0;
        const task = data || {};
        renderTask(task);
        if (task.state === 'succeeded' || task.state === 'failed') {
          finishUpload(task);
          return;
        }
      } catch (e) {
        errors += 1;
        if (token !== state.taskToken) return;
        if (errors >= 10 || (e instanceof ApiError && [401, 403, 404].includes(e.status))) {
          renderTask({ id, state: 'unknown' }, `Lost track of the task: ${describeError(e)}`);
          ui.taskStatus.dataset.state = 'error';
          showError(e);
          ui.uploadButton.disabled = false;
          return;
        }
      }
      setTimeout(tick, POLL_MS);
    };
    tick();
  }

  async function upload(e) {
    e.preventDefault();
    const files = Array.from(ui.uploadFile.files || []);
    if (!files.length) {
      showStatus('Choose one or more PDF files to upload.', 'error');
      ui.uploadFile.focus();
      return;
    }
    const form = new FormData();
    for (const f of files) form.append('file', f, f.name);
    const collection = ui.uploadCollection.value.trim();
    const tags = ui.uploadTags.value.split(',').map((s) => s.trim()).filter(Boolean).join(',');
    if (collection) form.append('collection', collection);
    if (tags) form.append('tags', tags);

    const token = ++state.taskToken;
    lastTaskView = '';
    ui.uploadButton.disabled = true;
    const pending = files.map((f) => ({ name: f.name, status: 'pending' }));
    renderTask({ state: 'uploading', files: pending, uploaded: 0 });
    try {
      const { data, location } = await postMultipart('/v1/documents', form, (fraction) => {
        if (token === state.taskToken) renderTask({ state: 'uploading', files: pending, uploaded: fraction });
      });
      if (token !== state.taskToken) return;
      // The task itself, or wrapped as {"task": {...}}.
      const task = (data && typeof data.task === 'object' && data.task) || data || {};
      const id = task.id || (location ? decodeURIComponent(location.split('/').pop()) : '');
      if (!id) throw new ApiError(0, 'bad_response', 'the server did not name the indexing task');
      renderTask({ ...task, id, state: task.state || 'queued' });
      pollTask(id, token);
    } catch (err) {
      if (token !== state.taskToken) return;
      renderTask({ state: 'failed', files: pending }, describeError(err));
      showError(err);
      ui.uploadButton.disabled = false;
    }
  }

  function wireUpload() {
    ui.uploadForm.addEventListener('submit', upload);
    const zone = ui.uploadDrop;
    zone.addEventListener('dragover', (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      zone.classList.add('dragging');
    });
    zone.addEventListener('dragleave', (e) => {
      if (!zone.contains(e.relatedTarget)) zone.classList.remove('dragging');
    });
    zone.addEventListener('drop', (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      zone.classList.remove('dragging');
      const pdfs = Array.from(e.dataTransfer.files || []).filter((f) => f.type === 'application/pdf' || /\.pdf$/i.test(f.name));
      if (!pdfs.length) {
        showStatus('Only PDF files can be indexed.', 'error');
        return;
      }
      const dt = new DataTransfer();
      for (const f of pdfs) dt.items.add(f);
      ui.uploadFile.files = dt.files;
      ui.uploadButton.focus();
    });
  }

  // ---------------------------------------------------------------- API key

  function renderKeyState() {
    const key = storedKey();
    ui.key.value = key;
    ui.keyState.textContent = key ? 'A key is saved in this browser and sent with API calls.' : 'No key saved.';
  }

  function wireKey() {
    renderKeyState();
    ui.keyForm.addEventListener('submit', (e) => {
      e.preventDefault();
      try {
        const key = ui.key.value.trim();
        if (key) localStorage.setItem(KEY_STORAGE, key);
        else localStorage.removeItem(KEY_STORAGE);
      } catch (_) {
        showStatus('This browser does not allow saving the key (storage is blocked).', 'error');
      }
      clearImages();
      renderKeyState();
    });
    ui.keyClear.addEventListener('click', () => {
      try {
        localStorage.removeItem(KEY_STORAGE);
      } catch (_) {
        /* nothing saved then */
      }
      clearImages();
      renderKeyState();
      ui.key.focus();
    });
    window.addEventListener('storage', (e) => {
      if (e.key === KEY_STORAGE) renderKeyState();
    });
  }

  // ---------------------------------------------------------------- start

  function start() {
    wireImageInput();
    wireViewer();
    wireUpload();
    wireKey();
    ui.searchForm.addEventListener('submit', (e) => {
      e.preventDefault();
      runSearch(false);
    });
    ui.more.addEventListener('click', () => runSearch(true));
    loadHealth().then(() => {
      const q = new URLSearchParams(location.search).get('q');
      if (q && !ui.q.value) {
        ui.q.value = q;
        runSearch(false);
      }
    });
  }

  start();
})();
