// ggprov dashboard: one page, hash routes, the public HTTP API only (no private endpoints).
'use strict';

const BASE = location.pathname.replace(/\/ui(\/.*)?$/, '');
const CDF = 'application/vnd.aws-cdf-v1.0+json';
const TERMINAL = ['Success', 'Failure', 'Failed', 'Cancelled', 'Canceled', 'Completed', 'Aborted', 'RolledBack'];
let canWrite = false;
let lastRefresh = null;
let pollTimer = null;

// ---- helpers ---------------------------------------------------------------------------
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    // Through the CSSOM: the content security policy refuses style attributes.
    else if (k === 'style') node.style.cssText = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}
const svgNs = 'http://www.w3.org/2000/svg';
function svg(tag, attrs, ...children) {
  const node = document.createElementNS(svgNs, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}
function credentials() {
  const kind = sessionStorage.getItem('ggprov.kind') || 'key';
  const value = sessionStorage.getItem('ggprov.credential') || '';
  if (!value) return {};
  return kind === 'bearer' ? { Authorization: 'Bearer ' + value } : { 'x-api-key': value };
}
class ApiError extends Error {
  constructor(status, body) {
    const field = body && body.details && body.details[0] ? ` (${body.details[0].field}: ${body.details[0].problem})` : '';
    super(`${status} ${(body && (body.message || body.error)) || ''}${field}`);
    this.status = status;
  }
}
async function api(path, options = {}) {
  const headers = Object.assign({ Accept: CDF }, credentials(), options.body ? { 'Content-Type': CDF } : {});
  const response = await fetch(BASE + path, { method: options.method || 'GET', headers, body: options.body });
  if (response.status === 204) return null;
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = { message: text }; }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}
function toast(message, ok) {
  const box = el('div', { class: ok ? 'ok' : '' }, message);
  document.getElementById('toast').append(box);
  setTimeout(() => box.remove(), 6000);
}
function fmtTime(t) { return t ? new Date(t).toLocaleString() : ''; }
function statusCell(s) {
  // Task states have classes of their own; Greengrass's deployment statuses are SUCCESSFUL,
  // IN_PROGRESS, None, or a failure of any other name.
  const cls = /^(SUCCESSFUL|COMPLETED|HEALTHY)$/.test(s || '') ? 's-ok' : /^(FAILED|REJECTED|TIMED_OUT|CANCELED|ABORTED|UNHEALTHY)/.test(s || '') ? 's-bad' : 'status-' + (s || 'None');
  return el('td', { class: cls }, s || '—');
}
function countBy(items, key) {
  const counts = {};
  for (const item of items || []) counts[item[key] || 'None'] = (counts[item[key] || 'None'] || 0) + 1;
  return counts;
}
function progressBar(counts, total) {
  total = total || Object.values(counts).reduce((a, b) => a + b, 0);
  const parts = [['Success', 'b-ok'], ['Failure', 'b-bad'], ['InProgress', 'b-run'], ['Waiting', 'b-wait']];
  const label = parts.map(([k]) => `${k} ${counts[k] || 0}`).join(', ');
  return el('div', { class: 'bar', role: 'img', 'aria-label': `${label} of ${total}`, title: label },
    parts.map(([k, cls]) => (counts[k] ? el('span', { class: cls, style: `width:${(100 * counts[k]) / Math.max(total, 1)}%` }) : null)));
}
function table(headers, rows, label) {
  return el('table', { 'aria-label': label },
    el('thead', {}, el('tr', {}, headers.map((h) => el('th', { scope: 'col', class: h.num ? 'num' : '' }, h.label || h)))),
    el('tbody', {}, rows.length ? rows : el('tr', {}, el('td', { colspan: headers.length, class: 'muted' }, 'None'))));
}
function actionButton(label, onclick, title, applies = true) {
  const why = !canWrite ? 'read-only credentials cannot do this' : !applies ? 'does not apply to the task as it stands' : title;
  return el('button', { type: 'button', disabled: !canWrite || !applies, title: why, 'data-action': label, onclick }, label);
}
async function act(path, done) {
  try {
    await api(path, { method: 'POST' });
    toast(`${path.split('/').pop()}: done`, true);
    if (done) done();
  } catch (err) { toast(err.message); }
}
function q(params) {
  const s = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '' && v !== false) s.set(k, v);
  const text = s.toString();
  return text ? '?' + text : '';
}
function setMain(...nodes) {
  const main = document.getElementById('main');
  // A refresh that changes nothing leaves the page alone: focus, selection and the element
  // under the pointer stay where they are.
  const next = document.createElement('div');
  next.append(...nodes);
  if (next.innerHTML === main.innerHTML) return;
  main.replaceChildren(...next.childNodes);
}

