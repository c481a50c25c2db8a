use std::net::SocketAddr;

use tokio::net::TcpListener;

use super::*;
use crate::run::http::tests::fetch;
use crate::run::http::{serve_with, Handler};

/// A cluster of `n` Services `default/s<i>` with two endpoints each,
/// one on node-1 and one on node-2.
fn state(n: usize) -> ClusterState {
    let mut yaml = String::from(
        "apiVersion: v1\nkind: Node\nmetadata: {name: node-1}\n---\n\
         apiVersion: v1\nkind: Node\nmetadata: {name: node-2}\n",
    );
    for i in 0..n {
        yaml.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: default}}\n\
             spec: {{clusterIP: 10.43.{}.{}, ports: [{{name: http, port: 80, targetPort: 8080}}]}}\n\
             ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {{name: s{i}-a, namespace: default, labels: {{kubernetes.io/service-name: s{i}}}}}\n\
             addressType: IPv4\nports: [{{name: http, port: 8080}}]\n\
             endpoints:\n- {{addresses: [10.42.{}.{}], nodeName: node-1}}\n\
             - {{addresses: [10.42.{}.{}], nodeName: node-2}}\n",
            i / 250,
            i % 250 + 1,
            i / 125,
            (i % 125) * 2 + 1,
            i / 125,
            (i % 125) * 2 + 2,
        ));
    }
    let mut state = ClusterState::default();
    let errors = api_watch::file::load_str("test", &yaml, &mut state);
    assert!(errors.is_empty(), "{errors:?}");
    state
}

/// Serves the debug routes on loopback; a task stands in for the sync
/// loop, answering from `state` (planned when `synced`).
async fn server(state: ClusterState, synced: bool) -> SocketAddr {
    let (handle, mut requests) = channel();
    tokio::spawn(async move {
        let plan = synced.then(|| Arc::new(topology_filter::plan(&state, "node-1")));
        while let Some(r) = requests.recv().await {
            answer(r, &state, None, "node-1", plan.clone());
        }
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let fallback: Handler = Arc::new(|_: &str| Response::not_found());
    tokio::spawn(serve_with(listener, fallback, Some(handle.routes())));
    addr
}

/// Status code and body of a GET of `path`.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let raw = fetch(addr, &format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n")).await;
    let status = raw[9..12].parse().unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(size, 16).unwrap();
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        s = &rest[size + 2..];
    }
}

#[tokio::test]
async fn explain_answers_as_the_command_does_and_404_for_an_unknown_service() {
    let st = state(3);
    let addr = server(st.clone(), true).await;
    let (status, body) = get(addr, "/debug/explain/default/s1").await;
    assert_eq!(status, 200, "{body}");
    // What `nftopo explain --output json` prints for the same state.
    let want = crate::explain::explain(
        &topology_filter::plan(&st, "node-1"),
        "default/s1",
        Output::Json,
    )
    .unwrap();
    assert_eq!(body, want);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ports"][0]["endpoints"].as_array().unwrap().len(), 2);

    let (status, table) = get(addr, "/debug/explain/default/s1?output=table").await;
    assert_eq!(status, 200);
    assert!(
        table.starts_with("default/s1 port 80/tcp (http)"),
        "{table}"
    );

    let (status, body) = get(addr, "/debug/explain/default/nope").await;
    assert_eq!(status, 404);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"], "service default/nope not found");

    let (status, _) = get(addr, "/debug/explain/only-a-name").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn before_the_first_sync_the_answers_say_so() {
    let addr = server(state(1), false).await;
    for path in ["/debug/explain/default/s0", "/debug/plan"] {
        let (status, body) = get(addr, path).await;
        assert_eq!(status, 503, "{path}");
        assert!(body.contains("not synced yet"), "{path}: {body}");
    }
}

/// The streamed plan is the plan's JSON, over many chunks.
#[tokio::test]
async fn the_plan_is_streamed_as_its_json() {
    let st = state(600);
    let addr = server(st.clone(), true).await;
    let (status, body) = get(addr, "/debug/plan").await;
    assert_eq!(status, 200);
    assert!(body.len() > 2 * CHUNK, "{} bytes", body.len());
    let got: serde_json::Value = serde_json::from_str(&body).unwrap();
    let want = serde_json::to_value(topology_filter::plan(&st, "node-1")).unwrap();
    assert_eq!(got, want);
}
