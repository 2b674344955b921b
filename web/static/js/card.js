/* Service card: the print button (an inline onclick would be refused by the CSP). */
(function () {
  "use strict";
  document.getElementById("print").addEventListener("click", function () {
    window.print();
  });
})();