// ---- pages -----------------------------------------------------------------------------
async function fleetPage() {
  const [summary, software, events] = await Promise.all([
    api('/fleet/summary'),
    api('/fleet/software').catch(() => null),
    api('/events?count=15').catch(() => ({ events: [] })),
  ]);
  const rows = [];
  let totals = { desired: 0, reported: 0, ok: 0, failed: 0, running: 0 };
  for (const [name, t] of Object.entries(summary.templates || {})) {
    for (const [version, c] of Object.entries(t.versions || {})) {
      rows.push({ name, version, latest: t.latestVersion, c });
      totals.desired += c.desiredInUse; totals.reported += c.reportedInUse; totals.ok += c.lastDeploymentSuccess;
      totals.failed += c.lastDeploymentFailed; totals.running += c.lastDeploymentInProgress;
    }
  }
  const card = (n, l, id) => el('div', { class: 'card' }, el('div', { class: 'n', id }, n), el('div', { class: 'l' }, l));
  const nodes = [
    el('h1', {}, 'Fleet'),
    el('div', { class: 'cards' },
      card(software ? software.total.cores : totals.desired, 'cores', 'total-cores'),
      card(totals.running, 'deployments in progress', 'total-in-progress'),
      card(totals.failed, 'last deployment failed', 'total-failed'),
      card(software ? software.total.updating : 0, 'updating software', 'total-updating')),
    el('h2', {}, 'Template versions'),
    fleetChart(rows),
    table(['Template', 'Version', { label: 'Desired', num: 1 }, { label: 'Reported', num: 1 }, { label: 'Success', num: 1 },
      { label: 'In progress', num: 1 }, { label: 'Failed', num: 1 }],
      rows.map((r) => el('tr', { 'data-template': r.name, 'data-version': r.version },
        el('td', {}, r.name === 'None' ? el('span', { class: 'muted' }, 'no template') : el('a', { href: `#/templates/${encodeURIComponent(r.name)}` }, r.name)),
        el('td', {}, r.version, String(r.latest) === String(r.version) && r.name !== 'None' ? el('span', { class: 'muted' }, ' (latest)') : ''),
        el('td', { class: 'num', 'data-count': 'desired' }, r.c.desiredInUse),
        el('td', { class: 'num', 'data-count': 'reported' }, r.c.reportedInUse),
        el('td', { class: 'num', 'data-count': 'success' }, r.c.lastDeploymentSuccess),
        el('td', { class: 'num', 'data-count': 'inProgress' }, r.c.lastDeploymentInProgress),
        el('td', { class: 'num', 'data-count': 'failed' }, r.c.lastDeploymentFailed))), 'Fleet summary per template version'),
  ];
  if (software && software.versions.length) {
    nodes.push(el('h2', {}, 'Core software'), table(['Nucleus', 'Version', 'OS', 'Architecture', { label: 'Cores', num: 1 }, { label: 'Updating', num: 1 }],
      software.versions.map((v) => el('tr', {}, el('td', {}, v.nucleus), el('td', {}, v.nucleusVersion), el('td', {}, v.os), el('td', {}, v.architecture),
        el('td', { class: 'num' }, v.cores), el('td', { class: 'num' }, v.updating))), 'Core software summary'));
  }
  nodes.push(el('h2', {}, 'Recent events'), el('ul', { class: 'events', id: 'events', 'aria-live': 'polite' },
    (events.events || []).map(eventItem)));
  setMain(...nodes);
}
function eventItem(e) {
  const d = e.detail || {};
  const subject = d.coreName || d.deviceName || d.taskId || d.templateName || d.name || '';
  return el('li', {}, el('span', { class: 'muted' }, fmtTime(e.time), ' '), el('strong', {}, e.detailType), ' ', subject);
}
function fleetChart(rows) {
  const series = [['desiredInUse', 'desired', '#8c959f'], ['reportedInUse', 'reported', '#0a5bc4'],
    ['lastDeploymentInProgress', 'in progress', '#54aeff'], ['lastDeploymentFailed', 'failed', '#c62828']];
  const max = Math.max(1, ...rows.flatMap((r) => series.map(([k]) => r.c[k])));
  const rowH = 18 * series.length + 14, labelW = 190, width = 760, barW = width - labelW - 110;
  const chart = svg('svg', { width, height: Math.max(rows.length * rowH + 24, 40), role: 'img', id: 'fleet-chart',
    'aria-label': 'Cores per template version: desired, reported, in progress and failed' });
  rows.forEach((r, i) => {
    const y0 = i * rowH + 20;
    chart.append(svg('text', { x: 0, y: y0 + 12 }, `${r.name === 'None' ? 'no template' : r.name} v${r.version}`));
    series.forEach(([k, name, color], j) => {
      const y = y0 + j * 18, w = (barW * r.c[k]) / max;
      chart.append(svg('rect', { x: labelW, y, width: Math.max(w, 1), height: 14, fill: color, 'data-series': name }));
      chart.append(svg('text', { x: labelW + w + 4, y: y + 11, 'data-series': name, 'data-template': r.name, 'data-version': r.version }, `${r.c[k]} ${name}`));
    });
  });
  const legend = el('div', { class: 'legend', 'aria-hidden': 'true' }, series.map(([, n, c]) => el('span', {}, el('i', { style: `background:${c}` }), n)));
  return el('figure', {}, chart, legend);
}

