//! Just enough YAML to read etcd's own `--config-file`s (see `etcd.conf.yml.sample`):
//! `key: scalar` lines, one level of nested maps (the transport-security tables), block
//! (`- item`) and flow (`[a, b]`, may span lines) lists of scalars, `'…'`/`"…"` quoting,
//! `#` comments, and empty/`null`/`~` values (left unset). Anchors, multi-line strings,
//! flow maps and deeper nesting are refused with a line number.
//!
//! The result is a TOML table so it goes through the same key handling as a TOML file.
//! Unquoted integers become integers (durations in etcd's YAML are nanoseconds); every
//! other scalar stays a string and is parsed by the flag it belongs to.

use toml::{Table, Value};

struct Line<'a> {
    no: usize,
    indent: usize,
    text: &'a str,
}

/// Removes a `#` comment (at line start or after whitespace, outside quotes).
fn strip_comment(line: &str) -> &str {
    let mut quote: Option<char> = None;
    let mut prev_ws = true;
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '#' && prev_ws => return &line[..i],
            None => {}
        }
        prev_ws = c == ' ' || c == '\t';
    }
    line
}

fn scalar(raw: &str, no: usize) -> Result<Option<Value>, String> {
    let s = raw.trim();
    if let Some(inner) = s.strip_prefix('\'') {
        let inner = inner
            .strip_suffix('\'')
            .ok_or_else(|| format!("line {no}: unterminated quoted string"))?;
        return Ok(Some(Value::String(inner.replace("''", "'"))));
    }
    if let Some(inner) = s.strip_prefix('"') {
        let inner = inner
            .strip_suffix('"')
            .ok_or_else(|| format!("line {no}: unterminated quoted string"))?;
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => return Err(format!("line {no}: dangling escape")),
            }
        }
        return Ok(Some(Value::String(out)));
    }
    if s.is_empty() || s == "~" || s == "null" || s == "Null" || s == "NULL" {
        return Ok(None);
    }
    if s.starts_with(['&', '*', '!', '|', '>', '{']) {
        return Err(format!("line {no}: unsupported YAML construct {s:?}"));
    }
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(n) = s.parse::<i64>() {
            return Ok(Some(Value::Integer(n)));
        }
    }
    Ok(Some(Value::String(s.to_string())))
}

/// Splits a flow list body on commas outside quotes.
fn flow_items(body: &str, no: usize) -> Result<Vec<Value>, String> {
    let mut items = Vec::new();
    let mut quote: Option<char> = None;
    let mut start = 0;
    let mut push = |part: &str| -> Result<(), String> {
        if let Some(v) = scalar(part, no)? {
            items.push(v);
        }
        Ok(())
    };
    for (i, c) in body.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == ',' => {
                push(&body[start..i])?;
                start = i + 1;
            }
            None => {}
        }
    }
    push(&body[start..])?;
    Ok(items)
}

fn split_key(text: &str, no: usize) -> Result<(String, &str), String> {
    let (key, rest) = if let Some(k) = text.strip_suffix(':') {
        (k, "")
    } else {
        text.split_once(": ")
            .ok_or_else(|| format!("line {no}: expected \"key: value\", found {text:?}"))?
    };
    let key = key.trim();
    let key = key
        .strip_prefix('\'')
        .and_then(|k| k.strip_suffix('\''))
        .or_else(|| key.strip_prefix('"').and_then(|k| k.strip_suffix('"')))
        .unwrap_or(key);
    if key.is_empty() || key.starts_with('-') && text.starts_with("- ") {
        return Err(format!("line {no}: expected a key, found {text:?}"));
    }
    Ok((key.to_string(), rest.trim()))
}

