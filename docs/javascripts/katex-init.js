// Render the equations with the vendored KaTeX (docs/vendor/katex). pymdownx.arithmatex (generic mode) wraps each
// `$...$` of a docstring in <span class="arithmatex">\(...\)</span> and each `$$...$$` in
// <div class="arithmatex">\[...\]</div>; only those are rendered, so a "$" elsewhere on a page stays text.
// Material's document$ fires on every page load (and on instant navigation, should it be turned on).
document$.subscribe(({ body }) => {
  for (const element of body.querySelectorAll(".arithmatex")) {
    renderMathInElement(element, {
      delimiters: [
        { left: "\\(", right: "\\)", display: false },
        { left: "\\[", right: "\\]", display: true },
      ],
      throwOnError: false, // a TeX error shows as a red .katex-error span (the browser test looks for them)
    });
  }
});
