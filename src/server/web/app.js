// hetmm inspection page: plain browser JavaScript, no framework, no network beyond this server.
// Every text that comes from the server or an upload goes in with textContent (never innerHTML).

const $ = (id) => document.getElementById(id);
const MAX_RECENT = 60;
/** how long "Undo" stays offered after marking an image normal */
const UNDO_SECONDS = 8;

const state = {
  line: undefined,
  info: undefined,
  changes: 'disabled',
  recent: [], // newest first: {id, name, score, label, threshold, templates, version, imageUrl, heatmapUrl, own}
  shown: undefined,
  filter: 'all',
  events: undefined,
  record: false, // the server keeps an inspection record (GET /v1/lines/{line}/inspections answers)
  highestScore: undefined, // the highest score in the record's histogram of the line (threshold sanity warning)
  undo: undefined, // {line, ids, item, deadline, timer} while Undo is offered
};

const CODE_WORDS = {
  E_IMAGE_DECODE: 'This file is not an image the server can read (corrupt, truncated or an unsupported format).',
  E_IMAGE_TOO_LARGE: 'This image has too many pixels for the server.',
  E_IMAGE_TOO_SMALL: 'This image is too small.',
  E_TOO_LARGE: 'The upload is larger than the server accepts.',
  E_UNSUPPORTED_MEDIA: 'The server does not take this kind of file.',
  E_NO_IMAGES: 'There was no image in the upload.',
  E_BUSY: 'The line is busy right now. Try again in a few seconds.',
  E_TIMEOUT: 'The server took too long to answer.',
  E_UNAVAILABLE: 'The server is not available right now (busy or restarting).',
  E_UNAUTHORIZED: 'The token is missing or wrong. Enter the token under Access.',
  E_FORBIDDEN: 'Changes are disabled on this server (it was started without a token).',
  E_NOT_FOUND: 'Not found: the line or the inspection is no longer there.',
};

function showError(what, error) {
  const words = CODE_WORDS[error.code] ?? 'Something went wrong.';
  $('error-text').textContent = `${what}: ${words} (${error.message})`;
  $('error').hidden = false;
  $('error').focus();
}

function clearError() {
  $('error').hidden = true;
  $('error-text').textContent = '';
}

/** An error next to the control that needed it (where the eye is), not at the top of the page. */
function showFieldError(id, text) {
  const box = $(id);
  box.textContent = text;
  box.hidden = false;
  box.scrollIntoView({ block: 'nearest' });
}

function clearFieldError(id) {
  $(id).hidden = true;
  $(id).textContent = '';
}

const errorWords = (error) => `${CODE_WORDS[error.code] ?? 'Something went wrong.'} (${error.message})`;

/**
 * An in-page confirmation (a modal <dialog>): answers true only for the confirm button.
 * Cancel has the focus first, Escape cancels, and the focus goes back where it was.
 */
function confirmAction({ title, text, confirm }) {
  const dialog = $('confirm');
  $('confirm-title').textContent = title;
  $('confirm-text').textContent = text;
  $('confirm-ok').textContent = confirm;
  dialog.returnValue = '';
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
    dialog.showModal();
  });
}

const hasToken = () => $('token').value.trim() !== '';
const NO_TOKEN = 'Enter the token under Access first: this changes the line.';

/** fetch that answers {ok, status, body} and turns network failures and the server's error shape into {error}. */
async function api(path, init = {}) {
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    return { ok: false, error: { code: 'E_UNAVAILABLE', message: `no connection to the server (${e.message})` } };
  }
  let body;
  try {
    body = response.status === 204 ? {} : await response.json();
  } catch {
    body = {};
  }
  if (!response.ok) {
    const error = body.error ?? { code: 'E_INTERNAL', message: `HTTP ${response.status}` };
    return { ok: false, status: response.status, error };
  }
  return { ok: true, status: response.status, body };
}

function authHeaders() {
  const token = $('token').value.trim();
  return token === '' ? {} : { authorization: `Bearer ${token}` };
}

