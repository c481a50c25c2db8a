//! Inputs the `manifest` fuzz target (fuzz/) found, kept as tests.

use super::load_bytes;
use crate::ClusterState;

fn load(bytes: &[u8]) -> (ClusterState, Vec<super::LoadError>) {
    let mut state = ClusterState::default();
    let errors = load_bytes("fuzz.yaml", bytes, &mut state);
    (state, errors)
}

/// An alias to an unknown anchor ends a document early; serde_yaml then
/// read the rest of the stream as documents that start inside a mapping
/// and panicked ("unexpected end of mapping"). Found by fuzzing after the
/// loader went on past failed documents. Each document is now parsed on
/// its own (serde-saphyr), so this is one error and nothing follows it.
#[test]
fn an_unknown_anchor_is_one_error_not_a_panic() {
    let text = b"apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector:\n    app: *wansea-city-api\n  ports:\n  - port: 80\n";
    let (state, errors) = load(text);
    assert!(state.services.is_empty());
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].message.contains("unknown anchor"), "{errors:?}");
}

/// A document that fails (too repetitive, too deep, a key that is not a
/// string) does not stop the later ones.
#[test]
fn documents_after_a_bomb_or_a_deep_one_still_load() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 9].join(", ");
        text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    text.push_str(&format!("---\na: {}{}\n", "[".repeat(500), "]".repeat(500)));
    text.push_str("---\n[a]: b\n");
    text.push_str("---\napiVersion: v1\nkind: Node\nmetadata: {name: node-2}\n");
    let (state, errors) = load(text.as_bytes());
    let documents: Vec<usize> = errors.iter().map(|e| e.document).collect();
    assert_eq!(documents, [1, 2, 3], "{errors:#?}");
    assert!(state.nodes.contains_key("node-2"), "{errors:#?}");
}

/// A syntax error used to end the file (serde_yaml could not find the
/// next document after it); documents are now split before parsing, so
/// only the broken one is lost, and the error names the file's line.
#[test]
fn a_syntax_error_costs_only_its_document() {
    let text = b"apiVersion: v1\nkind: Node\nmetadata: {name: node-1}\n---\nkey: [unclosed\n---\napiVersion: v1\nkind: Node\nmetadata: {name: node-2}\n";
    let (state, errors) = load(text);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].document, 2, "{errors:?}");
    assert!(errors[0].message.contains("line 5"), "{errors:?}");
    assert!(state.nodes.contains_key("node-1"));
    assert!(state.nodes.contains_key("node-2"), "{errors:?}");
}

/// A billion laughs is refused quickly, by the anchor budget.
#[test]
fn an_alias_bomb_is_refused_by_the_budget() {
    let mut text = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 9].join(", ");
        text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    let (_, errors) = load(text.as_bytes());
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].message.starts_with("budget breached"),
        "{errors:?}"
    );
}

/// Collections nested deeper than the parser's limit are one error, on a
/// 2 MiB thread stack (a test thread's, a tokio worker's) in a debug
/// build: with serde-saphyr at a depth limit of 128, 100 block levels
/// overflowed the stack (nft-writer's bad_input test found it).
#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let block = |depth: usize| -> String {
        (0..depth)
            .map(|i| format!("{}k{i}:\n", "  ".repeat(i)))
            .collect()
    };
    let flow = |depth: usize| format!("a: {}{}\n", "[".repeat(depth), "]".repeat(depth));
    let cases = [block(65), block(100), block(1000), flow(65), flow(255)];
    let worker = std::thread::Builder::new().stack_size(2 << 20);
    let messages = worker
        .spawn(move || {
            cases
                .iter()
                .map(|text| {
                    let (_, errors) = load(text.as_bytes());
                    assert_eq!(errors.len(), 1, "{errors:?}");
                    errors[0].message.clone()
                })
                .collect::<Vec<_>>()
        })
        .unwrap()
        .join()
        .expect("no stack overflow");
    for m in messages {
        assert!(
            m.starts_with("budget breached") || m.contains("depth"),
            "{m}"
        );
    }
    let (_, errors) = load(block(60).as_bytes());
    assert_eq!(errors[0].field, "kind", "60 levels parse: {errors:?}");
}
