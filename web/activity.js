// "Your activity" (docs/web.md, "What it does"): the signed-in user's own turns and tokens per
// day for the last 30 days, from GET /api/usage?days=30, opened from the usage meter. Each day
// is a row with a bar scaled to the busiest day: readable as a table, seen as a chart.

const $ = (id) => document.getElementById(id);
const DAYS = 30;

function count(n) {
  return new Intl.NumberFormat().format(n);
}

/** "Mon 3 Nov" for a UTC day "2031-11-03" (shown as that day, whatever the time zone). */
function dayLabel(date) {
  const when = new Date(`${date}T12:00:00Z`);
  return when.toLocaleDateString([], {
    weekday: "short",
    day: "numeric",
    month: "short",
    timeZone: "UTC",
  });
}

function cell(text, className = "") {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

/** A number with a bar behind it, its length the share of the busiest day. */
function barCell(value, max) {
  const td = cell("", "activity-bar-cell");
  const bar = document.createElement("span");
  bar.className = "activity-bar";
  bar.style.width = `${max ? Math.round((100 * value) / max) : 0}%`;
  const label = document.createElement("span");
  label.className = "activity-value";
  label.textContent = count(value);
  td.append(bar, label);
  return td;
}

/** @param {{api: {usage: (days?: number) => Promise<any>}}} options */
export function setupActivity({ api }) {
  const dialog = $("activity-dialog");
  const body = $("activity-days");
  const summary = $("activity-summary");
  const error = $("activity-error");

  function render(history) {
    const maxTurns = Math.max(0, ...history.map((d) => d.turns));
    const maxTokens = Math.max(0, ...history.map((d) => d.tokens));
    const rows = [...history].reverse().map((day) => {
      const tr = document.createElement("tr");
      tr.dataset.date = day.date;
      if (!day.turns && !day.tokens) tr.className = "idle";
      tr.append(cell(dayLabel(day.date)), barCell(day.turns, maxTurns), barCell(day.tokens, maxTokens));
      return tr;
    });
    body.replaceChildren(...rows);
    const turns = history.reduce((n, d) => n + d.turns, 0);
    const tokens = history.reduce((n, d) => n + d.tokens, 0);
    const active = history.filter((d) => d.turns || d.tokens).length;
    summary.textContent =
      `Last ${history.length} days: ${count(turns)} turns, ${count(tokens)} tokens, ` +
      `on ${active} ${active === 1 ? "day" : "days"}. Newest first; days are UTC.`;
  }

  async function open() {
    error.textContent = "";
    summary.textContent = "Loading…";
    body.replaceChildren();
    dialog.showModal();
    try {
      const usage = await api.usage(DAYS);
      render(usage.history ?? []);
    } catch (err) {
      summary.textContent = "";
      error.textContent = err?.message || "Your activity could not be loaded. Try again.";
    }
  }

  $("show-activity").addEventListener("click", open);
  return { open };
}
