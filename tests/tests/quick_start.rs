//! The quick start's server answers the seed README's curl.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use goverse::prelude::*;
use goverse_tests::curl_post;
use prost::Message as _;

#[tokio::test]
async fn the_seed_readme_curl_works() {
    let dir = std::env::temp_dir().join(goverse_tests::unique_prefix("quick").replace('/', "_"));
    std::fs::create_dir_all(&dir).expect("dir");
    let (node, gate) = example_counter::serve(
        "127.0.0.1:0".parse().expect("address"),
        &dir.join("state.db"),
    )
    .await
    .expect("serves");
    let url = format!(
        "http://{}/api/v1/objects/call/Counter/my-counter/Add",
        gate.http_address().expect("http")
    );
    let json = curl_post(&url, example_counter::ADD_FIVE_ANY).await;
    let any = STANDARD
        .decode(json["response"].as_str().expect("a base64 response"))
        .expect("base64");
    let any = goverse::types::Any::decode(any.as_slice()).expect("Any");
    assert_eq!(
        Int32Value::decode(any.value.as_ref())
            .expect("Int32Value")
            .value,
        5
    );
    assert_eq!(
        curl_post(&url, r#"{"value": 5}"#).await,
        serde_json::json!({"response": 10})
    );
    gate.shutdown().await;
    node.shutdown().await;
    std::fs::remove_dir_all(&dir).ok();
}
