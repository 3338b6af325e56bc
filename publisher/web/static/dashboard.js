// Draws the dashboard's charts with Chart.js from the page's JSON data (no inline script: the page's CSP forbids it).
(function () {
  var data = JSON.parse(document.getElementById("dashboard-data").textContent);
  document.querySelectorAll("canvas[data-campaign]").forEach(function (canvas) {
    var d = data[canvas.dataset.campaign];
    var datasets = canvas.dataset.kind === "growth"
      ? [{label: "recipients", data: d.recipients, borderColor: "#b00", tension: 0.2}]
      : [{label: "bounces %", data: d.bounce_rate, borderColor: "#b60"},
         {label: "unsubscribes %", data: d.unsubscribe_rate, borderColor: "#06b"}];
    canvas.chart = new Chart(canvas, {type: "line", data: {labels: d.labels, datasets: datasets},
      options: {responsive: true, maintainAspectRatio: false, animation: false, scales: {y: {beginAtZero: true}}}});
  });
  document.body.dataset.charts = "drawn";
})();
