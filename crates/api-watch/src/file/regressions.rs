//! Inputs the `manifest` fuzz target (fuzz/) found, kept as tests.

use super::load_bytes;
use crate::ClusterState;

fn load(bytes: &[u8]) -> (ClusterState, Vec<super::LoadError>) {
    let mut state = ClusterState::default();
    let errors = load_bytes("fuzz.yaml", bytes, &mut state);
    (state, errors)
}

/// An alias to an unknown anchor ends a document early; serde_yaml then
/// reads the rest of the stream as documents that start inside a mapping
/// and panics ("unexpected end of mapping"). Found by fuzzing after the
/// loader went on past failed documents; it now stops after such errors.
#[test]
fn an_unknown_anchor_is_one_error_not_a_panic() {
    let text = b"apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector:\n    app: *wansea-city-api\n  ports:\n  - port: 80\n";
    let (state, errors) = load(text);
    assert!(state.services.is_empty());
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].message.contains("unknown anchor"), "{errors:?}");
}

/// Errors raised on complete documents do not stop the later ones.
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
