// A JSON body indented for reading, its tokens as the provider sent them:
// parsing and printing it again (JSON.parse, JSON.stringify) rewrote numbers
// past 2^53 (12345678901234567891 shown as 12345678901234567000), 1.10 as
// 1.1, 1e2 as 100, and kept one of two duplicate keys. Text that is not
// JSON is returned as it came, and so is JSON whose indented form would
// outgrow it: indentation adds two spaces per level to every line, and a
// body of a megabyte, wide and 120 levels deep, came to 127 million
// characters (seconds of drawing, or a blank page: console review, stop 61).

/** Deepest nesting indented; a deeper body is shown as it came. */
const MAX_DEPTH = 64;
/** The indented text may grow to this many times the body, plus `SLACK`
 * (an array of numbers four levels deep grows about six times), and to
 * `MAX_SHOWN` characters at most. */
const MAX_GROWTH = 8;
const SLACK = 64 * 1024;
const MAX_SHOWN = 32 * 1024 * 1024;

export function indentJson(text) {
  try {
    JSON.parse(text);
  } catch (_) {
    return text;
  }
  const budget = Math.min(text.length * MAX_GROWTH + SLACK, MAX_SHOWN);
  const pad = (n) => '\n' + '  '.repeat(n);
  let out = '';
  let depth = 0;
  let inString = false;
  let escaped = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      out += c;
      if (escaped) escaped = false;
      else if (c === '\\') escaped = true;
      else if (c === '"') inString = false;
      continue;
    }
    if (depth > MAX_DEPTH || out.length > budget) return text;
    switch (c) {
      case '"':
        inString = true;
        out += c;
        break;
      case '{':
      case '[': {
        // An empty object or array stays on its line (looked for without
        // copying the rest of the body at every bracket).
        let j = i + 1;
        while (j < text.length && ' \t\n\r'.includes(text[j])) j++;
        if (text[j] === (c === '{' ? '}' : ']')) {
          out += c + text[j];
          i = j;
        } else {
          depth++;
          out += c + pad(depth);
        }
        break;
      }
      case '}':
      case ']':
        depth--;
        out += pad(depth) + c;
        break;
      case ',':
        out += ',' + pad(depth);
        break;
      case ':':
        out += ': ';
        break;
      case ' ':
      case '\t':
      case '\n':
      case '\r':
        break;
      default:
        out += c;
    }
  }
  return out;
}
