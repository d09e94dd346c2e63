// The API key: asked for when the server answers 401, kept in this tab's sessionStorage only.

const STORAGE_KEY = "effdet-api-key";
let pending = null;

/** The key this tab uses, or null when none was given. */
export function apiKey() {
  return sessionStorage.getItem(STORAGE_KEY);
}

/** The Authorization header for the current key (empty when there is none). */
export function authHeaders() {
  const key = apiKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

/** Forget the key (the next request that needs one asks again). */
export function forgetKey() {
  sessionStorage.removeItem(STORAGE_KEY);
  showForgetButton();
}

function showForgetButton() {
  document.getElementById("forget-key").hidden = !apiKey();
}

/** Show the key dialog with the server's message; resolves once the user has entered a key. Concurrent
 * requests that get a 401 share one dialog. */
export function askForKey(message) {
  const rejected = apiKey() !== null;
  sessionStorage.removeItem(STORAGE_KEY);
  const dialog = document.getElementById("key-dialog");
  document.getElementById("key-error").textContent = rejected ? message : "";
  if (!pending) {
    pending = new Promise((resolve) => {
      const form = document.getElementById("key-form");
      form.addEventListener(
        "submit",
        () => {
          sessionStorage.setItem(STORAGE_KEY, form.elements.key.value.trim());
          form.reset();
          pending = null;
          showForgetButton();
          resolve();
        },
        { once: true },
      );
    });
    dialog.showModal();
  }
  return pending;
}

document.getElementById("key-dialog").addEventListener("cancel", (event) => event.preventDefault());
document.getElementById("forget-key").addEventListener("click", () => {
  forgetKey();
  location.reload();
});
showForgetButton();
