// Shared by the service's pages (index.html, review.html): page.py puts this file in place of the
// marker at the top of each page's one inline script, so the Content-Security-Policy hash covers it.
// Everything shown from the service is set as text (textContent), never as HTML: stored paths are
// arbitrary file names. Thumbnails are fetched by record id and store snapshot.
const $ = (id) => document.getElementById(id);
let objectUrls = [];
function authHeaders(extra) {
  const token = $("token").value.trim();
  return Object.assign(token ? { "Authorization": "Bearer " + token } : {}, extra || {});
}
function forgetThumbs() {
  objectUrls.forEach((u) => URL.revokeObjectURL(u));
  objectUrls = [];
}
async function errorText(response) {
  // The service's one error shape: {"error": {"code", "kind", "message"}}.
  try {
    const body = await response.json();
    if (body && body.error) return `${body.error.message} (${body.error.kind}, HTTP ${response.status})`;
  } catch (e) { /* not JSON: fall through */ }
  return `HTTP ${response.status} ${response.statusText}`;
}
async function loadThumb(box, match, snapshot) {
  // snapshot: the id of the store snapshot the answer came from (its content, not only its generation)
  const url = `/v1/thumbnail/${encodeURIComponent(match.id)}` +
              (snapshot === undefined || snapshot === null ? "" : `?snapshot=${encodeURIComponent(snapshot)}`);
  try {
    const response = await fetch(url, { headers: authHeaders() });
    if (!response.ok) throw new Error(await errorText(response));
    const blobUrl = URL.createObjectURL(await response.blob());
    objectUrls.push(blobUrl);
    const img = document.createElement("img");
    img.alt = match.path;
    img.src = blobUrl;
    box.replaceChildren(img);
  } catch (e) {
    const note = document.createElement("div");
    note.className = "missing";
    note.textContent = "no thumbnail: " + e.message;
    box.replaceChildren(note);
  }
}
