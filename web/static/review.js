// The review page, enhanced: actions without a page reload, and keyboard shortcuts. Without this file
// every form still posts and the page reloads: nothing here is needed to review.
(() => {
  "use strict";
  const main = () => document.querySelector("main");

  // An action posts its form in the background; the page that answers replaces this one's <main>, the
  // scroll position and the focused theme stay, and the "Done" message shows where the editor is.
  async function submit(event) {
    const form = event.target;
    // attributes, not form.action / form.method: a field named "action" hides those properties
    if (!(form instanceof HTMLFormElement) || (form.getAttribute("method") || "").toLowerCase() !== "post") return;
    event.preventDefault();
    const body = new FormData(form);
    if (event.submitter && event.submitter.name) body.append(event.submitter.name, event.submitter.value);
    const theme = form.closest("section.theme");
    const focused = theme ? theme.dataset.theme : null;
    const y = window.scrollY;
    let response;
    try {
      response = await fetch(form.getAttribute("action") || window.location.href, {
        method: "POST", body, credentials: "same-origin",
      });
    } catch {
      HTMLFormElement.prototype.submit.call(form); // the network failed: the browser tries, and shows what it gets
      return;
    }
    const open = [...main().querySelectorAll("details[open]")].map(place);
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = page.querySelector("main");
    if (!fresh) { window.location.assign(response.url); return; }
    main().replaceWith(fresh);
    for (const details of fresh.querySelectorAll("details")) if (open.includes(place(details))) details.open = true;
    history.replaceState(null, "", response.url);
    window.scrollTo(0, y);
    const flash = fresh.querySelector(".flash");
    if (flash) { flash.classList.add("floating"); setTimeout(() => flash.classList.remove("floating"), 4000); }
    const again = focused && document.querySelector(`section.theme[data-theme="${CSS.escape(focused)}"]`);
    if (again) again.focus({ preventScroll: true });
  }
  document.addEventListener("submit", submit);

  // What the editor had open stays open: a <details> is known by its section and its place in it.
  function place(details) {
    const section = details.closest("section");
    const all = section ? [...section.querySelectorAll("details")] : [];
    return `${section ? section.id : ""}#${all.indexOf(details)}`;
  }

  // Keyboard: j/k move between themes, x selects, a approves, r rejects, n/p change question.
  const themes = () => [...document.querySelectorAll("section.theme")];
  function current() {
    const active = document.activeElement;
    return active ? active.closest("section.theme") : null;
  }
  function go(step) {
    const all = themes();
    if (!all.length) return;
    const at = all.indexOf(current());
    const next = all[Math.min(all.length - 1, Math.max(0, at < 0 ? 0 : at + step))];
    next.focus();
    next.scrollIntoView({ block: "nearest" });
  }
  function press(selector) {
    const theme = current();
    const button = theme && theme.querySelector(selector);
    if (button) button.click();
  }
  document.addEventListener("keydown", (event) => {
    const target = event.target;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (target.closest && target.closest("input, textarea, select")) return; // typing, not a shortcut
    const actions = {
      j: () => go(1),
      k: () => go(-1),
      x: () => press("h3 input[type=checkbox]"),
      a: () => press("button[value=approved]"),
      r: () => press("button[value=rejected]"),
      n: () => { const a = document.getElementById("next-question"); if (a) a.click(); },
      p: () => { const a = document.getElementById("previous-question"); if (a) a.click(); },
      "/": () => { const box = document.querySelector("form.search input"); if (box) box.focus(); },
    };
    const act = actions[event.key];
    if (act) { event.preventDefault(); act(); }
  });
})();
