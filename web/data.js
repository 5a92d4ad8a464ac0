// The user's rights over their data: download everything (GET /api/export, as JSON, Markdown
// or CSV) and delete
// everything (DELETE /api/sessions, repeated while it answers 202).

import { ApiError } from "./api.js";
import { describeError } from "./ui.js";

const $ = (id) => document.getElementById(id);
const COUNT_PAGE = 100;
// When the API's Retry-After cannot be read (a cross-origin page the API does not expose it to).
const DEFAULT_RETRY_S = 1;
// Steps of DELETE /api/sessions before the page stops asking (each makes progress, normally).
export const MAX_ERASE_STEPS = 100;

/**
 * Wire up "Download my data" and "Delete all my conversations". `onErased()` is called once
 * everything is gone (or when an erasure stopped part-way, so the list can show what is left).
 */
export function setupDataRights({ api, onErased, onImported = onErased }) {
  setupImport({ api, onImported });
  const download = $("download-data");
  const erase = $("erase-all");
  const dialog = $("confirm-erase");
  const confirm = $("erase-confirm");
  let counting = 0;

  download.addEventListener("click", async () => {
    if (download.getAttribute("aria-disabled") === "true") return;
    setBusy(download, true, "Preparing your download…");
    try {
      const format = $("download-format")?.value ?? "json";
      if (format === "json") {
        const { text, document: exported, filename } = await api.exportAll();
        save(new Blob([text], { type: "application/json" }), filename);
        const n = exported.sessions?.length ?? 0;
        say(`Your data was downloaded: ${n} conversation${n === 1 ? "" : "s"}.`);
      } else {
        const { blob, filename } = await api.exportFile(format);
        save(blob, filename);
        say(`Your data was downloaded as ${format === "csv" ? "CSV" : "Markdown"}.`);
      }
    } catch (error) {
      sayError(
        error instanceof ApiError && error.code === "incomplete_export"
          ? "The download was incomplete, so nothing was saved. Try again."
          : `Your data could not be downloaded. ${describe(error)}`,
      );
    } finally {
      setBusy(download, false);
    }
  });

  erase.addEventListener("click", () => {
    if (erase.getAttribute("aria-disabled") === "true") return;
    say("");
    sayError("");
    const mine = ++counting;
    $("erase-text").textContent = "Counting your conversations…";
    confirm.disabled = true;
    dialog.returnValue = "";
    dialog.addEventListener("close", () => closed(), { once: true });
    dialog.showModal();
    Promise.all([countSessions(false), countSessions(true)]).then(
      ([active, archived]) => {
        if (mine !== counting) return;
        const total = active + archived;
        $("erase-text").textContent =
          total === 0
            ? "You have no conversations. Anything started meanwhile will be deleted too."
            : `Your ${plural(total, "conversation")} (${active} active, ${archived} archived) ` +
              `and every message in ${total === 1 ? "it" : "them"} will be deleted for good. ` +
              "This cannot be undone: download your data first to keep a copy.";
        confirm.disabled = false;
      },
      () => {
        if (mine !== counting) return;
        $("erase-text").textContent =
          "All of your conversations, active and archived, and every message in them will be " +
          "deleted for good (they could not be counted just now). This cannot be undone.";
        confirm.disabled = false;
      },
    );
  });

  async function closed() {
    counting += 1;
    if (dialog.returnValue !== "erase") {
      erase.focus();
      return;
    }
    setBusy(erase, true, "Deleting all your conversations…");
    try {
      for (let steps = 1; ; steps += 1) {
        const step = await api.deleteAllSessions();
        if (step.done) break;
        if (steps >= MAX_ERASE_STEPS) throw new Error("too many steps");
        say("Still deleting: there is a lot to delete…");
        await delay((step.retryAfterSeconds ?? DEFAULT_RETRY_S) * 1000);
      }
      setBusy(erase, false);
      onErased();
      say("All your conversations were deleted.");
    } catch (error) {
      setBusy(erase, false);
      const why = error instanceof ApiError ? describe(error) : "It is taking too long.";
      sayError(`Not everything was deleted. ${why} Deleting again finishes the job.`);
      onErased();
    }
  }

  async function countSessions(archived) {
    let count = 0;
    let token = null;
    do {
      const page = await api.listSessions({ limit: COUNT_PAGE, continuationToken: token, archived });
      count += page.sessions.length;
      token = page.continuationToken;
    } while (token);
    return count;
  }

  function setBusy(button, busy, text = "") {
    // aria-disabled rather than disabled: the button keeps the keyboard's focus.
    if (busy) button.setAttribute("aria-disabled", "true");
    else button.removeAttribute("aria-disabled");
    if (busy) {
      sayError("");
      say(text);
    }
  }
}

function save(blob, filename) {
  const url = URL.createObjectURL(blob);
  const link = Object.assign(document.createElement("a"), { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  // Let the browser finish reading the file before the URL goes (as FileSaver.js does).
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

function say(text) {
  $("data-status").textContent = text;
}

function sayError(text) {
  $("data-error").textContent = text;
  $("data-error").classList.toggle("shown", Boolean(text));
}

function describe(error) {
  return describeError(error instanceof ApiError ? error : new ApiError(0, "internal", ""));
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

function delay(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** "Import conversations": send the chosen file, then show the report in words. */
function setupImport({ api, onImported }) {
  const input = $("import-file");
  const report = $("import-report");
  if (!input) return;
  input.addEventListener("change", async () => {
    const file = input.files?.[0];
    if (!file) return;
    sayError("");
    report.replaceChildren();
    say(`Importing ${file.name}…`);
    try {
      const result = await api.importFile(file);
      say("");
      showReport(report, result);
      onImported();
    } catch (error) {
      say("");
      sayError(`Nothing was imported. ${error instanceof ApiError ? error.message : describe(error)}`);
    } finally {
      input.value = "";
    }
  });
}

function showReport(target, result) {
  const line = (text) => Object.assign(document.createElement("p"), { textContent: text });
  const parts = [`Imported ${plural(result.imported, "conversation")}.`];
  if (result.skipped) parts.push(`${plural(result.skipped, "conversation")} were already here.`);
  if (result.leftOut) parts.push(`${plural(result.leftOut, "system or tool message")} left out.`);
  target.append(line(parts.join(" ")));
  if (result.failed.length) {
    target.append(line(`${plural(result.failed.length, "conversation")} could not be imported:`));
    const list = document.createElement("ul");
    for (const failure of result.failed) {
      const item = document.createElement("li");
      item.textContent = `${failure.title}: ${failure.reason}`;
      list.append(item);
    }
    target.append(list);
  }
}
