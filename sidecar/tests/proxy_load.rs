//! A thousand stalled clients (half a request each, held for a few seconds) while well-formed
//! requests keep being served on time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod proxy_support;

use proxy_support::*;
use std::time::{Duration, Instant};
use tokio::{io::AsyncWriteExt, net::TcpStream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_stalled_clients_do_not_stop_well_formed_requests() {
    let mock = Mock::start(|seen| {
        let req: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
        let body = serde_json::json!({"jsonrpc":"2.0","id":req["id"],"result":{}}).to_string();
        respond(200, &[("content-type", "application/json")], body)
    })
    .await;
    let proxy = Proxy::anonymous(&mock.url, "demo/agent-alpha").await;
    let started = Instant::now();
    let mut stalled = Vec::with_capacity(1000);
    for n in 0..1000 {
        let mut socket =
            tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(proxy.addr))
                .await
                .expect("connect within 5 s")
                .unwrap();
        let half: &[u8] = match n % 3 {
            // Half the headers.
            0 => b"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-",
            // Headers, then half the declared body.
            1 => b"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 400\r\n\r\n{\"jsonrpc\":\"2.0\",",
            // Only the TCP connection.
            _ => b"",
        };
        socket.write_all(half).await.unwrap();
        stalled.push(socket);
    }
    let mut worst = Duration::ZERO;
    for id in 0..50 {
        let sent = Instant::now();
        let reply = post(
            &proxy.url(),
            &[],
            &format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.json()["id"], id);
        worst = worst.max(sent.elapsed());
    }
    assert!(
        worst < Duration::from_secs(2),
        "slowest well-formed request: {worst:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the stall stays bounded: {:?}",
        started.elapsed()
    );
    assert_eq!(
        mock.requests().len(),
        50,
        "no stalled request reached the upstream"
    );
    drop(stalled);
    let reply = post(
        &proxy.url(),
        &[],
        r#"{"jsonrpc":"2.0","id":"after","method":"ping"}"#,
    )
    .await;
    assert_eq!(reply.status, 200);
}
