// Form plumbing: field-by-field error messages from the API's 422 detail, and a busy state while sending.

import { ApiError } from "./api.js";
import { h } from "./dom.js";

/** A labelled form field with its error line: the API's problems for `name` are shown right below it. */
export function field(label, control, wide = false) {
  return h(
    "label",
    { class: wide ? "wide" : null },
    label,
    control,
    h("p", { class: "field-error", "data-error-for": control.name }),
  );
}

/** Remove the messages of an earlier submission. */
export function clearProblems(form) {
  form.querySelectorAll(".field-error, .form-error").forEach((element) => (element.textContent = ""));
  form.querySelectorAll(".invalid").forEach((element) => element.classList.remove("invalid"));
}

/** Show an API error on the form: each {loc: ["body", name], msg} next to the field `name`, the rest (and a
 * plain string detail) in the form's own error line. */
export function showProblems(form, error) {
  clearProblems(form);
  const general = [];
  const problems = error instanceof ApiError && Array.isArray(error.detail) ? error.detail : null;
  for (const problem of problems ?? [{ loc: [], msg: error.message }]) {
    const name = problem.loc?.[0] === "body" ? problem.loc[1] : undefined;
    const target = name && form.querySelector(`[data-error-for="${name}"]`);
    if (target) {
      target.textContent += (target.textContent ? "\n" : "") + problem.msg;
      form.elements[name]?.classList.add("invalid");
    } else {
      general.push(problem.msg);
    }
  }
  form.querySelector(".form-error").textContent = general.join("\n");
}

/** Run `action` with the form's submit button disabled; errors are shown on the form. */
export async function submitting(form, action) {
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  clearProblems(form);
  try {
    await action();
  } catch (error) {
    showProblems(form, error);
  } finally {
    button.disabled = false;
  }
}