const fmt = (x) => (typeof x === 'number' ? x.toFixed(4) : '–');

// ---- lines and store info -------------------------------------------------------------------------

async function loadLines() {
  const r = await api('/v1/lines');
  if (!r.ok) {
    showError('Could not list the lines', r.error);
    return;
  }
  state.changes = r.body.changes;
  $('changes-note').textContent =
    r.body.changes === 'disabled'
      ? 'Changes are disabled on this server (started without a token): images can be inspected, not marked normal.'
      : 'Marking images normal and changing the threshold need the server token.';
  $('threshold-apply').disabled = r.body.changes === 'disabled';
  $('threshold-apply').title = r.body.changes === 'disabled' ? 'Changes are disabled on this server (started without a token)' : '';
  const select = $('line');
  select.replaceChildren(
    ...r.body.lines.map((l) => {
      const o = document.createElement('option');
      o.value = l.name;
      o.textContent = `${l.name} (${l.templates} templates)`;
      return o;
    }),
  );
  if (r.body.lines.length === 0) {
    showError('No lines', { code: 'E_NOT_FOUND', message: 'this server serves no template store yet' });
    return;
  }
  state.record = r.body.record === true;
  const wanted = decodeURIComponent(location.hash.slice(1));
  select.value = r.body.lines.some((l) => l.name === wanted) ? wanted : r.body.lines[0].name;
  await selectLine(select.value);
}

async function selectLine(name) {
  state.line = name;
  history.replaceState(null, '', `#${encodeURIComponent(name)}`);
  state.recent = [];
  state.shown = undefined;
  state.highestScore = undefined;
  endUndo();
  renderGallery();
  renderResult();
  await refreshInfo();
  await loadRecord(name);
  await loadNormals();
  connectEvents();
}

/** The gallery from the server's inspection record: it survives reloads and line switches. */
async function loadRecord(name) {
  if (!state.record) return;
  const r = await api(`/v1/lines/${encodeURIComponent(name)}/inspections?limit=${MAX_RECENT}`);
  if (!r.ok || state.line !== name) return;
  const known = new Set(state.recent.map((item) => item.id));
  const older = r.body.items.filter((i) => !known.has(i.id)).map((i) => ({
    id: i.id,
    name: i.imageName ?? i.id,
    score: i.score,
    label: i.verdict,
    threshold: i.threshold,
    templates: undefined,
    version: i.storeVersion,
    imageUrl: i.image,
    heatmapUrl: i.heatmap,
    own: false,
  }));
  older.forEach(labelNow);
  state.recent = [...state.recent, ...older].slice(0, MAX_RECENT);
  const h = await api(`/v1/lines/${encodeURIComponent(name)}/inspections/histogram`);
  if (h.ok && state.line === name && typeof h.body.max === 'number') state.highestScore = h.body.max;
  renderGallery();
  updateThresholdBounds();
  updateFlipPreview();
}

async function refreshInfo() {
  const r = await api(`/v1/lines/${encodeURIComponent(state.line)}`);
  if (!r.ok) {
    showError(`Could not read line ${state.line}`, r.error);
    return;
  }
  setInfo(r.body);
}

function setInfo(info) {
  state.info = info;
  // observation 5: what is on screen follows the line's threshold at once
  const before = state.recent.map((item) => item.label);
  state.recent.forEach(labelNow);
  if (state.recent.some((item, i) => item.label !== before[i])) renderGallery();
  renderResult();
  $('info-templates').textContent = String(info.templates);
  $('info-threshold').textContent = info.threshold ? fmt(info.threshold.value) : 'none (scores only)';
  $('info-version').textContent = String(info.version);
  $('info-preset').textContent = info.preset;
  const option = [...$('line').options].find((o) => o.value === info.name);
  if (option) option.textContent = `${info.name} (${info.templates} templates)`;
  if (info.threshold && document.activeElement !== $('threshold-number') && document.activeElement !== $('threshold-range')) {
    setThresholdControls(info.threshold.value);
  }
  updateFlipPreview();
}