const TASK_KINDS = {
  deployment: { list: '/deploymentTasks', key: 'deploymentTasks', path: '/deploymentTasks/', items: 'deployments', itemName: 'coreName', label: 'Deployment tasks' },
  core: { list: '/coreTasks', key: 'tasks', path: '/coreTasks/', items: 'cores', itemName: 'name', label: 'Core tasks' },
  software: { list: '/softwareUpdateTasks', key: 'softwareUpdateTasks', path: '/softwareUpdateTasks/', items: 'cores', itemName: 'name', label: 'Software update tasks' },
  device: { path: '/deviceTasks/', items: 'devices', itemName: 'name', label: 'Device tasks' },
};

async function tasksPage(kind) {
  kind = TASK_KINDS[kind] && TASK_KINDS[kind].list ? kind : 'deployment';
  const spec = TASK_KINDS[kind];
  const body = await api(spec.list + '?count=50');
  const tasks = body[spec.key] || [];
  const tabs = el('div', { class: 'tabs', role: 'navigation', 'aria-label': 'Task kinds' },
    ['deployment', 'core', 'software'].map((k) => el('a', { href: `#/tasks?kind=${k}`, 'aria-current': k === kind ? 'true' : 'false' }, TASK_KINDS[k].label)));
  const devLookup = el('form', { class: 'filters', onsubmit: (ev) => { ev.preventDefault(); const id = ev.target.elements.deviceTask.value.trim(); if (id) location.hash = `#/tasks/device/${encodeURIComponent(id)}`; } },
    el('label', {}, 'Open a device task by id', el('input', { name: 'deviceTask', placeholder: 'task id' })), el('button', { type: 'submit' }, 'Open'));
  const rows = tasks.map((t) => {
    const items = t[spec.items] || t.deployments || [];
    const counts = countBy(items, 'taskStatus');
    const what = t.template ? `${t.template.name} v${t.template.version}` : t.type || t.nucleusVersion || '';
    return el('tr', { 'data-task': t.id || t.taskId },
      el('td', {}, el('a', { href: `#/tasks/${kind}/${encodeURIComponent(t.id || t.taskId)}` }, t.id || t.taskId)),
      el('td', {}, what), statusCell(t.taskStatus || t.status), el('td', {}, items.length ? progressBar(counts) : el('span', { class: 'muted' }, 'open for items')),
      el('td', {}, fmtTime(t.createdAt)));
  });
  setMain(el('h1', {}, 'Tasks'), tabs, table(['Task', 'What', 'Status', 'Items', 'Created'], rows, spec.label), devLookup);
}

