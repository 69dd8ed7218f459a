// A block's box in an architecture diagram links to "#block-<class>": open that block's <details> and show it.
function paperzooOpenBlock(hash) {
  if (!hash || !hash.startsWith("#block-")) return;
  const target = document.getElementById(hash.slice(1));
  if (target && target.tagName === "DETAILS") {
    target.open = true;
    target.scrollIntoView({ block: "start" });
  }
}
document.addEventListener("click", (event) => {
  const link = event.target.closest && event.target.closest("a.pz-link");
  if (link) paperzooOpenBlock(link.getAttribute("href"));
});
window.addEventListener("hashchange", () => paperzooOpenBlock(window.location.hash));
document.addEventListener("DOMContentLoaded", () => paperzooOpenBlock(window.location.hash));
