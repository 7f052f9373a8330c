"use strict";
// The page's texts, from the agent's one catalogue (station_agent/texts.py), in the page's language.
const T = JSON.parse(document.documentElement.dataset.texts);

// T[key] with each {name} replaced by vars[name].
function tr(key, vars) {
  let text = T[key];
  if (text === undefined) throw new Error(`no text ${key}`);
  for (const [name, value] of Object.entries(vars || {})) text = text.replaceAll(`{${name}}`, String(value));
  return text;
}
