// Where lambda-sign's time goes: a summary of a V8 .cpuprofile (node --cpu-prof), by function
// (self time) and by where the code lives (our dist/, each node_modules package, Node's own
// internals, native code and GC), so that the next optimisation starts from data.
import fs from 'node:fs';

// "file:///…/node_modules/@smithy/signature-v4/dist-cjs/index.js" → "@smithy/signature-v4".
function owner(url, functionName) {
  if (url === '') {
    if (functionName === '(garbage collector)') return '(gc)';
    if (functionName === '(idle)' || functionName === '(program)') return functionName;
    return '(native)';
  }
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return nm[1];
  // node:internal/http2/core → node:http2; node:_http_server → node:_http_server.
  if (url.startsWith('node:')) return `node:${url.slice(5).replace(/^internal\//, '').split('/')[0]}`;
  const dist = /\/dist\/([^/]+\.js)$/.exec(url);
  if (dist) return `lambda-sign ${dist[1]}`;
  return url.replace(/^file:\/\//, '');
}

/**
 * Returns {totalMs, idleMs, functions, owners, ours}: the top functions by self time, the
 * self time per owner, and lambda-sign's own functions (dist/) by inclusive time (everything
 * they call, each function counted once per sample even when recursive).
 */
export function summarizeProfile(file, top = 25) {
  const prof = JSON.parse(fs.readFileSync(file, 'utf8'));
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const self = new Map();
  for (let i = 0; i < prof.samples.length; i++) {
    const id = prof.samples[i];
    self.set(id, (self.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0));
  }
  const fns = new Map();
  const owners = new Map();
  let total = 0;
  let idle = 0;
  for (const [id, us] of self) {
    const { functionName, url, lineNumber } = byId.get(id).callFrame;
    const name = functionName || '(anonymous)';
    if (name === '(idle)') {
      idle += us;
      continue;
    }
    total += us;
    const where = owner(url, name);
    const key = `${name}\t${where}\t${url ? lineNumber + 1 : ''}`;
    fns.set(key, (fns.get(key) ?? 0) + us);
    owners.set(where, (owners.get(where) ?? 0) + us);
  }
  // Inclusive time of our own functions: walk each sampled node up to the root.
  const parent = new Map();
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const oursOf = new Map();
  const ourKeys = (id) => {
    if (oursOf.has(id)) return oursOf.get(id);
    const keys = new Set(parent.has(id) ? ourKeys(parent.get(id)) : []);
    const { functionName, url, lineNumber } = byId.get(id).callFrame;
    const dist = /\/dist\/([^/]+\.js)$/.exec(url);
    if (dist) keys.add(`${functionName || '(anonymous)'}\t${dist[1]}:${lineNumber + 1}`);
    oursOf.set(id, keys);
    return keys;
  };
  const inclusive = new Map();
  for (const [id, us] of self) {
    if (byId.get(id).callFrame.functionName === '(idle)') continue;
    for (const k of ourKeys(id)) inclusive.set(k, (inclusive.get(k) ?? 0) + us);
  }
  const pct = (us) => (100 * us) / total;
  return {
    ours: [...inclusive]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([key, us]) => {
        const [name, where] = key.split('\t');
        return { name, where, pct: pct(us) };
      }),
    totalMs: total / 1000,
    idleMs: idle / 1000,
    functions: [...fns]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([key, us]) => {
        const [name, where, line] = key.split('\t');
        return { name, where: line ? `${where}:${line}` : where, selfMs: us / 1000, pct: pct(us) };
      }),
    owners: [...owners].sort((a, b) => b[1] - a[1]).slice(0, top).map(([o, us]) => ({ owner: o, selfMs: us / 1000, pct: pct(us) })),
  };
}

export function profileMarkdown(summary, label) {
  const f = (x) => x.toFixed(1);
  return [
    `### Where lambda-sign's time goes (${label})`,
    '',
    `node --cpu-prof on the daemon; ${f(summary.totalMs / 1000)} s of CPU sampled (idle excluded). Profiling slows it: ` +
      'these shares, not the req/s of a profiled run, are the point.',
    '',
    '| by code | self % |',
    '| --- | ---: |',
    ...summary.owners.slice(0, 15).map((o) => `| ${o.owner} | ${f(o.pct)} |`),
    '',
    '| hottest functions (self time) | where | self % |',
    '| --- | --- | ---: |',
    ...summary.functions.map((x) => `| \`${x.name}\` | ${x.where} | ${f(x.pct)} |`),
    '',
    '| lambda-sign\'s own functions, inclusive (what they call synchronously; code after an await starts a new stack) | where | % |',
    '| --- | --- | ---: |',
    ...summary.ours.slice(0, 15).map((x) => `| \`${x.name}\` | ${x.where} | ${f(x.pct)} |`),
    '',
  ].join('\n');
}