async function taskPage(kind, id) {
  const spec = TASK_KINDS[kind];
  if (!spec) throw new Error(`no task kind '${kind}'`);
  const task = await api(spec.path + encodeURIComponent(id));
  const items = task[spec.items] || [];
  const counts = countBy(items, 'taskStatus');
  const status = task.taskStatus || task.status;
  const refresh = () => route();
  const actions = [];
  const base = spec.path + encodeURIComponent(id);
  const running = !TERMINAL.includes(status);
  const failed = (counts.Failure || 0) > 0;
  if (kind === 'deployment') {
    const state = task.rollout && task.rollout.state;
    const paused = state === 'Paused' || (task.rollout && task.rollout.awaitingApproval);
    actions.push(actionButton('Pause', () => act(base + '/pause', refresh), 'stop starting new waves', running && !!task.rollout && !paused));
    actions.push(actionButton('Resume', () => act(base + '/resume', refresh), 'continue (or approve) the rollout', running && !!paused));
    actions.push(actionButton('Cancel', () => { if (confirm('Cancel this deployment task?')) act(base + '/cancel', refresh); }, 'cancel the task', running));
    actions.push(actionButton('Retry failed', () => act(base + '/retry', refresh), 'a new task with the failed cores', !running && failed));
    actions.push(actionButton('Roll back', () => { if (confirm('Roll moved cores back?')) act(base + '/rollback', refresh); }, 'move cores back to their previous version', !!task.rollout));
  } else if (kind === 'core' || kind === 'device') {
    actions.push(actionButton('Retry failed', () => act(base + '/retry', refresh), 'retry the failed items', !running && failed));
  } else if (kind === 'software') {
    actions.push(actionButton('Resume', () => act(base + '/resume', refresh), 'finish the steps a crash left'));
  }
  const nodes = [el('h1', {}, `${spec.label.replace(/s$/, '')} ${id}`),
    el('p', {}, 'Status: ', el('span', { class: 'status-' + status, id: 'task-status' }, status), ' · created ', fmtTime(task.createdAt), ' · updated ', fmtTime(task.updatedAt)),
    el('div', { class: 'cards' }, ['Waiting', 'InProgress', 'Success', 'Failure'].map((k) =>
      el('div', { class: 'card' }, el('div', { class: 'n', 'data-state': k }, counts[k] || 0), el('div', { class: 'l' }, k)))),
    progressBar(counts, items.length),
    el('div', { class: 'actions' }, actions)];
  if (task.template) nodes.push(el('p', {}, 'Template: ', el('a', { href: `#/templates/${encodeURIComponent(task.template.name)}` }, task.template.name), ` version ${task.template.version}`));
  if (task.rollout && task.rollout.waves) {
    nodes.push(el('h2', {}, `Rollout: ${task.rollout.state}, wave ${task.rollout.currentWave}${task.rollout.awaitingApproval ? ' (awaiting approval)' : ''}`),
      table(['Wave', { label: 'Planned', num: 1 }, { label: 'Moved', num: 1 }, { label: 'Succeeded', num: 1 }, { label: 'Failed', num: 1 }, { label: 'Timed out', num: 1 }, { label: 'Pending', num: 1 }, 'Started', 'Ended'],
        task.rollout.waves.map((w) => el('tr', { 'data-wave': w.wave }, el('td', {}, w.wave), el('td', { class: 'num' }, w.planned), el('td', { class: 'num' }, w.moved),
          el('td', { class: 'num' }, w.succeeded), el('td', { class: 'num' }, w.failed), el('td', { class: 'num' }, w.timedOut), el('td', { class: 'num' }, w.pending),
          el('td', {}, fmtTime(w.startedAt)), el('td', {}, fmtTime(w.endedAt)))), 'Waves'));
  }
  if (task.templates) {
    nodes.push(el('h2', {}, 'Template versions made'), table(['Template', 'From', 'To'],
      task.templates.map((t) => el('tr', {}, el('td', {}, t.name), el('td', {}, t.fromVersion), el('td', {}, t.toVersion))), 'Templates made'));
  }
  const failedOnly = new URLSearchParams(location.hash.split('?')[1] || '').get('failed') === '1';
  const shown = failedOnly ? items.filter((i) => i.taskStatus === 'Failure') : items;
  nodes.push(el('h2', {}, `Items (${items.length})`),
    el('p', {}, el('a', { href: `#/tasks/${kind}/${encodeURIComponent(id)}${failedOnly ? '' : '?failed=1'}` }, failedOnly ? 'Show all items' : 'Show failed items only')),
    table(['Name', 'Status', 'Message', 'Updated'], shown.slice(0, 1000).map((i) => {
      const name = i[spec.itemName] || i.coreName || i.name;
      return el('tr', { 'data-item': name },
        el('td', {}, kind === 'device' ? name : el('a', { href: `#/cores/${encodeURIComponent(name)}` }, name)), statusCell(i.taskStatus),
        el('td', {}, i.statusMessage || i.message || ''), el('td', {}, fmtTime(i.updatedAt)));
    }), 'Task items'));
  setMain(...nodes);
  if (!TERMINAL.includes(status) || (task.rollout && !['Completed', 'Aborted', 'Cancelled', 'RolledBack'].includes(task.rollout.state))) {
    schedulePoll(1500);
  }
}

