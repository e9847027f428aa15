//! The server started in-process through the library (`vato_server::run`),
//! not as a binary: one request proves it serves.

use clap::Parser;
use vato_server::config::Config;

#[tokio::test]
async fn run_serves_a_listener_in_process_and_stops_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let config = Config::parse_from([
        "vato-server",
        "--dev",
        "--data-dir",
        data_dir.to_str().unwrap(),
    ]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(vato_server::run(config, listener, async {
        let _ = stopped.await;
    }));

    let response = reqwest::Client::new()
        .post(format!("http://{address}/api/auth/register/"))
        .json(&serde_json::json!({
            "username": "ana",
            "password": "ana-pass-1",
            "password2": "ana-pass-1",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["user"]["username"], "ana");
    assert!(body["access"].is_string());

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(
        data_dir.join("dev-jwt-secret").exists(),
        "the data dir is the one given"
    );
}
