// Keyboard and screen-reader help on every page (see _ext/ftsite_a11y.py).
// The strings are the page's language, written by the build into #ftsite-a11y-messages.
(function () {
  "use strict";

  var words = {};
  var source = document.getElementById("ftsite-a11y-messages");
  if (source) {
    try { words = JSON.parse(source.textContent); } catch (e) { words = {}; }
  }
  var announcer = document.getElementById("ftsite-announce");

  // Say something to screen readers without moving the focus (a role="status" region).
  function announce(text) {
    if (!announcer || !text) return;
    announcer.textContent = "";
    // A new text node a moment later: screen readers announce a change, even to the same text.
    setTimeout(function () { announcer.textContent = text; }, 50);
  }

  // -- Regions that scroll ---------------------------------------------------------------
  // Code, outputs, formulas and wide tables scroll sideways on a narrow window. A keyboard
  // user can scroll only what can take the focus, so each region that really scrolls gets
  // a tab stop and a name that says what it is; those that fit get none (fewer stops).
  function labelFor(element) {
    if (element.closest(".cell_output, .output")) return words.output;
    if (element.matches("pre") || element.closest("div.highlight")) return words.code;
    if (element.matches("div.math, math") || element.closest("div.math")) return words.formula;
    if (element.querySelector("table") || element.matches("table")) return words.table;
    return words.region;
  }

  function scrolls(element) {
    if (element.scrollWidth <= element.clientWidth + 1 && element.scrollHeight <= element.clientHeight + 1) {
      return false;
    }
    var style = getComputedStyle(element);
    return /(auto|scroll)/.test(style.overflowX + " " + style.overflowY);
  }

  function markScrollableRegions() {
    var content = document.querySelector(".rst-content") || document.body;
    content.querySelectorAll("*").forEach(function (element) {
      var marked = element.hasAttribute("data-ftsite-scroll");
      if (scrolls(element)) {
        if (marked || element.hasAttribute("tabindex")) return;
        element.setAttribute("tabindex", "0");
        element.setAttribute("role", "group");
        element.setAttribute("aria-label", labelFor(element) || "");
        element.setAttribute("data-ftsite-scroll", "");
      } else if (marked) {  // it fits now (a wider window): no useless tab stop
        ["tabindex", "role", "aria-label", "data-ftsite-scroll"].forEach(function (name) {
          element.removeAttribute(name);
        });
      }
    });
  }

  var pending = null;
  function markSoon() {
    clearTimeout(pending);
    pending = setTimeout(markScrollableRegions, 100);
  }

  // -- The theme's sidebar buttons ---------------------------------------------------------
  // sphinx-rtd-theme's script adds to the sidebar buttons titled "Open/close menu", in
  // English whatever the page: name them in the page's language, as they appear.
  function labelMenuButtons() {
    if (!words.expand) return;
    document.querySelectorAll("button.toctree-expand").forEach(function (button) {
      button.setAttribute("title", words.expand);
      button.setAttribute("aria-label", words.expand);
    });
  }

  function watchMenu() {
    var menu = document.querySelector(".wy-menu-vertical");
    labelMenuButtons();
    if (menu && window.MutationObserver) {
      new MutationObserver(labelMenuButtons).observe(menu, { childList: true, subtree: true });
    }
  }

  // -- Skip link ---------------------------------------------------------------------------
  // It is a plain link to #ftsite-content, but the 404 page has a <base> element (its links
  // work at any address), against which "#ftsite-content" would lead to the home page.
  // Move the focus to the text directly instead.
  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("a.ftsite-skip-link");
    var target = document.getElementById("ftsite-content");
    if (!link || !target) return;
    event.preventDefault();
    target.focus();
    target.scrollIntoView();
  });

  // -- Copy buttons (sphinx-copybutton) -----------------------------------------------------
  // Its button already has a name in the page's language (the icon's <title>), but it
  // does not say that the code was copied, and ClipboardJS blurs it after copying (the
  // keyboard user is thrown back to the top of the page). Its tooltip changes to "Copied!"
  // in the page's language: read it just after the click, announce it, and give the
  // focus back to the button.
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("button.copybtn");
    if (!button) return;
    var byKeyboard = document.activeElement === button;
    setTimeout(function () {
      announce(button.getAttribute("data-tooltip"));
      if (byKeyboard && document.activeElement !== button) button.focus();
    }, 150);
  }, true);  // capture: before ClipboardJS's own handler moves the focus away

  // -- Search ------------------------------------------------------------------------------
  // Sphinx writes "Search finished, found N pages…" in the page's language into
  // .search-summary once the results are in: announce it.
  function watchSearch() {
    var results = document.getElementById("search-results");
    if (!results || !window.MutationObserver) return;
    new MutationObserver(function () {
      var summary = results.querySelector(".search-summary");
      if (summary && summary.textContent.trim() && !summary.hasAttribute("data-ftsite-said")) {
        summary.setAttribute("data-ftsite-said", "");
        announce(summary.textContent.trim());
      }
    }).observe(results, { childList: true, subtree: true, characterData: true });
  }

  function start() {
    markScrollableRegions();
    watchSearch();
    watchMenu();
    window.addEventListener("resize", markSoon);
    // A solution opened (<details>) may hold code that scrolls; "toggle" does not bubble.
    document.addEventListener("toggle", markSoon, true);
  }

  // For scripts that add content to the page, and for the tests (tests/test_browser.py),
  // which open every solution before checking the page: mark the new regions now.
  window.ftsiteA11y = { refresh: markScrollableRegions };

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
