// A stand-in for the Porchlight server, just enough for the UI: serves ui/dist like the real
// server does (index.html for unknown non-/api paths) and fakes /api/login, /api/me and
// /api/logout with the contract's JSON shapes. Not a model of the real auth; only its answers.
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { extname, join, normalize } from "node:path";

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".wasm": "application/wasm",
};

export const USER = { username: "ann", password: "correct horse", role: "admin" };
const SESSION = "session=fake-session-1";

function json(res, status, body, headers = {}) {
  res.writeHead(status, { "content-type": "application/json", ...headers });
  res.end(JSON.stringify(body));
}

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks).toString("utf8");
}

const signedIn = (req) => (req.headers.cookie ?? "").split(/;\s*/).includes(SESSION);

/// `delayMs` slows /api/login down so a test can see the button disabled.
export function startFakeServer(distDir, { delayMs = 400 } = {}) {
  const server = createServer(async (req, res) => {
    const url = new URL(req.url, "http://localhost");
    if (url.pathname === "/api/login" && req.method === "POST") {
      let body;
      try {
        body = JSON.parse(await readBody(req));
      } catch {
        return json(res, 400, { error: "Bad request." });
      }
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      if (body.username === "locked") {
        return json(res, 429, { error: "Too many attempts. Try again in 5 minutes." });
      }
      if (body.username === USER.username && body.password === USER.password) {
        return json(res, 200, { username: USER.username, role: USER.role }, {
          "set-cookie": `${SESSION}; Path=/; HttpOnly; SameSite=Strict`,
        });
      }
      return json(res, 401, { error: "Wrong username or password." });
    }
    if (url.pathname === "/api/me" && req.method === "GET") {
      return signedIn(req)
        ? json(res, 200, { username: USER.username, role: USER.role })
        : json(res, 401, { error: "Not signed in." });
    }
    if (url.pathname === "/api/logout" && req.method === "POST") {
      res.writeHead(204, { "set-cookie": "session=; Path=/; Max-Age=0" });
      return res.end();
    }
    if (url.pathname.startsWith("/api/")) return json(res, 404, { error: "Not found." });

    const path = normalize(url.pathname).replace(/^(\.\.[/\\])+/, "");
    let file = join(distDir, path.endsWith("/") ? "index.html" : path);
    let data;
    try {
      data = await readFile(file);
    } catch {
      file = join(distDir, "index.html");
      data = await readFile(file);
    }
    res.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream" });
    res.end(data);
  });
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => resolve(server));
  });
}