// ---- live events ---------------------------------------------------------------------------------------

function connectEvents() {
  state.events?.close();
  const source = new EventSource(`/v1/lines/${encodeURIComponent(state.line)}/events`);
  state.events = source;
  source.addEventListener('open', () => {
    $('feed-status').textContent = 'live: connected';
    $('feed-status').dataset.state = 'ok';
  });
  source.addEventListener('error', () => {
    $('feed-status').textContent = 'live: reconnecting…';
    $('feed-status').dataset.state = 'warn';
  });
  source.addEventListener('line', (e) => setInfo(JSON.parse(e.data)));
  source.addEventListener('store', (e) => {
    const ev = JSON.parse(e.data);
    if (ev.change === 'deleted') {
      showError(`Line ${ev.line}`, { code: 'E_NOT_FOUND', message: 'the line was deleted' });
      return;
    }
    void refreshInfo();
    void loadNormals();
  });
  source.addEventListener('verdict', (e) => {
    const ev = JSON.parse(e.data);
    if (!$('live').checked || state.recent.some((r) => r.id === ev.id)) return;
    addRecent({
      id: ev.id,
      name: ev.name,
      score: ev.score,
      label: ev.label,
      threshold: ev.threshold,
      templates: ev.templates,
      version: ev.version,
      imageUrl: ev.id ? `/v1/predictions/${encodeURIComponent(ev.id)}/image` : undefined,
      // with a record, a camera's prediction keeps its map there (the server renders one by default)
      heatmapUrl: ev.id && state.record ? `/v1/inspections/${encodeURIComponent(ev.id)}/heatmap.png` : undefined,
      own: false,
    });
  });
}

// ---- inspecting -------------------------------------------------------------------------------------------

async function inspectFiles(files) {
  clearError();
  const list = [...files];
  for (let i = 0; i < list.length; i++) {
    const file = list[i];
    $('busy').textContent = `Inspecting ${file.name} (${i + 1} of ${list.length})…`;
    const r = await api(`/v1/lines/${encodeURIComponent(state.line)}/predict?maps=png&inline=true&name=${encodeURIComponent(file.name)}`, {
      method: 'POST',
      headers: { 'content-type': file.type && file.type.startsWith('image/') ? file.type : 'application/octet-stream' },
      body: file,
    });
    if (!r.ok) {
      showError(`Could not inspect “${file.name}”`, r.error);
      continue;
    }
    const p = r.body;
    const item = {
      id: p.id,
      name: p.name,
      score: p.score,
      label: p.label,
      threshold: p.threshold,
      templates: p.templates,
      version: p.version,
      imageUrl: URL.createObjectURL(file),
      heatmapUrl: p.maps.heatmap,
      own: true,
    };
    addRecent(item);
    show(item);
  }
  $('busy').textContent = list.length > 1 ? `Inspected ${list.length} images.` : '';
}

/**
 * Labels `item` with the line's current threshold (the record keeps the verdict at inspection time;
 * the screen shows today's): the first time it differs, the verdict at inspection is kept beside it.
 */
function labelNow(item) {
  const threshold = state.info?.threshold?.value;
  if (threshold === undefined || item.threshold === threshold) return;
  if (item.inspectedThreshold === undefined && item.threshold !== undefined) {
    item.inspectedThreshold = item.threshold;
    item.inspectedLabel = item.label;
  }
  item.threshold = threshold;
  item.label = item.score > threshold ? 'defect' : 'ok';
}

function addRecent(item) {
  labelNow(item);
  state.recent = [item, ...state.recent.filter((r) => r.id !== item.id)].slice(0, MAX_RECENT);
  renderGallery();
  updateThresholdBounds();
  updateFlipPreview();
}

function verdictText(item) {
  return item.label === 'defect' ? 'DEFECT' : item.label === 'ok' ? 'OK' : 'NO THRESHOLD';
}

function show(item) {
  state.shown = item;
  $('mark-status').textContent = '';
  renderResult();
}

