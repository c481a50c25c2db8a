//! What the YAML parser must not see, and where its documents start:
//! bytes that are not UTF-8; flow collections (`[[[[…`, `{a: {a: …`)
//! nested so deep that a parser spends its time on them before its depth
//! limit ([`MAX_DEPTH`]) refuses them (libyaml's scanner, under
//! serde_yaml, slowed down quadratically: 100,000 levels took a minute);
//! and the `---` lines that split a stream into documents, so that each
//! document is parsed on its own and one that fails costs only itself.

use std::borrow::Cow;

use serde_json::Value;

/// How deep the YAML parser lets collections nest: serde-saphyr's own
/// default. Kubernetes objects nest about 10 deep; serde_yaml allowed 128,
/// but serde-saphyr and serde_json's `Value` recurse per level, and 100
/// levels overflow a 2 MiB thread stack in a debug build (64 fit).
pub(super) const MAX_DEPTH: usize = 64;

/// Deeper flow nesting than this is refused before parsing, without
/// scanning it: four times [`MAX_DEPTH`], so every document the parser
/// would accept passes (and those in between get the parser's error). Brackets inside quoted strings count too (the check does not
/// parse), which only matters for strings with hundreds of unclosed
/// brackets.
pub(super) const MAX_FLOW_DEPTH: usize = 256;

/// Stands for a document that was too deep; [`too_deep`] recognises it.
const TOO_DEEP_MARKER: &str = "nftopo-document-nested-too-deep";

/// The text as UTF-8; invalid bytes become U+FFFD (and `true` is
/// returned), so that only the objects that hold them are lost (see
/// [`replaced_field`]).
pub(super) fn decode(bytes: &[u8]) -> (Cow<'_, str>, bool) {
    match String::from_utf8_lossy(bytes) {
        Cow::Borrowed(s) => (Cow::Borrowed(s), false),
        Cow::Owned(s) => (Cow::Owned(s), true),
    }
}

