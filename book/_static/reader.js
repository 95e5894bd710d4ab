// Make the sidebar buttons in the article header work (on phones they are the only
// way to reach the table of contents).
//
// pydata-sphinx-theme 0.17 renders its own `.primary-toggle` in the (hidden) top
// navbar and wires only the first `.primary-toggle` of the page with
// document.querySelector; sphinx-book-theme's visible buttons come later and get no
// listener, so tapping them does nothing. Known upstream:
// https://github.com/pydata/pydata-sphinx-theme/issues/2451 and
// https://github.com/executablebooks/sphinx-book-theme/issues/988.
// Forward a click on any later toggle to the first one, which both themes handle
// (a dialog on narrow screens, collapsing the sidebar on wide ones).
document.addEventListener(
  "click",
  (event) => {
    for (const kind of ["primary", "secondary"]) {
      const button = event.target.closest(`.${kind}-toggle`);
      const wired = document.querySelector(`.${kind}-toggle`);
      if (button && wired && button !== wired) {
        event.preventDefault();
        event.stopPropagation();
        button.blur();
        wired.click();
        return;
      }
    }
  },
  true,
);
