// The header's user menu is a <details> element: it opens and closes without any script. This
// only adds what people expect of a menu: a click elsewhere or Escape closes it.
(function () {
  "use strict";

  document.addEventListener("DOMContentLoaded", function () {
    var menu = document.getElementById("user-menu");
    if (!menu) {
      return;
    }
    document.addEventListener("click", function (event) {
      if (menu.open && !menu.contains(event.target)) {
        menu.open = false;
      }
    });
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && menu.open) {
        menu.open = false;
        menu.querySelector("summary").focus();
      }
    });
  });
})();