/// The first field (as `metadata.annotations["a"]`, `spec.ports[0].name`)
/// whose key or value holds U+FFFD, or `document` for the object's own
/// value.
pub(super) fn replaced_field(value: &Value) -> Option<String> {
    fn walk(value: &Value, path: &mut String) -> bool {
        match value {
            Value::String(s) => s.contains('\u{FFFD}'),
            Value::Array(items) => items.iter().enumerate().any(|(i, item)| {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                let found = walk(item, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            Value::Object(map) => map.iter().any(|(k, v)| {
                let len = path.len();
                let simple = !k.is_empty()
                    && k.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if simple {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(k);
                } else {
                    path.push_str(&format!("[{k:?}]"));
                }
                let found = k.contains('\u{FFFD}') || walk(v, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            _ => false,
        }
    }
    let mut path = String::new();
    walk(value, &mut path).then(|| {
        if path.is_empty() {
            "document".to_string()
        } else {
            path
        }
    })
}

/// `text` with every YAML document whose flow collections nest deeper
/// than [`MAX_FLOW_DEPTH`] replaced by a marker scalar (keeping its line
/// count, so later documents keep their numbers and line numbers).
/// Documents are split at `---` lines, as YAML does.
pub(super) fn flatten_deep(text: &str) -> Cow<'_, str> {
    let mut out: Option<String> = None;
    let mut start = 0;
    for (i, end) in document_ends(text).enumerate() {
        let body = &text[start..end];
        // Keep the `---` line that opens the document (all but the first).
        let (head, body) = match i {
            0 => ("", body),
            _ => body.split_at(body.find('\n').map_or(body.len(), |n| n + 1)),
        };
        if flow_depth(body) > MAX_FLOW_DEPTH {
            let out = out.get_or_insert_with(|| text[..start].to_string());
            out.push_str(head);
            out.push_str(TOO_DEEP_MARKER);
            let lines = body.matches('\n').count().max(1);
            out.extend(std::iter::repeat_n('\n', lines));
        } else if let Some(out) = &mut out {
            out.push_str(head);
            out.push_str(body);
        }
        start = end;
    }
    match out {
        Some(s) => Cow::Owned(s),
        None => Cow::Borrowed(text),
    }
}

/// Whether a parsed document is the stand-in for one that was too deep.
pub(super) fn too_deep(value: &Value) -> bool {
    value.as_str() == Some(TOO_DEEP_MARKER)
}

/// The documents of a YAML stream, each with the `---` line that opens
/// it, split as YAML does: at every line that is `---` alone or followed
/// by a space or tab (a line no scalar may hold at column 0). Text before
/// the first `---` that holds nothing but comments and directives
/// (`%YAML 1.2`) is not a document of its own: it goes with the first one.
/// Each comes with the number of lines before it, so that errors can
/// name lines of the file.
pub(super) fn documents(text: &str) -> impl Iterator<Item = (usize, &str)> + '_ {
    let (mut start, mut lines) = (0, 0);
    let mut ends = document_ends(text).peekable();
    // A leading part without content and without a marker (comments,
    // directives) joins the next document.
    if let Some(&first) = ends.peek() {
        let head = &text[..first];
        if first < text.len() && !head.lines().any(is_marker) && !has_content(head) {
            ends.next();
        }
    }
    ends.map(move |end| {
        let document = &text[start..end];
        let before = lines;
        lines += document.matches('\n').count();
        start = end;
        (before, document)
    })
}

/// Whether a document holds anything but blank lines, comments,
/// directives and document markers.
pub(super) fn has_content(document: &str) -> bool {
    document.lines().any(|line| {
        if line.starts_with('%') {
            return false;
        }
        let rest = match line.strip_prefix("---") {
            Some(rest) if is_marker(line) => rest,
            _ => line,
        };
        let rest = rest.trim();
        !(rest.is_empty() || rest.starts_with('#') || rest == "...")
    })
}

/// Whether a line (without its newline) opens a document: `---` alone or
/// followed by a space or tab.
fn is_marker(line: &str) -> bool {
    line.strip_prefix("---")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r']))
}

/// Byte offsets where each document ends: before every line that is
/// `---` alone or followed by a space or tab, and at the end.
fn document_ends(text: &str) -> impl Iterator<Item = usize> + '_ {
    let mut offset = 0;
    text.split_inclusive('\n')
        .filter_map(move |line| {
            let at = offset;
            offset += line.len();
            (is_marker(line.trim_end_matches('\n')) && at > 0).then_some(at)
        })
        .chain(std::iter::once(text.len()))
}

/// The deepest nesting of `[`/`{` (closed by `]`/`}`), counting every
/// bracket.
fn flow_depth(text: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    for b in text.bytes() {
        match b {
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_deep_document_is_replaced_and_lines_are_kept() {
        let deep = format!("a: {}{}\n", "[".repeat(300), "]".repeat(300));
        let text = format!("kind: A\n---\n{deep}---\nkind: C\n");
        let flat = flatten_deep(&text);
        assert_eq!(flat.lines().count(), text.lines().count(), "{flat}");
        assert_eq!(
            flat,
            format!("kind: A\n---\n{TOO_DEEP_MARKER}\n---\nkind: C\n")
        );
        let shallow = format!("a: {}{}\n", "[".repeat(200), "]".repeat(200));
        assert!(matches!(flatten_deep(&shallow), Cow::Borrowed(_)));
    }

    #[test]
    fn a_deep_first_document_is_replaced_too() {
        let text = format!("{}\n---\nkind: B\n", "{a: ".repeat(1000));
        let flat = flatten_deep(&text);
        assert_eq!(flat, format!("{TOO_DEEP_MARKER}\n---\nkind: B\n"));
    }

    #[test]
    fn documents_are_split_at_their_marker_lines() {
        let split = |text| documents(text).map(|(_, d)| d).collect::<Vec<_>>();
        assert_eq!(split("a: 1\n"), ["a: 1\n"]);
        assert_eq!(
            split("a: 1\n---\nb: 2\n--- c\n"),
            ["a: 1\n", "---\nb: 2\n", "--- c\n"]
        );
        assert_eq!(
            split("# head\n%YAML 1.2\n---\na: 1\n---\n# empty\n---\nb: 2\n"),
            [
                "# head\n%YAML 1.2\n---\na: 1\n",
                "---\n# empty\n",
                "---\nb: 2\n"
            ],
            "a leading comment is not a document; an empty one between markers is"
        );
        assert_eq!(
            split("---\n# none\n---\na: 1\n"),
            ["---\n# none\n", "---\na: 1\n"]
        );
        assert_eq!(
            split("a: |\n  ---\n  x\nb: ---x\n"),
            ["a: |\n  ---\n  x\nb: ---x\n"],
            "indented or glued markers do not split"
        );
        let offsets: Vec<usize> = documents("a\n---\nb\nc\n---\nd\n")
            .map(|(n, _)| n)
            .collect();
        assert_eq!(offsets, [0, 1, 4]);
        assert!(!has_content("---\n# c\n...\n\n"));
        assert!(has_content("--- {a: 1}\n"));
    }

    #[test]
    fn replaced_bytes_are_found_with_their_field() {
        let (text, lossy) = decode(b"a: {b: [x, \"y\xff\"]}\n");
        assert!(lossy);
        let value: Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(replaced_field(&value).as_deref(), Some("a.b[1]"));
        let value: Value = serde_json::json!({"metadata": {"annotations": {"k/\u{FFFD}": "v"}}});
        assert_eq!(
            replaced_field(&value).as_deref(),
            Some("metadata.annotations[\"k/\u{FFFD}\"]")
        );
        assert_eq!(replaced_field(&serde_json::json!({"a": 1})), None);
    }
}
