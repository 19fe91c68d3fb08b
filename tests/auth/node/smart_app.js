// A minimal SMART App Launch client built on the npm `fhirclient` package (Node adapter).
// Spawned by tests/auth/test_e2e_clients.py:
//   ISS=<fhir base> CLIENT_ID=<id> PORT=<port> SCOPE="..." node smart_app.js
// Routes: /launch (standalone launch -> authorize), /callback (code exchange, then one refresh).
// Prints one JSON line per event on stdout: {"event": "listening"} then {"event": "done", ...} or {"event": "error"}.
"use strict";
const http = require("http");
const smart = require("fhirclient");

const ISS = process.env.ISS;
const CLIENT_ID = process.env.CLIENT_ID;
const PORT = parseInt(process.env.PORT, 10);
const SCOPE = process.env.SCOPE || "openid fhirUser launch/patient patient/*.rs offline_access";

// fhirclient keeps the authorization state in a storage; one browser, so one in-memory map.
const memory = new Map();
const storage = {
  async get(key) { return memory.get(key); },
  async set(key, value) { memory.set(key, value); return value; },
  async unset(key) { return memory.delete(key); },
};

function emit(obj) { process.stdout.write(JSON.stringify(obj) + "\n"); }

function page(res, status, title, body) {
  res.writeHead(status, { "Content-Type": "text/html; charset=utf-8" });
  res.end(`<!doctype html><html><head><meta charset="utf-8"><title>${title}</title></head>` +
          `<body style="font-family:sans-serif"><h1 id="${status === 200 ? "done" : "failed"}">${title}</h1>${body}</body></html>`);
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, `http://127.0.0.1:${PORT}`);
  try {
    if (url.pathname === "/launch") {
      await smart(req, res, storage).authorize({
        iss: ISS,
        clientId: CLIENT_ID,
        scope: SCOPE,
        redirectUri: "/callback",
        pkceMode: "required",
      });
      return;
    }
    if (url.pathname === "/callback") {
      const client = await smart(req, res, storage).ready();
      const first = { ...client.state.tokenResponse };
      await client.refresh();  // resolves to the updated client state
      const refreshed = client.state.tokenResponse;
      const result = {
        event: "done",
        patient: client.getPatientId(),
        fhirUser: client.getFhirUser(),
        scope: first.scope,
        access_token: first.access_token,
        need_patient_banner: first.need_patient_banner,
        smart_style_url: first.smart_style_url,
        id_token: first.id_token,
        refresh_token_rotated: refreshed.refresh_token !== first.refresh_token,
        refreshed_access_token: refreshed.access_token,
        refreshed_scope: refreshed.scope,
      };
      emit(result);
      page(res, 200, "SMART app ready",
           `<p>Patient <b id="patient">${result.patient}</b></p><p>User <b id="user">${result.fhirUser}</b></p>` +
           `<p>Scope <code>${result.scope}</code></p><p>Refresh OK (rotated: ${result.refresh_token_rotated})</p>`);
      return;
    }
    page(res, 404, "not found", "");
  } catch (err) {
    emit({ event: "error", message: String(err && err.stack || err) });
    page(res, 500, "SMART app error", `<pre>${String(err)}</pre>`);
  }
});

server.listen(PORT, "127.0.0.1", () => emit({ event: "listening", port: PORT }));
setTimeout(() => { emit({ event: "error", message: "timeout" }); process.exit(2); }, 60000).unref();
