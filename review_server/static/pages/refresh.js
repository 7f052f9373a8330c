// Parts of a page that follow the server: an element with data-refresh="URL" is replaced every data-refresh-s
// seconds by the same part rendered again (the server renders it with the page's own template, so there is one
// way to draw it). Not while the keyboard is inside it (a form being filled keeps what is typed), nor while the
// page is hidden, nor when nothing changed; emptying data-refresh stops it.
"use strict";

function follow(el) {
  const every = 1000 * (Number(el.dataset.refreshS) || 5);
  let last = null;
  const tick = async () => {
    const url = el.dataset.refresh;
    if (url && !document.hidden && !el.contains(document.activeElement)) {
      try {
        const r = await fetch(url, { cache: "no-store", credentials: "same-origin", headers: { Accept: "text/html" } });
        const text = r.ok ? await r.text() : null;
        if (text !== null && text !== last) {
          last = text;
          // The fragment is the element's inner HTML; parsed inside a template of the same tag (a <tbody> needs a table).
          const holder = document.createElement("template");
          holder.innerHTML = el.tagName === "TBODY" ? `<table><tbody>${text}</tbody></table>` : text;
          const fresh = el.tagName === "TBODY" ? holder.content.querySelector("tbody") : holder.content;
          el.replaceChildren(...fresh.childNodes);
          el.dataset.refreshedAt = new Date().toISOString();
        }
      } catch (err) {
        // the server is away: keep what is shown, try again next time
      }
    }
    setTimeout(tick, every);
  };
  setTimeout(tick, every);
}

for (const el of document.querySelectorAll("[data-refresh]")) follow(el);
