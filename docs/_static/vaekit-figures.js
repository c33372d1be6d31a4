// Draw every plotly figure of the page from the JSON its notebook stored (vaekit_site.py).
(function () {
  function draw() {
    document.querySelectorAll("div.vaekit-plotly").forEach(function (div) {
      if (div.dataset.drawn) return;
      var script = div.querySelector("script.vaekit-plotly-json");
      if (!script) return;
      var fig = JSON.parse(script.textContent);
      var config = Object.assign({}, fig.config || {}, {responsive: true, displaylogo: false});
      var layout = fig.layout || {};
      div.dataset.drawn = "1";
      Plotly.newPlot(div, fig.data || [], layout, config).then(function () {
        div.style.minHeight = "";
        div.classList.add("vaekit-plotly-drawn");
      });
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", draw);
  else draw();
})();