async function coresPage(params) {
  const filters = {
    templateName: params.get('templateName') || '', templateVersion: params.get('templateVersion') || '',
    failedOnly: params.get('failedOnly') === 'true' ? 'true' : '', nucleusVersion: params.get('nucleusVersion') || '',
    os: params.get('os') || '', architecture: params.get('architecture') || '',
  };
  const count = Number(params.get('count') || 25);
  const start = params.get('start') || '';
  const prev = params.get('prev') ? params.get('prev').split(',') : [];
  const body = await api('/cores' + q(Object.assign({}, filters, { count, exclusiveStartThingName: start })));
  const cores = body.cores || [];
  const next = body.pagination && body.pagination.lastEvaluated && body.pagination.lastEvaluated.thingName;
  const form = el('form', { class: 'filters', 'aria-label': 'Filters', onsubmit: (ev) => {
    ev.preventDefault();
    const f = ev.target.elements;
    location.hash = '#/cores' + q({ templateName: f.templateName.value.trim(), templateVersion: f.templateVersion.value.trim(),
      failedOnly: f.failedOnly.checked ? 'true' : '', nucleusVersion: f.nucleusVersion.value.trim(), os: f.os.value, architecture: f.architecture.value, count: f.count.value });
  } },
  el('label', {}, 'Template', el('input', { name: 'templateName', value: filters.templateName })),
  el('label', {}, 'Version', el('input', { name: 'templateVersion', value: filters.templateVersion, inputmode: 'numeric', size: 5 })),
  el('label', {}, 'Nucleus version', el('input', { name: 'nucleusVersion', value: filters.nucleusVersion, size: 8 })),
  el('label', {}, 'OS', select('os', ['', 'linux', 'windows', 'darwin', 'unknown'], filters.os)),
  el('label', {}, 'Architecture', select('architecture', ['', 'amd64', 'aarch64', 'arm', 'x86', 'unknown'], filters.architecture)),
  el('label', {}, 'Failed only', el('input', { type: 'checkbox', name: 'failedOnly', checked: filters.failedOnly === 'true' })),
  el('label', {}, 'Per page', select('count', ['10', '25', '50', '100'], String(count))),
  el('button', { type: 'submit', class: 'primary' }, 'Apply'));
  const page = (extra) => '#/cores' + q(Object.assign({}, filters, { count }, extra));
  const pager = el('nav', { class: 'pager', 'aria-label': 'Pages' },
    start ? el('a', { href: page({ start: prev.length ? prev[prev.length - 1] : '', prev: prev.slice(0, -1).join(',') }), id: 'prev-page' }, '← Previous')
      : el('span', { class: 'muted', id: 'no-prev' }, 'first page'),
    el('span', { class: 'muted' }, `page ${prev.length + (start ? 2 : 1)}`),
    next ? el('a', { href: page({ start: next, prev: start ? prev.concat(start).join(',') : (prev.length ? prev.join(',') : '') }), id: 'next-page' }, 'Next →') : el('span', { class: 'muted', id: 'no-next' }, 'last page'));
  const rows = cores.map((c) => {
    const t = c.template || {}; const d = t.desired || {}; const r = t.reported || {}; const s = c.software || {};
    return el('tr', { 'data-core': c.name },
      el('td', {}, el('a', { href: `#/cores/${encodeURIComponent(c.name)}` }, c.name)),
      el('td', {}, d.name && d.name !== 'None' ? `${d.name} v${d.version}` : '—'),
      el('td', {}, r.name && r.name !== 'None' ? `${r.name} v${r.version}` : '—'),
      statusCell(r.deploymentStatus), el('td', {}, s.nucleusVersion || ''), el('td', {}, [s.os, s.architecture].filter(Boolean).join('/')),
      el('td', {}, c.taskStatus || ''));
  });
  setMain(el('h1', {}, 'Cores'), form,
    table(['Name', 'Desired', 'Reported', 'Deployment', 'Nucleus', 'Platform', 'Provisioning'], rows, 'Cores'), pager);
}
function select(name, options, value) {
  return el('select', { name }, options.map((o) => el('option', { value: o, selected: o === value }, o || 'any')));
}

