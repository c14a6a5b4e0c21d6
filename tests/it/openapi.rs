//! The OpenAPI document: committed copy in sync, served, and every documented CDF route
//! reachable with the path tolerance rules.

use crate::helpers::spawn_app;

const COMMITTED: &str = include_str!("../../openapi/openapi.json");

#[test]
fn committed_openapi_matches_the_code() {
    let generated = ggprov::openapi_json();
    assert!(
        COMMITTED.trim_end() == generated.trim_end(),
        "openapi/openapi.json is out of date; regenerate it with:\n    cargo run -- openapi --out openapi/openapi.json"
    );
}

#[tokio::test]
async fn the_document_and_the_docs_page_are_served_offline() {
    let app = spawn_app().await;
    let served: serde_json::Value =
        app.client.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let committed: serde_json::Value = serde_json::from_str(COMMITTED).unwrap();
    assert_eq!(served, committed);
    let page = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("swagger-ui"));
    let bundle = app.client.get(app.url("/docs/swagger-ui-bundle.js")).send().await.unwrap();
    assert_eq!(bundle.status(), 200, "the UI's JavaScript is embedded, not fetched from a CDN");
}

#[tokio::test]
async fn every_documented_cdf_route_tolerates_trailing_slash_and_case() {
    let app = spawn_app().await;
    let doc: serde_json::Value = serde_json::from_str(COMMITTED).unwrap();
    for path in doc["paths"].as_object().unwrap().keys() {
        if ["/health", "/ready"].contains(&path.as_str()) {
            continue;
        }
        let concrete = path.replace("{name}", "x").replace("{version}", "1");
        let shouted = concrete.replacen(&concrete[1..2], &concrete[1..2].to_uppercase(), 1) + "/";
        let response = app.client.get(app.url(&shouted)).send().await.unwrap();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        assert_ne!(body["error"], "ROUTE_NOT_FOUND", "{shouted} should reach the route {path}");
    }
}
