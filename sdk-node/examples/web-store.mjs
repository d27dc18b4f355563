// @ts-check
// A web app over MHR-Store: a plain node:http server whose page uploads a file into the node's
// store, shows its object id and replication state, and downloads it back. Uploads and
// downloads are streamed (request → createWriteStream, get() → response): any size, constant
// memory.
//
//   node examples/web-store.mjs [port]      (the local node, found like the CLI finds it)
import { createServer } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { pathToFileURL } from 'node:url';

import { connect, MehrError } from '@mehr/sdk';

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>MHR-Store</title>
<style>body{font-family:sans-serif;max-width:40em;margin:2em auto}code{word-break:break-all}</style></head>
<body>
<h1>MHR-Store</h1>
<form id="upload"><input type="file" id="file" required> <button>Upload</button></form>
<p id="progress"></p>
<dl id="result" hidden>
  <dt>Object id</dt><dd><code id="object-id"></code></dd>
  <dt>Size</dt><dd id="object-size"></dd>
  <dt>Replication</dt><dd id="replication"></dd>
  <dt>Download</dt><dd><a id="download" href="#">download it back</a></dd>
</dl>
<script>
document.getElementById('upload').addEventListener('submit', async (event) => {
  event.preventDefault();
  const file = document.getElementById('file').files[0];
  document.getElementById('progress').textContent = 'uploading ' + file.name + '…';
  const stored = await (await fetch('/objects?name=' + encodeURIComponent(file.name), { method: 'POST', body: file })).json();
  if (stored.error) { document.getElementById('progress').textContent = stored.error; return; }
  const status = await (await fetch('/objects/' + stored.id + '/status')).json();
  document.getElementById('object-id').textContent = stored.id;
  document.getElementById('object-size').textContent = stored.length + ' bytes';
  document.getElementById('replication').textContent = status.replication
    ? status.replication.shards.length + ' shards (' + status.replication.dataShards + '+' + status.replication.parityShards + ')'
    : 'held on this node only (not replicated)';
  const link = document.getElementById('download');
  link.href = '/objects/' + stored.id;
  link.download = file.name;
  document.getElementById('result').hidden = false;
  document.getElementById('progress').textContent = 'stored';
});
</script>
</body></html>`;

/**
 * Starts the app on `port` (0: any free port) over `client`; resolves with the server.
 * @param {import('@mehr/sdk').Client} client
 * @param {number} port
 * @returns {Promise<import('node:http').Server>}
 */
export function startWebApp(client, port) {
  const server = createServer(async (request, response) => {
    const url = new URL(request.url ?? '/', 'http://localhost');
    const json = (/** @type {number} */ status, /** @type {unknown} */ body) => {
      response.writeHead(status, { 'content-type': 'application/json' });
      response.end(JSON.stringify(body));
    };
    try {
      const objectPath = url.pathname.match(/^\/objects\/([0-9a-f]{64})(\/status)?$/);
      if (request.method === 'GET' && url.pathname === '/') {
        response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
        response.end(PAGE);
      } else if (request.method === 'POST' && url.pathname === '/objects') {
        const sink = client.createWriteStream({ name: url.searchParams.get('name') ?? undefined });
        await pipeline(request, sink);
        const stored = await sink.done;
        json(200, { id: stored.object.id, length: stored.object.length, alreadyStored: stored.alreadyStored });
      } else if (request.method === 'GET' && objectPath && objectPath[2]) {
        json(200, await client.stat(objectPath[1]));
      } else if (request.method === 'GET' && objectPath) {
        const status = await client.stat(objectPath[1]);
        response.writeHead(200, {
          'content-type': 'application/octet-stream',
          'content-length': String(status.object.length),
          'content-disposition': `attachment; filename="${(status.object.name ?? 'object').replace(/[^\w.-]/g, '_')}"`,
        });
        await pipeline(client.get(objectPath[1]), response);
      } else {
        json(404, { error: `no route for ${request.method} ${url.pathname}` });
      }
    } catch (error) {
      if (response.headersSent) return void response.destroy();
      const status = error instanceof MehrError && error.code === 'NOT_FOUND' ? 404 : 500;
      json(status, { error: error instanceof Error ? error.message : String(error) });
    }
  });
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(server)));
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const client = await connect();
  const server = await startWebApp(client, Number(process.argv[2] ?? 8080));
  const address = server.address();
  console.log(`MHR-Store web app on http://127.0.0.1:${typeof address === 'object' && address ? address.port : ''}/`);
}
