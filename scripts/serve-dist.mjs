// The page's static server: the Trunk build (dist/) on one origin with the headers the page
// needs, for scripts/serve.sh and the end-to-end tests alike. Not a development server: no live
// reload, nothing but GET and HEAD of files under the folder; fit to sit behind a reverse proxy.
//
//   node scripts/serve-dist.mjs [--dir dist] [--address 127.0.0.1] [--port 8080]
//
// Headers: a Content-Security-Policy that allows only this origin (plus WebAssembly compilation
// and the hash of each inline script Trunk writes into index.html), cross-origin isolation
// (COOP/COEP, which wasm threads need), nosniff, no referrer. Text and code are gzipped when the
// browser accepts it (the release module shrinks about 6x); the model's weights are sent as
// they are, so that the page's progress bar can trust Content-Length. Files whose names carry
// Trunk's content hash are cached for a year, everything else is revalidated.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';

const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.wasm': 'application/wasm',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.txt': 'text/plain; charset=utf-8',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.safetensors': 'application/octet-stream',
};
const COMPRESSIBLE = new Set(['.html', '.js', '.wasm', '.css', '.txt', '.svg']);
const HASHED = /-[0-9a-f]{16}(_bg)?\.(js|wasm|css)$/;
// Compressed bodies by path, kept while the file's mtime stands (the tests start a server per file).
const gzipped = new Map();

/** The policy for the page in `dir`: its own origin only, and its inline scripts by hash. */
export function contentSecurityPolicy(dir) {
  const html = fs.readFileSync(path.join(dir, 'index.html'), 'utf8');
  const hashes = [...html.matchAll(/<script(?![^>]*\bsrc=)[^>]*>([\s\S]*?)<\/script>/g)]
    .map((m) => `'sha256-${crypto.createHash('sha256').update(m[1]).digest('base64')}'`);
  return [
    "default-src 'self'",
    `script-src 'self' 'wasm-unsafe-eval' ${hashes.join(' ')}`.trim(),
    "worker-src 'self'",
    "connect-src 'self'",
    "img-src 'self' data: blob:",
    // Leptos sets style attributes (chart sizes, progress widths).
    "style-src 'self' 'unsafe-inline'",
    "object-src 'none'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
    "form-action 'none'",
  ].join('; ');
}

/** A server for `dir`; `listen` it yourself. */
export function createServer(dir) {
  dir = path.resolve(dir);
  if (!fs.existsSync(path.join(dir, 'index.html'))) {
    throw new Error(`no build at ${dir}: run \`trunk build\` first`);
  }
  const csp = contentSecurityPolicy(dir);
  return http.createServer((req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    let rel;
    try {
      rel = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    } catch {
      res.writeHead(400).end('bad path');
      return;
    }
    const file = path.join(dir, rel === '/' ? 'index.html' : rel);
    if (!(file === dir || file.startsWith(dir + path.sep)) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found');
      return;
    }
    const ext = path.extname(file);
    const stat = fs.statSync(file);
    const headers = {
      'content-type': MIME[ext] ?? 'application/octet-stream',
      'content-security-policy': csp,
      'cross-origin-opener-policy': 'same-origin',
      'cross-origin-embedder-policy': 'require-corp',
      'cross-origin-resource-policy': 'same-origin',
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
      'cache-control': HASHED.test(file) ? 'public, max-age=31536000, immutable' : 'no-cache',
      vary: 'accept-encoding',
    };
    const gzip = COMPRESSIBLE.has(ext) && /\bgzip\b/.test(req.headers['accept-encoding'] ?? '');
    if (gzip) {
      let hit = gzipped.get(file);
      if (!hit || hit.mtimeMs !== stat.mtimeMs) {
        hit = { mtimeMs: stat.mtimeMs, body: zlib.gzipSync(fs.readFileSync(file), { level: 6 }) };
        gzipped.set(file, hit);
      }
      res.writeHead(200, { ...headers, 'content-encoding': 'gzip', 'content-length': hit.body.length });
      res.end(req.method === 'HEAD' ? undefined : hit.body);
      return;
    }
    res.writeHead(200, { ...headers, 'content-length': stat.size });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    fs.createReadStream(file).pipe(res);
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const arg = (name, fallback) => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? process.argv[i + 1] : fallback;
  };
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
  const dir = arg('dir', path.join(root, 'dist'));
  const address = arg('address', '127.0.0.1');
  const port = Number(arg('port', process.env.PORT ?? 8080));
  const server = createServer(dir);
  server.listen(port, address, () => console.log(`[serve] ${dir} on http://${address}:${port}/`));
}
