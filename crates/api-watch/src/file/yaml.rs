//! Text into documents: JSON values, or YAML documents parsed one by one.

use super::*;

/// Splits the text into documents and hands each to `each` as soon as it
/// is parsed (or the reason it was not), in order.
/// JSON (one or several concatenated values) is tried first when the text
/// looks like JSON; otherwise, or if that fails, YAML. YAML documents are
/// split at their `---` lines here ([`guard::documents`]) and parsed one
/// by one with serde-saphyr, so a document that fails (a syntax error, an
/// unknown anchor, too deep, too repetitive) costs only itself: the next
/// one is read from its own start. Documents nested deeper than
/// [`guard::MAX_FLOW_DEPTH`] are refused unparsed.
pub(super) fn parse_documents(text: &str, mut each: impl FnMut(Result<Value, String>)) {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        // All or nothing: JSON that fails anywhere is read as YAML.
        let json: Result<Vec<Value>, _> = serde_json::Deserializer::from_str(text)
            .into_iter::<Value>()
            .collect();
        if let Ok(values) = json {
            values.into_iter().map(Ok).for_each(each);
            return;
        }
    }
    let text = guard::flatten_deep(text);
    for (lines_before, document) in guard::documents(&text) {
        each(parse_yaml(document, lines_before));
    }
}

/// One YAML document (its `---` line included) as a JSON value; `null`
/// for a document without content. Errors name lines of the file: the
/// document starts after `lines_before` lines.
pub(super) fn parse_yaml(document: &str, lines_before: usize) -> Result<Value, String> {
    if !guard::has_content(document) {
        return Ok(Value::Null);
    }
    match serde_saphyr::from_str_with_options::<Value>(document, yaml_options()) {
        Ok(value) if guard::too_deep(&value) => Err(format!(
            "collections nested deeper than {} levels; not parsed",
            guard::MAX_FLOW_DEPTH
        )),
        Ok(value) => Ok(value),
        Err(e) => {
            let options = serde_saphyr::render_options! {
                snippets: serde_saphyr::SnippetMode::Off,
                line_offset: lines_before as u64,
            };
            // One line without the snippet already; keep the first line
            // all the same, as every error is one line.
            let message = e.render_with_options(options);
            Err(message.lines().next().unwrap_or("").to_string())
        }
    }
}

/// What the YAML reader accepts. The limits that guard against hostile
/// input stay (nesting depth, aliases and how far they expand: the
/// billion laughs); the ones that cap a document's size are raised so
/// that a `kind: List` of 10,000 Services (`kubectl get -o yaml`) still
/// loads: a document's size is bounded by the file's, and the text is
/// already in memory.
pub(super) fn yaml_options() -> serde_saphyr::Options {
    // Both types are non-exhaustive: set fields on the defaults.
    let mut budget = serde_saphyr::Budget::default();
    budget.max_reader_input_bytes = None;
    budget.max_events = usize::MAX;
    budget.max_nodes = usize::MAX;
    budget.max_total_scalar_bytes = usize::MAX;
    budget.max_documents = usize::MAX;
    // Kubernetes objects nest about 10 deep; deeper is refused before it
    // can overflow the stack (guard::MAX_DEPTH says why 64).
    budget.max_depth = guard::MAX_DEPTH;
    // An anchored node of more than 100,000 events is a bomb, not a
    // manifest (the default, 1,000,000, cost 5 s in a debug build).
    budget.max_recorded_anchor_events = 100_000;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    // YAML 1.2's core schema, as serde_yaml read it: `on`, `yes` and `no`
    // are strings (annotation and label values often are).
    options.strict_booleans = true;
    // One line per error: no source snippet.
    options.with_snippet = false;
    options
}
