// A JSON body indented for reading, its tokens as the provider sent them:
// parsing and printing it again (JSON.parse, JSON.stringify) rewrote numbers
// past 2^53 (12345678901234567891 shown as 12345678901234567000), 1.10 as
// 1.1, 1e2 as 100, and kept one of two duplicate keys. Text that is not
// JSON is returned as it came.

export function indentJson(text) {
  try {
    JSON.parse(text);
  } catch (_) {
    return text;
  }
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
    switch (c) {
      case '"':
        inString = true;
        out += c;
        break;
      case '{':
      case '[': {
        // An empty object or array stays on its line.
        const rest = text.slice(i + 1).trimStart();
        if (rest[0] === (c === '{' ? '}' : ']')) {
          out += c + rest[0];
          i = text.length - rest.length;
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