function renderResult() {
  const item = state.shown;
  $('result-empty').hidden = item !== undefined;
  $('result-body').hidden = item === undefined;
  if (item === undefined) return;
  const verdict = $('verdict');
  verdict.textContent = verdictText(item);
  verdict.dataset.label = item.label ?? 'none';
  $('score-text').textContent =
    item.threshold === undefined ? `score ${fmt(item.score)}` : `score ${fmt(item.score)} against threshold ${fmt(item.threshold)}`;
  const top = Math.max(item.score, item.threshold ?? 0) * 1.25 || 1;
  $('score-bar').style.width = `${Math.min(100, (item.score / top) * 100)}%`;
  $('score-bar').dataset.label = item.label ?? 'none';
  $('threshold-mark').hidden = item.threshold === undefined;
  if (item.threshold !== undefined) $('threshold-mark').style.left = `${(item.threshold / top) * 100}%`;
  const inspected =
    item.inspectedThreshold === undefined || fmt(item.inspectedThreshold) === fmt(item.threshold)
      ? ''
      : ` · inspected at threshold ${fmt(item.inspectedThreshold)} as ${verdictText({ label: item.inspectedLabel })}`;
  const templates = item.templates === undefined ? '' : ` · ${item.templates} templates`;
  $('result-name').textContent = `${item.name}${templates} · store version ${item.version}${inspected}`;
  const img = $('result-image');
  if (item.imageUrl) img.src = item.imageUrl;
  else img.removeAttribute('src');
  const heat = $('result-heatmap');
  heat.parentElement.hidden = item.heatmapUrl === undefined;
  if (item.heatmapUrl) heat.src = item.heatmapUrl;
  const mark = $('mark');
  mark.disabled = item.id === undefined || state.changes === 'disabled' || item.marked === true;
  mark.textContent = item.marked ? 'Marked as normal' : 'Mark as normal';
  // never the primary button: teaching a DEFECT as normal must not be the obvious next click
  mark.title = state.changes === 'disabled' ? 'Changes are disabled on this server' : 'Add this image to the line’s normal templates (hot update)';
}

async function markNormal() {
  const item = state.shown;
  if (item === undefined) return;
  clearError();
  clearFieldError('mark-error');
  if (!hasToken()) {
    showFieldError('mark-error', NO_TOKEN);
    return;
  }
  const line = state.line;
  const verdict =
    item.threshold === undefined
      ? `It scored ${fmt(item.score)} (the line has no threshold).`
      : `It scored ${fmt(item.score)} against the threshold ${fmt(item.threshold)}: ${verdictText(item)}.`;
  const confirmed = await confirmAction({
    title: `Mark as normal on line “${line}”?`,
    text:
      `“${item.name}” becomes one of the normal templates of line “${line}”. ${verdict} ` +
      `From the next inspection on, parts like it count as normal. You can undo it for ${UNDO_SECONDS} seconds, later under Added normals.`,
    confirm: 'Mark as normal',
  });
  if (!confirmed || state.line !== line) return;
  const before = state.info?.templates;
  $('mark').disabled = true;
  $('mark-status').textContent = 'Adding to the normal templates…';
  const r = await api(`/v1/lines/${encodeURIComponent(line)}/normals`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...authHeaders() },
    body: JSON.stringify({ prediction: item.id }),
  });
  if (!r.ok) {
    $('mark').disabled = false;
    $('mark-status').textContent = '';
    showFieldError('mark-error', `Could not mark “${item.name}” as normal: ${errorWords(r.error)}`);
    return;
  }
  item.marked = true;
  item.normalIds = r.body.ids;
  renderResult();
  renderGallery();
  $('mark-status').textContent = `Added: the line now has ${r.body.templates} templates${before === undefined ? '' : ` (was ${before})`}, store version ${r.body.version}. It counts from the next inspection on.`;
  if (Array.isArray(r.body.ids) && r.body.ids.length > 0) offerUndo(line, r.body.ids, item);
  await refreshInfo();
  await loadNormals();
}