async function corePage(name) {
  const enc = encodeURIComponent(name);
  const [core, deployments, devices] = await Promise.all([
    api(`/cores/${enc}`),
    api(`/cores/${enc}/deployments?count=20`).catch(() => ({ deployments: [] })),
    api(`/cores/${enc}/devices?count=50`).catch(() => ({ devices: [] })),
  ]);
  const t = core.template || {}; const d = t.desired || {}; const r = t.reported || {}; const dev = core.device; const s = core.software || {};
  const kv = (pairs, label) => table(['Field', 'Value'], pairs.map(([k, v]) => el('tr', {}, el('th', { scope: 'row' }, k), el('td', {}, v === undefined || v === null ? '' : v))), label);
  const nodes = [el('h1', {}, `Core ${core.name}`),
    kv([['Provisioning template', core.provisioningTemplate], ['Provisioning', core.taskStatus],
      ['Desired template', d.name && d.name !== 'None' ? el('a', { href: `#/templates/${encodeURIComponent(d.name)}` }, `${d.name} v${d.version}`) : '—'],
      ['Reported template', r.name && r.name !== 'None' ? `${r.name} v${r.version}` : '—'], ['Deployment status', r.deploymentStatus],
      ['Nucleus', s.nucleus ? `${s.nucleus} ${s.nucleusVersion || ''}` : ''], ['Platform', [s.os, s.architecture].filter(Boolean).join('/')],
      ['Updating to', s.updatingTo], ['Created', fmtTime(core.createdAt)], ['Updated', fmtTime(core.updatedAt)]], 'Core')];
  nodes.push(el('h2', {}, 'Greengrass device'));
  if (dev) {
    nodes.push(kv([['Status', dev.status], ['Core version', dev.coreVersion], ['Platform', `${dev.platform || ''} ${dev.architecture || ''}`], ['Last status update', fmtTime(dev.lastStatusUpdateTimestamp)]], 'Device'),
      el('h3', {}, 'Installed components'),
      table(['Component', 'Version', 'State'], (dev.installedComponents || []).map((c) => el('tr', {}, el('td', {}, c.name), el('td', {}, c.version), el('td', {}, c.lifecycleState))), 'Installed components'),
      el('h3', {}, 'Effective deployments'),
      table(['Deployment', 'Target', 'Execution', 'Updated'], (dev.effectiveDeployments || []).map((e) => el('tr', {}, el('td', {}, e.deploymentName || e.deploymentId),
        el('td', { class: 'mono' }, e.targetArn), el('td', {}, e.coreDeviceExecutionStatus), el('td', {}, fmtTime(e.updatedAt)))), 'Effective deployments'));
  } else nodes.push(el('p', { class: 'muted' }, 'Greengrass does not know this core yet (it has not connected).'));
  nodes.push(el('h2', {}, 'Deployment history'), table(['Task', 'Status', 'Updated'], (deployments.deployments || []).map((x) =>
    el('tr', {}, el('td', {}, el('a', { href: `#/tasks/deployment/${encodeURIComponent(x.taskId)}` }, x.taskId)), statusCell(x.taskStatus), el('td', {}, fmtTime(x.updatedAt)))), 'Deployment history'));
  nodes.push(el('h2', {}, 'Artifacts'), table(['Artifact', 'Location', 'Created'], Object.entries(core.artifacts || {}).map(([k, a]) =>
    el('tr', {}, el('td', {}, k), el('td', { class: 'mono' }, a.presignedUrl ? el('a', { href: a.presignedUrl }, a.key) : `${a.bucket}/${a.key}`), el('td', {}, fmtTime(a.createdAt)))), 'Artifacts'));
  nodes.push(el('h2', {}, 'Client devices'), table(['Device', 'Status', 'Created'], (devices.devices || []).map((x) =>
    el('tr', {}, el('td', {}, x.name), statusCell(x.taskStatus), el('td', {}, fmtTime(x.createdAt)))), 'Client devices'));
  setMain(...nodes);
}

