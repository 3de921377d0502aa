// The gallery's front end: sign in for a session token, list the photos, upload straight to object storage through
// a signed URL, and hold a WebSocket that announces each photo as soon as its thumbnail is made.
"use strict";

const $ = (id) => document.getElementById(id);
const session = {
  token: sessionStorage.getItem("gallery-token"),
  user: sessionStorage.getItem("gallery-user"),
};
let socket = null;
let pinger = null;
/** The upload this page is waiting for, by id, to say when it is ready. */
const waiting = new Map();

/** Calls the gallery's API with the session token; answers the JSON body, or throws the API's own words. */
async function api(path, options = {}) {
  const headers = { "content-type": "application/json" };
  if (session.token) headers.authorization = `Bearer ${session.token}`;
  const response = await fetch(path, { ...options, headers });
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = null; }
  if (response.status === 401 && path !== "/api/session") signOut();
  if (!response.ok) throw new Error((body && body.error) || text || `${response.status}`);
  return body;
}

function show() {
  const signedIn = Boolean(session.token);
  $("sign-in-form").hidden = signedIn;
  $("gallery").hidden = !signedIn;
  $("sign-out").hidden = !signedIn;
  $("who").hidden = !signedIn;
  $("who").textContent = signedIn ? `Signed in as ${session.user}` : "";
}

function signOut() {
  session.token = session.user = null;
  sessionStorage.removeItem("gallery-token");
  sessionStorage.removeItem("gallery-user");
  if (socket) {
    const closing = socket;
    socket = null;
    clearInterval(pinger);
    closing.close();
  }
  $("live").dataset.state = "closed";
  $("live").textContent = "offline";
  $("photos").replaceChildren();
  show();
}

/** A photo's card; the newest goes first, and a photo already shown is not shown twice. */
function addPhoto(entry, newest) {
  const photo = entry.photo;
  if (document.querySelector(`figure[data-id="${CSS.escape(photo.id)}"]`)) return;
  const figure = document.createElement("figure");
  figure.dataset.id = photo.id;
  const link = document.createElement("a");
  link.href = entry.url;
  const img = document.createElement("img");
  img.className = "thumb";
  img.src = entry.thumb_url;
  img.alt = photo.name;
  img.width = photo.thumb_width;
  img.height = photo.thumb_height;
  link.append(img);
  const caption = document.createElement("figcaption");
  caption.textContent = `${photo.name} · ${photo.owner} · ${photo.width}×${photo.height}`;
  figure.append(link, caption);
  if (newest) $("photos").prepend(figure); else $("photos").append(figure);
  $("empty").hidden = true;
}

async function loadPhotos() {
  const listing = await api("/api/photos");
  for (const entry of listing.photos) addPhoto(entry, false);
  $("empty").hidden = listing.photos.length > 0 || $("photos").children.length > 0;
}

/** The live connection: on (re)connecting the page reloads the listing, so nothing announced meanwhile is missed. */
function connect() {
  if (!session.token) return;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const url = `${scheme}://${location.host}/api/live?access_token=${encodeURIComponent(session.token)}`;
  // Each handler checks it still belongs to the current connection: a late event of an earlier one changes nothing.
  const current = new WebSocket(url);
  let opened = false;
  socket = current;
  current.addEventListener("open", () => {
    if (socket !== current) return;
    opened = true;
    $("live").dataset.state = "open";
    $("live").textContent = "live";
    loadPhotos().catch((error) => { $("status").textContent = error.message; });
    pinger = setInterval(() => current.send("ping"), 30000);
  });
  current.addEventListener("message", (message) => {
    if (socket !== current) return;
    const event = JSON.parse(message.data);
    if (event.type === "photo") {
      addPhoto(event, true);
      if (waiting.has(event.photo.id)) {
        $("status").textContent = `${waiting.get(event.photo.id)} is ready.`;
        waiting.delete(event.photo.id);
      }
    } else if (event.type === "removed") {
      const figure = document.querySelector(`figure[data-id="${CSS.escape(event.id)}"]`);
      if (figure) figure.remove();
    } else if (event.type === "refused" && waiting.has(event.id)) {
      $("status").textContent = `${waiting.get(event.id)} was refused: ${event.reason}`;
      waiting.delete(event.id);
    }
  });
  current.addEventListener("close", () => {
    if (socket !== current) return;
    clearInterval(pinger);
    $("live").dataset.state = "closed";
    $("live").textContent = "offline";
    socket = null;
    if (!session.token) return;
    // Refused before it opened: perhaps the session ended. The API says so (and signs the page out on a 401).
    const check = opened ? Promise.resolve() : api("/api/photos");
    check.then(() => setTimeout(connect, 2000), () => { if (session.token) setTimeout(connect, 2000); });
  });
}

$("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("login-error").hidden = true;
  try {
    const signedIn = await api("/api/session", {
      method: "POST",
      body: JSON.stringify({ user: $("user").value, password: $("password").value }),
    });
    session.token = signedIn.token;
    session.user = signedIn.user;
    sessionStorage.setItem("gallery-token", session.token);
    sessionStorage.setItem("gallery-user", session.user);
    $("password").value = "";
    show();
    connect();
  } catch (error) {
    $("login-error").textContent = error.message === "wrong name or password" ? "Wrong name or password." : error.message;
    $("login-error").hidden = false;
  }
});

$("upload-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = $("file").files[0];
  if (!file) return;
  try {
    $("status").textContent = `Uploading ${file.name}…`;
    const upload = await api("/api/uploads", {
      method: "POST",
      body: JSON.stringify({ name: file.name, content_type: file.type, size: file.size }),
    });
    waiting.set(upload.id, file.name);
    // Straight to object storage: the signed URL is the only permission this PUT needs.
    const put = await fetch(upload.url, { method: "PUT", headers: { "content-type": file.type }, body: file });
    if (!put.ok) throw new Error(`the upload was refused (${put.status}): ${await put.text()}`);
    // The thumbnail may already be announced (the WebSocket can be faster than this answer).
    if (waiting.has(upload.id)) $("status").textContent = `Uploaded ${file.name}; making its thumbnail…`;
    $("upload-form").reset();
  } catch (error) {
    $("status").textContent = error.message;
  }
});

$("sign-out").addEventListener("click", signOut);

show();
connect();