fn block_list(lines: &[Line<'_>], idx: &mut usize, indent: usize) -> Result<Value, String> {
    let mut items = Vec::new();
    while let Some(l) = lines.get(*idx) {
        if l.indent != indent || !(l.text == "-" || l.text.starts_with("- ")) {
            break;
        }
        if let Some(v) = scalar(&l.text[1..], l.no)? {
            items.push(v);
        }
        *idx += 1;
    }
    Ok(Value::Array(items))
}

fn map(lines: &[Line<'_>], idx: &mut usize, indent: usize, depth: usize) -> Result<Table, String> {
    let mut table = Table::new();
    while let Some(l) = lines.get(*idx) {
        if l.indent < indent {
            break;
        }
        if l.indent > indent {
            return Err(format!("line {}: unexpected indentation", l.no));
        }
        let (key, rest) = split_key(l.text, l.no)?;
        *idx += 1;
        let value = if let Some(body) = rest.strip_prefix('[') {
            // Flow list, possibly continued on following lines.
            let mut text = body.to_string();
            while !text.trim_end().ends_with(']') {
                let next = lines
                    .get(*idx)
                    .ok_or_else(|| format!("line {}: unterminated [ list", l.no))?;
                text.push(' ');
                text.push_str(next.text);
                *idx += 1;
            }
            let body = text.trim_end().strip_suffix(']').unwrap_or(&text);
            Some(Value::Array(flow_items(body, l.no)?))
        } else if !rest.is_empty() {
            scalar(rest, l.no)?
        } else {
            match lines.get(*idx) {
                Some(n) if n.indent >= indent && (n.text == "-" || n.text.starts_with("- ")) => {
                    let list_indent = n.indent;
                    Some(block_list(lines, idx, list_indent)?)
                }
                Some(n) if n.indent > indent => {
                    if depth >= 1 {
                        return Err(format!(
                            "line {}: maps nested this deep are not supported",
                            n.no
                        ));
                    }
                    let child_indent = n.indent;
                    Some(Value::Table(map(lines, idx, child_indent, depth + 1)?))
                }
                _ => None,
            }
        };
        if table.contains_key(&key) {
            return Err(format!("line {}: duplicate key {key:?}", l.no));
        }
        if let Some(v) = value {
            table.insert(key, v);
        }
    }
    Ok(table)
}

/// Parses the YAML subset described in the module docs.
pub(crate) fn parse(text: &str) -> Result<Table, String> {
    let mut lines = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let no = i + 1;
        let content = strip_comment(raw).trim_end();
        let trimmed = content.trim_start();
        if trimmed.is_empty() || trimmed == "---" || trimmed == "..." {
            continue;
        }
        let lead = &content[..content.len() - trimmed.len()];
        if lead.contains('\t') {
            return Err(format!("line {no}: tabs are not allowed for indentation"));
        }
        lines.push(Line {
            no,
            indent: lead.len(),
            text: trimmed,
        });
    }
    let mut idx = 0;
    let first_indent = lines.first().map_or(0, |l| l.indent);
    let table = map(&lines, &mut idx, first_indent, 0)?;
    if let Some(l) = lines.get(idx) {
        return Err(format!("line {}: unexpected content {:?}", l.no, l.text));
    }
    Ok(table)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn subset() {
        let t = parse(
            "# c\nname: 'a''b'\nport: 2379 # trailing\nurl: http://x:1#frag\nempty:\nq: \"x\\\"y\"\n\
             list:\n- a\n- 'b'\nflow: [x, \"y,z\"]\nmulti: [\n  p,\n  q\n]\nsec:\n  k: v\n  n: 5\n  l:\n    - 1\n",
        )
        .unwrap();
        assert_eq!(t["name"].as_str(), Some("a'b"));
        assert_eq!(t["port"].as_integer(), Some(2379));
        assert_eq!(t["url"].as_str(), Some("http://x:1#frag"));
        assert!(!t.contains_key("empty"));
        assert_eq!(t["q"].as_str(), Some("x\"y"));
        assert_eq!(t["list"].as_array().unwrap().len(), 2);
        assert_eq!(t["flow"].as_array().unwrap()[1].as_str(), Some("y,z"));
        assert_eq!(t["multi"].as_array().unwrap().len(), 2);
        let sec = t["sec"].as_table().unwrap();
        assert_eq!(sec["k"].as_str(), Some("v"));
        assert_eq!(sec["n"].as_integer(), Some(5));
        assert_eq!(sec["l"].as_array().unwrap()[0].as_integer(), Some(1));
    }

    #[test]
    fn refusals() {
        for bad in [
            "a: &x 1",
            "a: |\n  text",
            "a:\n  b:\n    c: 1",
            "a: 1\n  b: 2",
            "just text",
            "a: [1, 2",
            "a: 'open",
            "\ta: 1",
            "a: 1\na: 2",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