async function templatesPage() {
  const body = await api('/templates?count=200');
  setMain(el('h1', {}, 'Templates'), table(['Template', { label: 'Latest version', num: 1 }, 'Updated'],
    (body.templates || []).map((t) => el('tr', { 'data-template': t.name }, el('td', {}, el('a', { href: `#/templates/${encodeURIComponent(t.name)}` }, t.name)),
      el('td', { class: 'num' }, t.version), el('td', {}, fmtTime(t.updatedAt || t.createdAt)))), 'Templates'));
}

async function templatePage(name, params) {
  const body = await api(`/templates/${encodeURIComponent(name)}/versions`);
  const versions = body.templates || [];
  const nums = versions.map((v) => String(v.version));
  const a = params.get('a') || nums[Math.max(nums.length - 2, 0)];
  const b = params.get('b') || nums[nums.length - 1];
  const pick = (v) => versions.find((x) => String(x.version) === String(v)) || { components: [] };
  const comps = (v) => Object.fromEntries((pick(v).components || []).map((c) => [c.key, c.version]));
  const ca = comps(a), cb = comps(b);
  const keys = [...new Set([...Object.keys(ca), ...Object.keys(cb)])].sort();
  const form = el('form', { class: 'filters', 'aria-label': 'Compare versions', onsubmit: (ev) => {
    ev.preventDefault(); location.hash = `#/templates/${encodeURIComponent(name)}?a=${ev.target.elements.a.value}&b=${ev.target.elements.b.value}`;
  } }, el('label', {}, 'Left version', select('a', nums, a)), el('label', {}, 'Right version', select('b', nums, b)), el('button', { type: 'submit' }, 'Compare'));
  const diffRows = keys.map((k) => {
    const cls = !(k in ca) ? 'diff-added' : !(k in cb) ? 'diff-removed' : ca[k] !== cb[k] ? 'diff-changed' : '';
    const change = cls === 'diff-added' ? 'added' : cls === 'diff-removed' ? 'removed' : cls ? 'changed' : '';
    return el('tr', { class: cls, 'data-component': k }, el('td', {}, k), el('td', {}, ca[k] || '—'), el('td', {}, cb[k] || '—'), el('td', {}, change));
  });
  setMain(el('h1', {}, `Template ${name}`),
    el('h2', {}, 'Compare two versions'), form,
    table(['Component', `Version ${a}`, `Version ${b}`, 'Change'], diffRows, 'Version diff'),
    el('h2', {}, 'Versions'),
    table(['Version', 'Components', 'Created'], versions.slice().reverse().map((v) => el('tr', { 'data-version': v.version }, el('td', {}, v.version),
      el('td', {}, (v.components || []).map((c) => el('div', { class: 'mono' }, `${c.key} ${c.version}`))), el('td', {}, fmtTime(v.updatedAt || v.createdAt)))), 'Template versions'));
}

async function applicationsPage() {
  const body = await api('/applications');
  setMain(el('h1', {}, 'Applications'), table(['Application', { label: 'Version', num: 1 }, 'Updated'],
    (body.applications || []).map((a) => el('tr', {}, el('td', {}, el('a', { href: `#/applications/${encodeURIComponent(a.name)}` }, a.name)),
      el('td', { class: 'num' }, a.version), el('td', {}, fmtTime(a.updatedAt || a.createdAt)))), 'Applications'));
}
async function applicationPage(name) {
  const body = await api(`/applications/${encodeURIComponent(name)}/versions`);
  const versions = body.applications || body.versions || [];
  setMain(el('h1', {}, `Application ${name}`), table(['Version', 'Status', 'Definition'], versions.slice().reverse().map((v) =>
    el('tr', {}, el('td', {}, v.version), el('td', {}, v.status || ''), el('td', {}, el('pre', { class: 'mono' }, JSON.stringify(Object.fromEntries(Object.entries(v).filter(([k]) => !['name', 'version', 'createdAt', 'updatedAt'].includes(k))), null, 2))))), 'Application versions'));
}

