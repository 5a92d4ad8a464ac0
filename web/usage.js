// The usage meter (docs/web.md, "What it does"): what the signed-in user's model calls cost today and
// this month, from GET /api/usage, shown quietly under "Your data"; and the clear sentence of a
// spent budget. It refreshes after every turn, sent or refused.

const $ = (id) => document.getElementById(id);

/** "12,345": the user's locale's digits and separators. */
function count(n) {
  return new Intl.NumberFormat().format(n);
}

/** When a budget resets, in the user's own time: "today at 01:00", "on 1 Sep at 02:00". */
export function resetTime(iso) {
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return "when it resets";
  const time = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  const sameDay = when.toDateString() === new Date().toDateString();
  const day = when.toLocaleDateString([], { day: "numeric", month: "short" });
  return sameDay ? `today at ${time}` : `on ${day} at ${time}`;
}

/** The period whose limit is nearest to spent (the one that refuses first), or null. */
function tightest(usage) {
  const limited = ["day", "month"].filter((p) => usage[p].limit);
  if (!limited.length) return null;
  return limited.reduce((a, b) =>
    usage[a].tokens / usage[a].limit >= usage[b].tokens / usage[b].limit ? a : b,
  );
}

/** The sentence for a refused turn (429 quota_exceeded): the budget and when it resets. */
export function spentSentence(period, resetsAt) {
  const which = period === "month" ? "this month's" : "today's";
  return `You have used ${which} model budget. You can send messages again ${resetTime(resetsAt)}.`;
}

/**
 * @param {{api: {usage: () => Promise<any>}}} options
 * @returns {{refresh: () => Promise<void>, lastSpent: () => {period: string, resetsAt: string}|null}}
 */
export function setupUsage({ api }) {
  const meter = $("usage-meter");
  const bar = $("usage-bar");
  const text = $("usage-text");
  let spent = null; // {period, resetsAt} while a budget is spent
  let asked = 0; // answers to older requests must not overwrite newer ones

  async function refresh() {
    const mine = ++asked;
    let usage;
    try {
      usage = await api.usage();
    } catch {
      return; // a quiet meter: it keeps its last figure rather than show an error
    }
    if (mine !== asked) return;
    const period = tightest(usage);
    meter.hidden = false;
    if (period === null) {
      // No limit: just what today cost.
      bar.hidden = true;
      text.textContent = `Today: ${count(usage.day.tokens)} tokens`;
      spent = null;
      meter.classList.remove("spent");
      return;
    }
    const { tokens, limit, resetsAt } = usage[period];
    bar.hidden = false;
    bar.max = limit;
    bar.value = Math.min(tokens, limit);
    const label = period === "day" ? "Today" : "This month";
    bar.setAttribute("aria-label", `${label}: ${count(tokens)} of ${count(limit)} tokens used`);
    if (tokens >= limit) {
      spent = { period, resetsAt };
      meter.classList.add("spent");
      text.textContent = `${label}'s budget is used up; it resets ${resetTime(resetsAt)}.`;
    } else {
      spent = null;
      meter.classList.remove("spent");
      text.textContent = `${label}: ${count(tokens)} of ${count(limit)} tokens`;
    }
  }

  return { refresh, lastSpent: () => spent };
}
