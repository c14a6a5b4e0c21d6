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
        if path == "/events/stream" {
            // A stream never ends by itself: its status says it reached the route.
            assert_eq!(response.status(), 200, "{shouted} should reach the route {path}");
            continue;
        }
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        assert_ne!(body["error"], "ROUTE_NOT_FOUND", "{shouted} should reach the route {path}");
    }
}

/// The document's methods of a path, upper-case, as `Allow` lists them.
fn documented_methods(doc: &serde_json::Value, path: &str) -> std::collections::BTreeSet<String> {
    let methods = ["get", "put", "post", "delete", "patch"];
    doc["paths"][path]
        .as_object()
        .unwrap()
        .keys()
        .filter(|m| methods.contains(&m.as_str()))
        .map(|m| m.to_uppercase())
        .collect()
}

/// The methods of a response's `Allow`, without the implicit HEAD and OPTIONS.
fn allowed_methods(response: &reqwest::Response) -> std::collections::BTreeSet<String> {
    response.headers()["allow"]
        .to_str()
        .unwrap()
        .split(',')
        .map(|m| m.trim().to_owned())
        .filter(|m| !["HEAD", "OPTIONS"].contains(&m.as_str()))
        .collect()
}

#[tokio::test]
async fn options_and_405_list_exactly_the_documented_methods_of_each_route() {
    let app = spawn_app().await;
    let doc: serde_json::Value = serde_json::from_str(COMMITTED).unwrap();
    for path in doc["paths"].as_object().unwrap().keys() {
        let concrete =
            path.replace("{name}", "x").replace("{version}", "1").replace("{taskId}", "t").replace("{coreName}", "c");
        let documented = documented_methods(&doc, path);
        let options = app.client.request(reqwest::Method::OPTIONS, app.url(&concrete)).send().await.unwrap();
        assert_eq!(options.status(), 204, "OPTIONS {concrete}");
        assert_eq!(allowed_methods(&options), documented, "Allow of OPTIONS {concrete}");
        // A method the route does not have: 405 with the same list.
        let missing = ["PATCH", "DELETE", "PUT", "POST"].into_iter().find(|m| !documented.contains(*m)).unwrap();
        let refused = app.client.request(missing.parse().unwrap(), app.url(&concrete)).send().await.unwrap();
        assert_eq!(refused.status(), 405, "{missing} {concrete}");
        assert_eq!(allowed_methods(&refused), documented, "Allow of the 405 to {missing} {concrete}");
    }
    let nowhere = app.client.request(reqwest::Method::OPTIONS, app.url("/no/such/path")).send().await.unwrap();
    assert_eq!(nowhere.status(), 404, "a path without a route has no methods to offer");
}

#[test]
fn every_cdf_body_is_documented_with_the_cdf_media_type_and_errors_with_the_error_body() {
    let doc: serde_json::Value = serde_json::from_str(COMMITTED).unwrap();
    let cdf = "application/vnd.aws-cdf-v1.0+json";
    for (path, item) in doc["paths"].as_object().unwrap() {
        if ["/health", "/ready"].contains(&path.as_str()) {
            continue;
        }
        for (method, operation) in item.as_object().unwrap() {
            if let Some(content) = operation["requestBody"]["content"].as_object() {
                assert!(content.contains_key(cdf) && content.contains_key("application/json"), "{method} {path} body");
            }
            for (status, response) in operation["responses"].as_object().unwrap() {
                if let Some(content) = response["content"].as_object() {
                    // The event stream is the one body that is not JSON.
                    let expected = if path == "/events/stream" && status == "200" { "text/event-stream" } else { cdf };
                    assert_eq!(content.keys().collect::<Vec<_>>(), [expected], "{method} {path} {status}");
                }
                if status.starts_with(['4', '5']) {
                    assert_eq!(
                        response["content"][cdf]["schema"]["$ref"], "#/components/schemas/ErrorBody",
                        "{method} {path} {status}"
                    );
                }
            }
            for status in ["401", "403", "415", "500", "503"] {
                assert!(operation["responses"][status].is_object(), "{method} {path} documents {status}");
            }
        }
    }
    let link = &doc["paths"]["/coreTasks"]["post"]["responses"]["202"]["links"]["GetCoreTask"];
    assert_eq!(
        link["parameters"]["taskId"], "$response.header.x-taskid",
        "the stateful phase can follow a created task"
    );
}