// ---- routing, live updates, credentials ---------------------------------------------------
function schedulePoll(ms) {
  clearTimeout(pollTimer);
  pollTimer = setTimeout(() => route(true), ms);
}
async function route(quiet) {
  clearTimeout(pollTimer);
  const hash = location.hash || '#/fleet';
  const [path, query] = hash.slice(1).split('?');
  const params = new URLSearchParams(query || '');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  for (const a of document.querySelectorAll('header nav a')) a.setAttribute('aria-current', a.dataset.nav === (parts[0] || 'fleet') ? 'page' : 'false');
  try {
    switch (parts[0] || 'fleet') {
      case 'fleet': await fleetPage(); break;
      case 'tasks': parts.length >= 3 ? await taskPage(parts[1], parts[2]) : await tasksPage(params.get('kind')); break;
      case 'cores': parts[1] ? await corePage(parts[1]) : await coresPage(params); break;
      case 'templates': parts[1] ? await templatePage(parts[1], params) : await templatesPage(); break;
      case 'applications': parts[1] ? await applicationPage(parts[1]) : await applicationsPage(); break;
      default: setMain(el('h1', {}, 'Not found'), el('p', {}, `No page ${hash}.`));
    }
    lastRefresh = Date.now();
    if (!quiet) document.getElementById('main').focus({ preventScroll: true });
  } catch (err) {
    if (err.status === 401 || err.status === 403) {
      setMain(el('h1', {}, 'Credentials needed'), el('p', {}, err.message), el('p', {}, 'Enter an API key or a bearer token above; it is kept in this tab only (session storage).'));
      document.getElementById('cred-value').focus();
    } else if (!quiet) {
      setMain(el('h1', {}, 'Could not load'), el('p', { role: 'alert' }, err.message));
    } else {
      schedulePoll(3000);
    }
  }
}

let refreshQueued = false;
function onLiveEvent(event) {
  const list = document.getElementById('events');
  if (list) { list.prepend(eventItem(event)); while (list.children.length > 50) list.lastChild.remove(); }
  if (refreshQueued) return;
  refreshQueued = true;
  // Coalesce bursts (a 500-core task writes 500 events) into one refresh per 700 ms.
  setTimeout(() => { refreshQueued = false; const page = (location.hash || '#/fleet').split('/')[1] || 'fleet'; if (!page.startsWith('cores') || location.hash.split('/').length > 2) route(true); }, 700);
}

let streamAbort = null;
async function stream(lastId) {
  if (streamAbort) streamAbort.abort();
  const controller = new AbortController();
  streamAbort = controller;
  const live = document.getElementById('live');
  try {
    const headers = Object.assign({ Accept: 'text/event-stream' }, credentials(), lastId ? { 'Last-Event-ID': lastId } : {});
    const response = await fetch(BASE + '/events/stream', { headers, signal: controller.signal });
    if (!response.ok) throw new Error('stream ' + response.status);
    live.textContent = '● live';
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
        let id = null, data = '';
        for (const line of block.split('\n')) {
          if (line.startsWith('id:')) id = line.slice(3).trim();
          else if (line.startsWith('data:')) data += line.slice(5).trimStart();
        }
        if (id) lastId = id;
        if (data) { try { onLiveEvent(JSON.parse(data)); } catch (_) { /* not an event */ } }
      }
    }
  } catch (err) {
    if (controller.signal.aborted) return;
  }
  live.textContent = '○ reconnecting';
  setTimeout(() => { if (streamAbort === controller) stream(lastId); }, 2000);
}

async function refreshAccess() {
  const access = document.getElementById('access');
  try {
    const who = await api('/whoami');
    canWrite = who.canWrite;
    access.textContent = !who.authentication ? 'no authentication' : canWrite ? 'read-write' : 'read-only';
  } catch (err) {
    canWrite = false;
    access.textContent = err.status === 401 ? 'not signed in' : '';
  }
}

document.addEventListener('DOMContentLoaded', async () => {
  const kind = document.getElementById('cred-kind');
  kind.value = sessionStorage.getItem('ggprov.kind') || 'key';
  document.getElementById('login').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    sessionStorage.setItem('ggprov.kind', kind.value);
    sessionStorage.setItem('ggprov.credential', document.getElementById('cred-value').value.trim());
    document.getElementById('cred-value').value = '';
    await refreshAccess();
    stream(null);
    route();
  });
  window.addEventListener('hashchange', () => route());
  // The skip link moves the focus; following its `#main` would leave the page (hash routes).
  document.querySelector('a.skip').addEventListener('click', (ev) => {
    ev.preventDefault();
    document.getElementById('main').focus();
  });
  await refreshAccess();
  stream(null);
  route();
});
