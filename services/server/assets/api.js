// Folio API explorer: reads /openapi.json (OpenAPI 3.1) and lists every operation with its
// parameters and schemas, plus a "Try it" form. Plain ES2020; server text only as text nodes.
'use strict';

(() => {
  const KEY_STORAGE = 'folio.apiKey'; // shared with the search page (app.js)
  const METHODS = ['get', 'post', 'put', 'patch', 'delete', 'head', 'options'];
  const MAX_SHOWN_CHARS = 200000;

  const $ = (sel, root = document) => root.querySelector(sel);

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (name === 'class') node.className = value;
      else if (name === 'text') node.textContent = String(value);
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

  function storedKey() {
    try {
      return localStorage.getItem(KEY_STORAGE) || '';
    } catch (_) {
      return '';
    }
  }

  const status = $('#api-status');
  function showStatus(message, kind) {
    status.className = `status ${kind || 'info'}`;
    status.textContent = message;
    status.hidden = false;
  }

  // ---------------------------------------------------------------- $ref resolution

  let spec = {};

  /** Resolves a local JSON pointer such as `#/components/schemas/SearchRequest`. */
  function resolvePointer(ref) {
    if (typeof ref !== 'string' || !ref.startsWith('#/')) return undefined;
    let node = spec;
    for (const raw of ref.slice(2).split('/')) {
      const key = decodeURIComponent(raw).replace(/~1/g, '/').replace(/~0/g, '~');
      if (node === null || typeof node !== 'object' || !(key in node)) return undefined;
      node = node[key];
    }
    return node;
  }

  const refName = (ref) => String(ref).split('/').pop();

  /** Follows `$ref` chains of an object (parameters, responses, bodies), without cycles. */
  function deref(obj) {
    const seen = new Set();
    while (obj && typeof obj === 'object' && typeof obj.$ref === 'string' && !seen.has(obj.$ref)) {
      seen.add(obj.$ref);
      const target = resolvePointer(obj.$ref);
      if (target === undefined) break;
      obj = target;
    }
    return obj;
  }

  // ---------------------------------------------------------------- collapsible JSON

  function scalar(value) {
    if (typeof value === 'string') return el('span', { class: 'jt-str', text: JSON.stringify(value) });
    if (typeof value === 'number') return el('span', { class: 'jt-num', text: String(value) });
    return el('span', { class: 'jt-lit', text: String(value) });
  }

  /**
   * A JSON value as nested <details>; `$ref` objects are shown resolved (named after the schema),
   * a schema already open further up is shown as a reference only.
   */
  function jsonNode(key, value, depth, stack) {
    const label = key === null ? [] : [el('span', { class: 'jt-key', text: JSON.stringify(key) }), ': '];
    if (value && typeof value === 'object' && typeof value.$ref === 'string') {
      const target = resolvePointer(value.$ref);
      const name = refName(value.$ref);
      if (target === undefined || stack.includes(value.$ref)) {
        const why = target === undefined ? 'unresolved' : 'recursive';
        return el('div', {}, ...label, el('span', { class: 'jt-ref', text: `$ref ${value.$ref} (${why})` }));
      }
      const rest = { ...value };
      delete rest.$ref;
      const merged = Object.keys(rest).length ? { ...target, ...rest } : target;
      return container(label, merged, depth, [...stack, value.$ref], name);
    }
    if (value && typeof value === 'object') return container(label, value, depth, stack, null);
    return el('div', {}, ...label, scalar(value));
  }

  function container(label, value, depth, stack, refLabel) {
    const isArray = Array.isArray(value);
    const entries = isArray ? value.map((v, i) => [i, v]) : Object.entries(value);
    const open = isArray ? '[' : '{';
    const close = isArray ? ']' : '}';
    const note = refLabel ? el('span', { class: 'jt-ref', text: ` ${refLabel}` }) : null;
    if (!entries.length) return el('div', {}, ...label, open + close, note);
    // Short lists of plain values stay on one line.
    if (isArray && value.every((v) => v === null || typeof v !== 'object') && JSON.stringify(value).length <= 80) {
      const items = [];
      value.forEach((v, i) => items.push(i ? ', ' : '', scalar(v)));
      return el('div', {}, ...label, '[', ...items, ']', note);
    }
    const summaryText = isArray ? `${open} ${entries.length} item${entries.length === 1 ? '' : 's'} ${close}` : `${open} … ${close}`;
    const details = el('details', {}, el('summary', {}, ...label, summaryText, note));
    if (depth < 3) details.open = true;
    // Children are built when first opened: large, deeply nested schemas stay cheap.
    let built = false;
    const build = () => {
      if (built) return;
      built = true;
      const box = el('div', { class: 'jt-children' });
      for (const [k, v] of entries) box.append(jsonNode(isArray ? null : k, v, depth + 1, stack));
      details.append(box);
    };
    if (details.open) build();
    details.addEventListener('toggle', build);
    return details;
  }

  function jsonTree(value) {
    return el('div', { class: 'json-tree' }, jsonNode(null, value, 0, []));
  }

  // ---------------------------------------------------------------- examples

  /** The example of a media type or schema, when the spec gives one. */
  function exampleOf(media) {
    if (!media) return undefined;
    if (media.example !== undefined) return media.example;
    if (media.examples && typeof media.examples === 'object') {
      const first = Object.values(media.examples)[0];
      const ex = deref(first);
      if (ex && ex.value !== undefined) return ex.value;
    }
    const schema = deref(media.schema);
    if (schema) {
      if (schema.example !== undefined) return schema.example;
      if (Array.isArray(schema.examples) && schema.examples.length) return schema.examples[0];
    }
    return undefined;
  }

  /**
   * A starting body when the spec gives no example: the schema's required properties (and
   * those with a default), with placeholder values.
   */
  function sampleOf(schemaRaw, depth) {
    const schema = deref(schemaRaw);
    if (!schema || typeof schema !== 'object' || depth > 4) return undefined;
    if (schema.example !== undefined) return schema.example;
    if (Array.isArray(schema.examples) && schema.examples.length) return schema.examples[0];
    if (schema.default !== undefined) return schema.default;
    const options = schema.oneOf || schema.anyOf;
    if (Array.isArray(options)) {
      const first = options.map(deref).find((o) => o && o.type !== 'null');
      return sampleOf(first, depth + 1);
    }
    if (Array.isArray(schema.enum) && schema.enum.length) return schema.enum[0];
    const type = [].concat(schema.type).find((t) => t && t !== 'null');
    if (type === 'object' || (!type && schema.properties)) {
      const out = {};
      const required = new Set(Array.isArray(schema.required) ? schema.required : []);
      for (const [name, prop] of Object.entries(schema.properties || {})) {
        const d = deref(prop) || {};
        if (!required.has(name) && d.default === undefined && d.example === undefined) continue;
        const v = sampleOf(prop, depth + 1);
        if (v !== undefined && v !== null) out[name] = v;
      }
      return out;
    }
    if (type === 'array') {
      const item = sampleOf(schema.items, depth + 1);
      return item === undefined ? [] : [item];
    }
    if (type === 'string') return '';
    if (type === 'integer' || type === 'number') return Number.isFinite(schema.minimum) ? schema.minimum : 0;
    if (type === 'boolean') return false;
    return undefined;
  }

  function schemaType(schema) {
    const s = deref(schema) || {};
    let t = Array.isArray(s.type) ? s.type.join(' | ') : s.type || '';
    if (!t && schema && schema.$ref) t = refName(schema.$ref);
    if (t === 'array' && s.items) t = `array of ${schemaType(s.items) || 'any'}`;
    if (Array.isArray(s.enum)) t += ` (${s.enum.map((v) => JSON.stringify(v)).join(', ')})`;
    if (s.default !== undefined) t += `, default ${JSON.stringify(s.default)}`;
    return t;
  }

  // ---------------------------------------------------------------- rendering

  function paramsTable(params) {
    return el('table', { class: 'params' },
      el('thead', {}, el('tr', {}, el('th', { text: 'name' }), el('th', { text: 'in' }), el('th', { text: 'type' }), el('th', { text: 'description' }))),
      el('tbody', {}, ...params.map((p) => el('tr', {},
        el('td', {}, el('code', { text: p.name }), p.required ? el('span', { class: 'req', text: ' required' }) : null),
        el('td', { text: p.in }),
        el('td', { text: schemaType(p.schema) }),
        el('td', { text: p.description || '' })))));
  }

  function contentBlock(content) {
    const out = [];
    for (const [type, mediaRaw] of Object.entries(content || {})) {
      const media = deref(mediaRaw) || {};
      out.push(el('p', {}, el('code', { text: type })));
      if (media.schema) out.push(jsonTree(media.schema));
      const ex = exampleOf(media);
      if (ex !== undefined) {
        out.push(el('details', { class: 'json-tree' }, el('summary', { text: 'example' }),
          el('pre', { text: typeof ex === 'string' ? ex : JSON.stringify(ex, null, 2) })));
      }
    }
    return out;
  }

  function operationParams(pathItem, op) {
    const byKey = new Map();
    for (const p of [...(pathItem.parameters || []), ...(op.parameters || [])]) {
      const d = deref(p);
      if (d && d.name) byKey.set(`${d.in}:${d.name}`, d);
    }
    return Array.from(byKey.values());
  }

  function renderOperation(path, method, pathItem, opRaw) {
    const op = deref(opRaw) || {};
    const params = operationParams(pathItem, op);
    const body = el('div', { class: 'op-body' });
    const details = el('details', { class: 'op', id: `op-${method}-${path.replace(/[^A-Za-z0-9]+/g, '-')}` },
      el('summary', {},
        el('span', { class: `method method-${method}`, text: method }),
        el('span', { class: 'op-path', text: path }),
        op.summary ? el('span', { class: 'op-summary', text: op.summary }) : null,
        op.deprecated ? el('span', { class: 'state state-failed', text: 'deprecated' }) : null),
      body);

    // Built on first open: the page stays light with many operations.
    let built = false;
    details.addEventListener('toggle', () => {
      if (built || !details.open) return;
      built = true;
      if (op.description) body.append(el('p', { class: 'op-desc', text: op.description }));
      if (Array.isArray(op.security) && op.security.length) {
        body.append(el('p', { class: 'hint', text: `Needs a key: ${op.security.map((s) => Object.keys(s).join(' + ')).filter(Boolean).join(' or ') || 'none'}.` }));
      }
      if (params.length) body.append(el('h3', { text: 'Parameters' }), paramsTable(params));
      const reqBody = deref(op.requestBody);
      if (reqBody && reqBody.content) {
        body.append(el('h3', { text: `Request body${reqBody.required ? ' (required)' : ''}` }));
        if (reqBody.description) body.append(el('p', { class: 'op-desc', text: reqBody.description }));
        body.append(...contentBlock(reqBody.content));
      }
      const responses = Object.entries(op.responses || {});
      if (responses.length) {
        body.append(el('h3', { text: 'Responses' }));
        for (const [code, respRaw] of responses) {
          const resp = deref(respRaw) || {};
          body.append(el('p', {}, el('span', { class: 'response-code', text: code }), ' ', resp.description || ''));
          if (resp.content) body.append(...contentBlock(resp.content));
        }
      }
      body.append(tryForm(path, method, params, reqBody));
    });
    return details;
  }

  // ---------------------------------------------------------------- try it

  function tryForm(path, method, params, reqBody) {
    const form = el('form', { class: 'try', novalidate: true });
    form.append(el('h3', { text: 'Try it' }));
    const inputs = [];
    for (const p of params) {
      if (p.in === 'cookie') continue;
      const id = uid('p');
      const schema = deref(p.schema) || {};
      let input;
      if (Array.isArray(schema.enum)) {
        input = el('select', { id }, el('option', { value: '', text: '' }), ...schema.enum.map((v) => el('option', { value: String(v), text: String(v) })));
      } else {
        input = el('input', { id, type: 'text', autocomplete: 'off', placeholder: schema.default !== undefined ? String(schema.default) : '' });
      }
      const ex = p.example !== undefined ? p.example : schema.example;
      if (ex !== undefined && p.in === 'path') input.value = String(ex);
      inputs.push({ p, input });
      form.append(el('div', { class: 'field' },
        el('label', { for: id }, `${p.name} `, el('span', { class: 'optional', text: `(${p.in}${p.required ? ', required' : ''})` })),
        input));
    }

    // One editor per body type the form can send; a selector when there are several.
    const content = (reqBody && reqBody.content) || {};
    const types = Object.keys(content);
    const jsonType = types.find((t) => t.includes('json'));
    const multipartType = types.find((t) => t.startsWith('multipart/form-data'));
    const editors = [];
    let textarea = null;
    const partInputs = [];
    if (jsonType) {
      const id = uid('body');
      const media = deref(content[jsonType]);
      let ex = exampleOf(media);
      if (ex === undefined) ex = sampleOf(media && media.schema, 0);
      textarea = el('textarea', { id, rows: '8', spellcheck: 'false' });
      textarea.value = ex === undefined ? '' : typeof ex === 'string' ? ex : JSON.stringify(ex, null, 2);
      editors.push({ mode: 'json', type: jsonType, node: el('div', { class: 'field' }, el('label', { for: id, text: `Body (${jsonType})` }), textarea) });
    }
    if (multipartType) {
      const node = el('div', {});
      const schema = deref((deref(content[multipartType]) || {}).schema) || {};
      const required = new Set(Array.isArray(schema.required) ? schema.required : []);
      for (const [name, propRaw] of Object.entries(schema.properties || {})) {
        const prop = deref(propRaw) || {};
        const isArray = [].concat(prop.type).includes('array');
        const item = isArray ? deref(prop.items) || {} : prop;
        const isFile = item.format === 'binary' || item.contentMediaType !== undefined || item.contentEncoding === 'binary';
        const id = uid('part');
        const input = isFile
          ? el('input', { id, type: 'file', multiple: isArray ? true : null })
          : el('input', { id, type: 'text', autocomplete: 'off' });
        partInputs.push({ name, input, isFile });
        const what = `${isFile ? 'file' : 'text'} part${required.has(name) ? ', required' : ''}`;
        node.append(el('div', { class: 'field' },
          el('label', { for: id }, `${name} `, el('span', { class: 'optional', text: `(${what})` })),
          input,
          prop.description ? el('span', { class: 'hint', text: prop.description }) : null));
      }
      if (!partInputs.length) node.append(el('p', { class: 'hint', text: 'This multipart body has no described parts.' }));
      editors.push({ mode: 'multipart', type: multipartType, node });
    }
    const unsupported = types.filter((t) => t !== jsonType && t !== multipartType);
    if (unsupported.length && !editors.length) {
      form.append(el('p', { class: 'hint', text: `Body type ${unsupported.join(', ')} cannot be sent from this form.` }));
    }
    let current = editors[0] || null;
    if (editors.length > 1) {
      const id = uid('btype');
      const select = el('select', { id }, ...editors.map((ed, i) => el('option', { value: String(i), text: ed.type })));
      select.addEventListener('change', () => {
        current = editors[Number(select.value)] || editors[0];
        for (const ed of editors) ed.node.hidden = ed !== current;
      });
      form.append(el('div', { class: 'field' }, el('label', { for: id, text: 'Body type' }), select));
    }
    for (const ed of editors) {
      ed.node.hidden = ed !== current;
      form.append(ed.node);
    }

    const result = el('div', { class: 'try-result', 'aria-live': 'polite' });
    const send = el('button', { type: 'submit', class: 'btn btn-primary', text: 'Send' });
    form.append(send, result);

    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      result.replaceChildren();
      let url = path;
      const query = new URLSearchParams();
      const headers = {};
      for (const { p, input } of inputs) {
        const v = input.value.trim();
        if (!v) {
          if (p.required) {
            result.append(el('p', { class: 'try-status bad', text: `${p.name} is required.` }));
            input.focus();
            return;
          }
          continue;
        }
        if (p.in === 'path') url = url.split(`{${p.name}}`).join(encodeURIComponent(v));
        else if (p.in === 'query') query.append(p.name, v);
        else if (p.in === 'header') headers[p.name] = v;
      }
      if (query.toString()) url += `?${query}`;
      const key = storedKey();
      if (key && path.startsWith('/v1/')) headers.Authorization = `Bearer ${key}`;
      let body;
      const mode = current ? current.mode : null;
      if (mode === 'json' && textarea.value.trim()) {
        try {
          JSON.parse(textarea.value);
        } catch (err) {
          result.append(el('p', { class: 'try-status bad', text: `The body is not valid JSON: ${err.message}` }));
          textarea.focus();
          return;
        }
        headers['Content-Type'] = jsonType;
        body = textarea.value;
      } else if (mode === 'multipart') {
        body = new FormData();
        for (const { name, input, isFile } of partInputs) {
          if (isFile) for (const f of Array.from(input.files || [])) body.append(name, f, f.name);
          else if (input.value.trim()) body.append(name, input.value.trim());
        }
      }
      if (method === 'delete' && !window.confirm(`Send DELETE ${url}? This cannot be undone.`)) return;
      send.disabled = true;
      const started = performance.now();
      try {
        const res = await fetch(url, { method: method.toUpperCase(), headers, body, cache: 'no-store' });
        const ms = Math.round(performance.now() - started);
        await showResponse(result, method, url, res, ms);
      } catch (err) {
        result.append(el('p', { class: 'try-status bad', text: `Request failed: ${err && err.message ? err.message : err}` }));
      } finally {
        send.disabled = false;
      }
    });
    return form;
  }

  async function showResponse(box, method, url, res, ms) {
    const ok = res.status < 400;
    box.append(el('p', {},
      el('span', { class: `try-status ${ok ? 'ok' : 'bad'}`, text: `${res.status} ${res.statusText}` }),
      ` · ${method.toUpperCase()} `, el('code', { text: url }), ` · ${ms} ms`));
    const shown = ['content-type', 'location', 'retry-after', 'etag', 'server-timing', 'cache-control'];
    const lines = shown.map((h) => [h, res.headers.get(h)]).filter(([, v]) => v).map(([h, v]) => `${h}: ${v}`);
    if (lines.length) box.append(el('pre', { text: lines.join('\n') }));
    const type = res.headers.get('content-type') || '';
    if (type.startsWith('image/')) {
      const src = URL.createObjectURL(await res.blob());
      const img = el('img', { alt: 'Response image' });
      img.onload = () => URL.revokeObjectURL(src);
      img.src = src;
      box.append(img);
      return;
    }
    let text = await res.text();
    if (type.includes('json')) {
      try {
        text = JSON.stringify(JSON.parse(text), null, 2);
      } catch (_) {
        /* shown as sent */
      }
    }
    if (text.length > MAX_SHOWN_CHARS) text = `${text.slice(0, MAX_SHOWN_CHARS)}\n… (${text.length - MAX_SHOWN_CHARS} more characters)`;
    if (text) box.append(el('pre', { text }));
  }

  // ---------------------------------------------------------------- page

  function render() {
    const root = $('#operations');
    root.replaceChildren();
    const info = spec.info || {};
    if (info.title) $('#api-title').textContent = `${info.title}${info.version ? ` ${info.version}` : ''}`;
    if (info.description) $('#api-intro').textContent = info.description;

    // Operations grouped by their first tag, in the spec's order.
    const groups = new Map();
    for (const [path, itemRaw] of Object.entries(spec.paths || {})) {
      const item = deref(itemRaw) || {};
      for (const method of METHODS) {
        if (!item[method]) continue;
        const op = deref(item[method]) || {};
        const tag = Array.isArray(op.tags) && op.tags.length ? String(op.tags[0]) : 'operations';
        if (!groups.has(tag)) groups.set(tag, []);
        groups.get(tag).push(renderOperation(path, method, item, item[method]));
      }
    }
    if (!groups.size) {
      root.append(el('p', { class: 'hint', text: 'The description lists no operations.' }));
      return;
    }
    for (const [tag, ops] of groups) {
      const id = uid('tag');
      root.append(el('section', { class: 'tag-group', 'aria-labelledby': id }, el('h2', { id, text: tag }), ...ops));
    }
    const schemas = spec.components && spec.components.schemas;
    if (schemas && Object.keys(schemas).length) {
      const id = uid('tag');
      const list = Object.entries(schemas).map(([name, schema]) => el('details', { class: 'op', id: `schema-${name}` },
        el('summary', {}, el('span', { class: 'op-path', text: name }), schema.description ? el('span', { class: 'op-summary', text: schema.description }) : null),
        el('div', { class: 'op-body' }, jsonTree(schema))));
      root.append(el('section', { class: 'tag-group', 'aria-labelledby': id }, el('h2', { id, text: 'schemas' }), ...list));
    }
    // A link to #op-… opens that operation.
    const target = location.hash && document.getElementById(location.hash.slice(1));
    if (target && target.tagName === 'DETAILS') {
      target.open = true;
      target.scrollIntoView();
    }
  }

  async function load() {
    try {
      const res = await fetch('/openapi.json', { cache: 'no-store' });
      if (!res.ok) throw new Error(`/openapi.json answered ${res.status}`);
      spec = await res.json();
      if (!spec || typeof spec !== 'object') throw new Error('/openapi.json is not an object');
      render();
    } catch (e) {
      $('#operations').replaceChildren();
      showStatus(`Could not load the API description: ${e && e.message ? e.message : e}`, 'error');
    }
  }

  function wireKey() {
    const input = $('#api-key');
    const refresh = () => {
      input.value = storedKey();
    };
    refresh();
    $('#api-key-form').addEventListener('submit', (e) => {
      e.preventDefault();
      try {
        const key = input.value.trim();
        if (key) localStorage.setItem(KEY_STORAGE, key);
        else localStorage.removeItem(KEY_STORAGE);
        showStatus(key ? 'Key saved in this browser.' : 'Key removed.', 'info');
      } catch (_) {
        showStatus('This browser does not allow saving the key.', 'error');
      }
    });
    $('#api-key-clear').addEventListener('click', () => {
      try {
        localStorage.removeItem(KEY_STORAGE);
      } catch (_) {
        /* nothing saved */
      }
      refresh();
      showStatus('Key removed.', 'info');
      input.focus();
    });
    window.addEventListener('storage', (e) => {
      if (e.key === KEY_STORAGE) refresh();
    });
  }

  wireKey();
  load();
})();