// ---- undo of "Mark as normal" -------------------------------------------------------------------------------

function offerUndo(line, ids, item) {
  endUndo();
  state.undo = { line, ids, item, deadline: Date.now() + UNDO_SECONDS * 1000, timer: setInterval(tickUndo, 250) };
  $('undo-button').disabled = false;
  $('undo').hidden = false;
  tickUndo();
}

function tickUndo() {
  const undo = state.undo;
  if (undo === undefined) return;
  const left = Math.ceil((undo.deadline - Date.now()) / 1000);
  if (left <= 0) {
    endUndo();
    return;
  }
  $('undo-countdown').textContent = `Undo marking “${undo.item.name}” normal: ${left} ${left === 1 ? 'second' : 'seconds'} left.`;
}

function endUndo() {
  if (state.undo !== undefined) clearInterval(state.undo.timer);
  state.undo = undefined;
  $('undo').hidden = true;
  $('undo-countdown').textContent = '';
}

async function undoMark() {
  const undo = state.undo;
  if (undo === undefined) return;
  clearInterval(undo.timer);
  $('undo-button').disabled = true;
  $('undo-countdown').textContent = 'Undoing…';
  clearFieldError('mark-error');
  let last;
  for (const id of undo.ids) {
    const r = await api(`/v1/lines/${encodeURIComponent(undo.line)}/normals/${encodeURIComponent(id)}`, { method: 'DELETE', headers: authHeaders() });
    if (!r.ok) {
      state.undo = undefined;
      $('undo').hidden = true;
      showFieldError('mark-error', `Could not undo: ${errorWords(r.error)} The normal is listed under Added normals.`);
      await loadNormals();
      return;
    }
    last = r.body;
  }
  state.undo = undefined;
  $('undo').hidden = true;
  undo.item.marked = false;
  renderResult();
  renderGallery();
  $('mark-status').textContent = `Undone: “${undo.item.name}” is no longer a normal; line ${undo.line} has ${last.templates} templates again (store version ${last.version}).`;
  await refreshInfo();
  await loadNormals();
}

// ---- the line's normals ------------------------------------------------------------------------------------

async function loadNormals() {
  const line = state.line;
  if (line === undefined) return;
  const r = await api(`/v1/lines/${encodeURIComponent(line)}/normals`);
  if (state.line !== line) return;
  if (!r.ok) {
    showFieldError('normals-error', `Could not list the normals: ${errorWords(r.error)}`);
    return;
  }
  clearFieldError('normals-error');
  // an image marked here and removed since (here, by Undo or elsewhere) is no longer "marked normal"
  const present = new Set(r.body.normals.map((n) => n.id));
  let unmarked = false;
  for (const item of state.recent) {
    if (item.marked && item.normalIds?.length > 0 && !item.normalIds.some((id) => present.has(id))) {
      item.marked = false;
      unmarked = true;
    }
  }
  if (unmarked) {
    renderGallery();
    renderResult();
  }
  const appended = r.body.normals
    .filter((n) => n.kind === 'appended')
    .sort((a, b) => (b.addedAt ?? '').localeCompare(a.addedAt ?? '') || b.index - a.index);
  const base = r.body.normals.length - appended.length;
  $('normals-count').textContent = String(appended.length);
  // Base normals are what the threshold was calibrated on: removing one is a deliberate act (hetmm normals remove), not a page click.
  $('normals-base').textContent =
    `${base} fitted normal${base === 1 ? '' : 's'} from hetmm fit (not removable here: the threshold was calibrated on them; use hetmm normals remove).` +
    (appended.length === 0 ? ' No normals added since.' : '');
  $('normals-list').replaceChildren(
    ...appended.map((normal) => {
      const li = document.createElement('li');
      const file = document.createElement('span');
      file.className = 'file';
      file.textContent = normal.file;
      const when = document.createElement('time');
      if (normal.addedAt) {
        when.dateTime = normal.addedAt;
        when.textContent = new Date(normal.addedAt).toLocaleString();
      } else when.textContent = 'time not recorded';
      const remove = document.createElement('button');
      remove.type = 'button';
      remove.textContent = 'Remove';
      remove.setAttribute('aria-label', `Remove ${normal.file} from the normals`);
      remove.disabled = state.changes === 'disabled';
      remove.addEventListener('click', () => void removeNormal(line, normal));
      li.append(file, when, remove);
      return li;
    }),
  );
}

