// Preloaded into configurable-http-proxy (node --require): when a service dies in the middle of a streamed answer,
// close the client's connection at once. Without this the proxy keeps the client's response open and the client
// waits for its own read timeout (the OpenAI client: 600 s), although the upstream connection is gone.
"use strict";
const path = require("path");

const chp = path.dirname(require.resolve("configurable-http-proxy/package.json", { paths: [process.cwd(), __dirname, path.join(__dirname, "..", "..")] }));
const httpProxy = require(require.resolve("http-proxy-3", { paths: [chp] }));
const create = httpProxy.createProxyServer;

function failFast(options) {
  const server = create(options);
  server.on("proxyRes", (proxyRes, req, res) => {
    proxyRes.on("close", () => {
      if (!proxyRes.complete && !res.destroyed) {
        res.destroy(); // the client sees its connection close (an incomplete chunked body), not silence
      }
    });
  });
  return server;
}

httpProxy.createProxyServer = failFast;
httpProxy.createServer = failFast;
httpProxy.createProxy = failFast;
