// Thumbs up or down on an answer, with an optional comment: PUT and DELETE
// /api/sessions/{id}/messages/{messageId}/feedback (openapi.yaml).

import { ApiError } from "./api.js";
import { describeError, el, icon, uniqueId } from "./ui.js";

export const COMMENT_MAX_CHARS = 2000;

const RATINGS = [
  { rating: "up", label: "Good answer", said: "Rated as a good answer." },
  { rating: "down", label: "Bad answer", said: "Rated as a bad answer." },
];

/**
 * The feedback controls of one assistant message. `message` is the API's message object (its
 * `feedback`, if any, is the stored state). `save(request)` stores `{rating, comment}`, or
 * clears the feedback when `request` is null, and resolves to the stored feedback (or null).
 */
export function feedbackControls(message, { save }) {
  let feedback = message.feedback ?? null;
  let busy = false;

  const buttons = RATINGS.map(({ rating, label }) =>
    el(
      "button",
      {
        type: "button",
        className: `icon-button rate rate-${rating}`,
        "aria-label": label,
        title: label,
        "aria-pressed": "false",
        onclick: () => rate(rating),
      },
      icon(rating),
    ),
  );
  const formId = uniqueId("comment-form");
  const toggle = el("button", {
    type: "button",
    className: "link-button comment-toggle",
    "aria-expanded": "false",
    "aria-controls": formId,
    onclick: () => openForm(),
  });
  const shown = el("p", { className: "feedback-comment" });
  const status = el("p", { className: "visually-hidden", role: "status" });
  const error = el("p", { className: "feedback-error", role: "alert" });

  const textareaId = uniqueId("comment");
  const countId = `${textareaId}-count`;
  const textarea = el("textarea", {
    id: textareaId,
    rows: "3",
    maxlength: String(COMMENT_MAX_CHARS),
    "aria-describedby": countId,
  });
  const count = el("p", { id: countId, className: "comment-count" });
  const form = el(
    "form",
    { id: formId, className: "comment-form", novalidate: true, hidden: true },
    el("label", { for: textareaId }, "Comment (optional)"),
    textarea,
    count,
    el(
      "div",
      { className: "form-actions" },
      el("button", { type: "submit", className: "primary" }, "Save comment"),
      el("button", { type: "button", className: "secondary", onclick: () => closeForm() }, "Cancel"),
    ),
  );
  textarea.addEventListener("input", updateCount);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const comment = textarea.value.trim();
    store({ rating: feedback.rating, comment: comment || null }, "Comment saved.").then((ok) => {
      if (ok) closeForm();
    });
  });
  form.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      closeForm();
    }
  });

  const root = el(
    "div",
    { className: "feedback" },
    el("div", { className: "feedback-bar", role: "group", "aria-label": "Rate this answer" }, ...buttons, toggle),
    shown,
    form,
    error,
    status,
  );
  render();
  return root;

  function render() {
    buttons.forEach((button, index) => {
      button.setAttribute("aria-pressed", String(feedback?.rating === RATINGS[index].rating));
    });
    toggle.hidden = !feedback;
    toggle.textContent = feedback?.comment ? "Edit comment" : "Add a comment";
    shown.hidden = !feedback?.comment;
    shown.textContent = feedback?.comment ? `Your comment: ${feedback.comment}` : "";
  }

  function updateCount() {
    count.textContent = `${textarea.value.length} of ${COMMENT_MAX_CHARS} characters`;
  }

  function rate(rating) {
    if (busy) return;
    // Pressing the pressed button takes the rating back (and its comment with it).
    if (feedback?.rating === rating) {
      store(null, "Rating removed.").then(() => closeForm({ focus: false }));
    } else {
      const said = RATINGS.find((r) => r.rating === rating).said;
      store({ rating, comment: feedback?.comment ?? null }, said);
    }
  }

  async function store(request, said) {
    if (busy) return false;
    busy = true;
    root.setAttribute("aria-busy", "true");
    // aria-disabled rather than disabled: the focused button keeps the keyboard's focus.
    for (const button of buttons) button.setAttribute("aria-disabled", "true");
    error.textContent = "";
    status.textContent = "";
    try {
      feedback = await save(request);
      render();
      status.textContent = said;
      return true;
    } catch (failure) {
      error.textContent = feedbackError(failure);
      return false;
    } finally {
      busy = false;
      root.removeAttribute("aria-busy");
      for (const button of buttons) button.removeAttribute("aria-disabled");
    }
  }

  function openForm() {
    textarea.value = feedback?.comment ?? "";
    updateCount();
    form.hidden = false;
    toggle.setAttribute("aria-expanded", "true");
    textarea.focus();
  }

  function closeForm({ focus = true } = {}) {
    const wasOpen = !form.hidden;
    form.hidden = true;
    toggle.setAttribute("aria-expanded", "false");
    if (focus && wasOpen) (toggle.hidden ? buttons[0] : toggle).focus();
  }
}

function feedbackError(error) {
  if (error instanceof ApiError && error.code === "not_found") {
    return "This answer no longer exists; the conversation may have been deleted.";
  }
  if (error instanceof ApiError) return describeError(error);
  return describeError(new ApiError(0, "internal", String(error)));
}