async function removeNormal(line, normal) {
  clearFieldError('normals-error');
  if (!hasToken()) {
    showFieldError('normals-error', NO_TOKEN);
    return;
  }
  const when = normal.addedAt ? ` (added ${new Date(normal.addedAt).toLocaleString()})` : '';
  const confirmed = await confirmAction({
    title: `Remove “${normal.file}”?`,
    text: `Remove “${normal.file}”${when} from the normal templates of line “${line}”? From the next inspection on, parts like it are judged without it.`,
    confirm: 'Remove',
  });
  if (!confirmed) return;
  const r = await api(`/v1/lines/${encodeURIComponent(line)}/normals/${encodeURIComponent(normal.id)}`, { method: 'DELETE', headers: authHeaders() });
  if (!r.ok) {
    showFieldError('normals-error', `Could not remove “${normal.file}”: ${errorWords(r.error)}`);
    return;
  }
  $('normals-status').textContent = `Removed “${normal.file}”: line ${line} has ${r.body.templates} templates (store version ${r.body.version}).`;
  await refreshInfo();
  await loadNormals();
}

// ---- gallery ----------------------------------------------------------------------------------------------------

function renderGallery() {
  const visible = state.recent.filter((r) => state.filter === 'all' || r.label === state.filter);
  $('gallery-count').textContent =
    state.recent.length === 0 ? 'Nothing inspected yet on this page.' : `${visible.length} of ${state.recent.length} recent inspections shown.`;
  $('cards').replaceChildren(
    ...visible.map((item) => {
      const li = document.createElement('li');
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'card';
      button.dataset.label = item.label ?? 'none';
      button.setAttribute('aria-label', `${item.name}: ${verdictText(item)}, score ${fmt(item.score)}. Show it.`);
      if (item.imageUrl) {
        const img = document.createElement('img');
        img.src = item.imageUrl;
        img.alt = '';
        img.loading = 'lazy';
        button.append(img);
      }
      const caption = document.createElement('span');
      caption.className = 'caption';
      const badge = document.createElement('strong');
      badge.textContent = verdictText(item);
      const detail = document.createElement('span');
      detail.textContent = ` ${fmt(item.score)} · ${item.name}${item.own ? '' : ' (line)'}`;
      caption.append(badge, detail);
      if (item.marked) {
        const marked = document.createElement('span');
        marked.className = 'marked';
        marked.textContent = 'marked normal';
        caption.append(marked);
      }
      button.append(caption);
      button.addEventListener('click', () => show(item));
      li.append(button);
      return li;
    }),
  );
}

// ---- threshold -------------------------------------------------------------------------------------------------

function setThresholdControls(value) {
  $('threshold-range').value = String(value);
  $('threshold-number').value = value.toFixed(4);
}

function updateThresholdBounds() {
  const scores = state.recent.map((r) => r.score);
  const current = state.info?.threshold?.value ?? 0;
  const max = Math.max(current * 2, ...scores, 0.001);
  $('threshold-range').max = String(Number(max.toPrecision(3)));
}

/** The threshold box's value, or why it cannot be a threshold (checked before anything is sent). */
function readThreshold() {
  const box = $('threshold-number');
  const raw = box.value.trim();
  if (box.validity.badInput) return { error: 'This is not a number.' };
  if (raw === '') return { error: 'Enter a threshold.' };
  const value = Number(raw);
  if (!Number.isFinite(value)) return { error: 'This is not a number.' };
  if (value <= 0) return { error: 'The threshold must be above 0 (at 0 or below every part would be DEFECT).' };
  return { value };
}

/** The highest score seen: the record's histogram, else this page's recent inspections. */
function highestScore() {
  const scores = state.recent.map((r) => r.score);
  if (state.highestScore !== undefined) scores.push(state.highestScore);
  return scores.length === 0 ? undefined : Math.max(...scores);
}

function updateThresholdWarning(value) {
  const highest = highestScore();
  const warn = value !== undefined && highest !== undefined && value > highest * 2;
  $('threshold-warning').hidden = !warn;
  $('threshold-warning').textContent = warn
    ? `Warning: more than twice the highest score seen (${fmt(highest)}): every part would be OK.`
    : '';
}

function updateFlipPreview() {
  const { value } = readThreshold();
  const current = state.info?.threshold?.value;
  updateThresholdWarning(value);
  if (value !== undefined) clearFieldError('threshold-error');
  if (value === undefined) {
    $('flip-preview').textContent = 'Enter a number above 0.';
    return;
  }
  if (state.recent.length === 0) {
    $('flip-preview').textContent = 'Inspect some images to preview the effect of a new threshold.';
    return;
  }
  const flips = state.recent.filter((r) => r.score > value !== (r.label === 'defect')).length;
  const defects = state.recent.filter((r) => r.score > value).length;
  $('flip-preview').textContent =
    `At ${value.toFixed(4)}${current === undefined ? '' : ` (now ${current.toFixed(4)})`}: ` +
    `${flips} of ${state.recent.length} recent images would change verdict; ${defects} would be DEFECT.`;
}

async function applyThreshold() {
  clearError();
  clearFieldError('threshold-error');
  $('threshold-status').textContent = '';
  const { value, error } = readThreshold();
  if (error !== undefined) {
    showFieldError('threshold-error', `Not applied: ${error}`);
    return;
  }
  if (!hasToken()) {
    showFieldError('threshold-error', NO_TOKEN);
    return;
  }
  const r = await api(`/v1/lines/${encodeURIComponent(state.line)}/threshold`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json', ...authHeaders() },
    body: JSON.stringify({ value }),
  });
  if (!r.ok) {
    showFieldError('threshold-error', `Could not change the threshold: ${errorWords(r.error)}`);
    return;
  }
  $('threshold-status').textContent = `Threshold is now ${fmt(r.body.threshold?.value)} (store version ${r.body.version}).`;
  setInfo(r.body);
}

// ---- wiring ------------------------------------------------------------------------------------------------------

function wire() {
  const drop = $('drop');
  const file = $('file');
  drop.addEventListener('click', () => file.click());
  drop.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault();
      file.click();
    }
  });
  drop.addEventListener('dragover', (e) => {
    e.preventDefault();
    drop.classList.add('over');
  });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    if (e.dataTransfer?.files.length) void inspectFiles(e.dataTransfer.files);
  });
  file.addEventListener('change', () => {
    if (file.files?.length) void inspectFiles(file.files);
    file.value = '';
  });
  $('line').addEventListener('change', () => void selectLine($('line').value));
  $('mark').addEventListener('click', () => void markNormal());
  $('undo-button').addEventListener('click', () => void undoMark());
  $('error-close').addEventListener('click', clearError);
  for (const radio of document.querySelectorAll('input[name="filter"]')) {
    radio.addEventListener('change', () => {
      state.filter = radio.value;
      renderGallery();
    });
  }
  $('threshold-range').addEventListener('input', () => {
    $('threshold-number').value = Number($('threshold-range').value).toFixed(4);
    updateFlipPreview();
  });
  $('threshold-number').addEventListener('input', () => {
    $('threshold-range').value = $('threshold-number').value;
    updateFlipPreview();
  });
  $('threshold-apply').addEventListener('click', () => void applyThreshold());
  const token = $('token');
  token.value = sessionStorage.getItem('hetmm-token') ?? '';
  token.addEventListener('change', () => sessionStorage.setItem('hetmm-token', token.value.trim()));
}

wire();
void loadLines();
