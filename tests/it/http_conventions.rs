//! The HTTP conventions of spec/api.md: media types, errors, body limit, CORS, request ids,
//! path tolerance, SigV4 headers, health and readiness.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{CDF, cdf_json, error_of, header, spawn_app, spawn_app_with, template_body};

#[tokio::test]
async fn accept_headers_that_cannot_be_served_get_415() {
    let app = spawn_app().await;
    for accept in ["text/html", "application/vnd.aws-cdf-v2.0+json", "application/xml"] {
        let response = app.client.get(app.url("/templates")).header("accept", accept).send().await.unwrap();
        let (status, code, _) = error_of(response).await;
        assert_eq!((status, code.as_str()), (415, "UNSUPPORTED_MEDIA_TYPE"), "{accept}");
    }
    for accept in [Some(CDF), Some("application/json"), Some("*/*"), Some("text/html, application/json;q=0.9"), None] {
        let mut request = app.client.get(app.url("/templates"));
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "{accept:?}");
        assert_eq!(header(&response, "content-type"), Some(CDF));
    }
}

#[tokio::test]
async fn bodies_must_be_json_media_types() {
    let app = spawn_app().await;
    let body = template_body("typed", &[("aws.greengrass.Cli", "2.4.0")]).to_string();
    for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
        let response = app
            .client
            .post(app.url("/templates"))
            .header("content-type", content_type)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let (status, code, error) = error_of(response).await;
        assert_eq!((status, code.as_str()), (415, "UNSUPPORTED_MEDIA_TYPE"), "{content_type}");
        assert!(error["message"].as_str().unwrap().contains("application/json"), "the message says what to send");
    }
    let response = app.client.post(app.url("/templates")).body(body.clone()).send().await.unwrap();
    assert_eq!(response.status(), 415, "a body without Content-Type is refused, not read as {{}}");
    let response = app
        .client
        .post(app.url("/templates"))
        .header("content-type", "application/json; charset=utf-8")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "application/json with parameters is accepted");
    assert_eq!(app.get("/templates/typed").await.status(), 200);
}

#[tokio::test]
async fn malformed_json_gets_400_with_a_json_error_body() {
    let app = spawn_app().await;
    let response = app.cdf(Method::POST, "/templates").body("{\"name\": \"x\",").send().await.unwrap();
    let (status, code, error) = error_of(response).await;
    assert_eq!((status, code.as_str()), (400, "INVALID_JSON"));
    assert!(error["message"].as_str().unwrap().contains("not valid JSON"));
    let response = app.cdf(Method::POST, "/templates").send().await.unwrap();
    let (status, code, _) = error_of(response).await;
    assert_eq!((status, code.as_str()), (400, "VALIDATION_FAILED"), "an empty body reads as {{}}");
}

#[tokio::test]
async fn bodies_over_1_mib_get_413() {
    let app = spawn_app().await;
    let padding = "x".repeat(1024 * 1024);
    let body =
        json!({"name": "big", "components": [{"key": "aws.greengrass.Cli", "version": "2.4.0"}], "padding": padding});
    let (status, code, _) = error_of(app.post_json("/templates", &body).await).await;
    assert_eq!((status, code.as_str()), (413, "PAYLOAD_TOO_LARGE"));
    assert_eq!(app.get("/templates/big").await.status(), 404);
}

#[tokio::test]
async fn sigv4_and_cdf_headers_on_get_and_delete_are_accepted() {
    let app = spawn_app().await;
    app.create_template("signed", &[("aws.greengrass.Cli", "2.4.0")]).await;
    // `cdf()` sends Authorization: AWS4-HMAC-SHA256, X-Amz-Date and the CDF Content-Type with no body.
    let response =
        app.cdf(Method::GET, "/templates/signed").header("x-amz-security-token", "token").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(app.delete("/templates/signed").await.status(), 204);
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_echoes_the_clients() {
    let app = spawn_app().await;
    let response = app.get("/templates").await;
    let generated = header(&response, "x-request-id").expect("x-request-id").to_owned();
    assert!(!generated.is_empty());
    let response = app.cdf(Method::GET, "/templates/none").header("x-request-id", "trace-me-42").send().await.unwrap();
    assert_eq!(header(&response, "x-request-id"), Some("trace-me-42"));
    let response = app.client.get(app.url("/nowhere")).send().await.unwrap();
    assert!(header(&response, "x-request-id").is_some(), "errors too");
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let app = spawn_app().await;
    let (status, code, _) = error_of(app.get("/nowhere").await).await;
    assert_eq!((status, code.as_str()), (404, "ROUTE_NOT_FOUND"));
    let (status, code, _) = error_of(app.cdf(Method::PATCH, "/templates").send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (405, "METHOD_NOT_ALLOWED"));
}

#[tokio::test]
async fn trailing_slashes_and_letter_case_of_fixed_segments_are_tolerated() {
    let app = spawn_app().await;
    let response = app.post_json("/Templates/", &template_body("Tolerant", &[("aws.greengrass.Cli", "2.4.0")])).await;
    assert_eq!(response.status(), 201);
    let body = cdf_json(app.get("/TEMPLATES/Tolerant/").await).await;
    assert_eq!(body["name"], "Tolerant", "parameters keep their case");
    assert_eq!(app.get("/templates/tolerant").await.status(), 404, "names are case-sensitive");
    assert_eq!(app.get("/templates/Tolerant/Versions/1/").await.status(), 200);
}

#[tokio::test]
async fn head_is_answered_on_get_routes() {
    let app = spawn_app().await;
    let response = app.cdf(Method::HEAD, "/templates").send().await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn cors_is_off_by_default() {
    let app = spawn_app().await;
    let response =
        app.client.get(app.url("/templates")).header("origin", "https://evil.example.com").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "access-control-allow-origin"), None);
    let preflight = app
        .client
        .request(Method::OPTIONS, app.url("/templates"))
        .header("origin", "https://evil.example.com")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&preflight, "access-control-allow-origin"), None);
    assert_eq!(header(&preflight, "access-control-allow-methods"), None);
}

#[tokio::test]
async fn cors_for_any_origin_exposes_the_cdf_headers() {
    let app = spawn_app_with(&[("GGPROV_CORS_ORIGIN", "*")]).await;
    let response =
        app.client.get(app.url("/templates")).header("origin", "https://console.example.com").send().await.unwrap();
    assert_eq!(header(&response, "access-control-allow-origin"), Some("*"));
    let exposed = header(&response, "access-control-expose-headers").unwrap();
    for name in ["location", "x-taskid", "x-name", "x-version", "x-request-id"] {
        assert!(exposed.contains(name), "{name} exposed in {exposed}");
    }
    let error = app.client.get(app.url("/templates")).header("accept", "text/html").send().await.unwrap();
    assert_eq!(header(&error, "access-control-allow-origin"), Some("*"), "errors are readable by browsers too");
}

#[tokio::test]
async fn options_is_a_preflight_answer_even_without_accept() {
    let app = spawn_app_with(&[("GGPROV_CORS_ORIGIN", "*")]).await;
    let response = app
        .client
        .request(Method::OPTIONS, app.url("/templates/anything"))
        .header("origin", "https://console.example.com")
        .header("access-control-request-method", "PUT")
        .header("access-control-request-headers", "content-type,authorization,x-evil")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(header(&response, "access-control-allow-origin"), Some("*"));
    assert!(header(&response, "access-control-allow-methods").unwrap().contains("PUT"));
    let allowed = header(&response, "access-control-allow-headers").unwrap();
    for name in ["content-type", "authorization", "x-api-key", "idempotency-key"] {
        assert!(allowed.split(',').any(|h| h == name), "{name} allowed: {allowed}");
    }
    assert!(!allowed.contains("x-evil"), "requested headers are not echoed: {allowed}");
    assert_eq!(
        header(&response, "access-control-allow-methods"),
        Some("GET,HEAD,PUT,DELETE,OPTIONS"),
        "the route's own methods"
    );
    let bare = app.client.request(Method::OPTIONS, app.url("/templates")).send().await.unwrap();
    assert_eq!(bare.status(), 204, "the original crashed with 500 here");
    assert_eq!(header(&bare, "allow"), Some("POST,GET,HEAD,OPTIONS"));
}

#[tokio::test]
async fn cors_can_be_limited_to_listed_origins_or_disabled() {
    let app = spawn_app_with(&[("GGPROV_CORS_ORIGIN", "https://console.example.com")]).await;
    let allowed =
        app.client.get(app.url("/templates")).header("origin", "https://console.example.com").send().await.unwrap();
    assert_eq!(header(&allowed, "access-control-allow-origin"), Some("https://console.example.com"));
    let other =
        app.client.get(app.url("/templates")).header("origin", "https://evil.example.com").send().await.unwrap();
    assert_eq!(header(&other, "access-control-allow-origin"), None);

    let disabled = spawn_app_with(&[("GGPROV_CORS_ORIGIN", "")]).await;
    let response = disabled
        .client
        .get(disabled.url("/templates"))
        .header("origin", "https://console.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&response, "access-control-allow-origin"), None);
}

#[tokio::test]
async fn a_configured_base_path_is_removed_before_routing() {
    let app = spawn_app_with(&[("GGPROV_BASE_PATH", "/prod")]).await;
    assert_eq!(
        app.post_json("/prod/templates", &template_body("based", &[("aws.greengrass.Cli", "2.4.0")])).await.status(),
        201
    );
    assert_eq!(app.get("/prod/templates/based").await.status(), 200);
    assert_eq!(app.get("/templates/based").await.status(), 200, "paths without the base path still work");
}

#[tokio::test]
async fn health_and_readiness_answer_outside_the_media_type_rule() {
    let app = spawn_app().await;
    let health = app.client.get(app.url("/health")).header("accept", "text/html").send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = app.client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body, json!({"status": "ready", "checks": {"store": "ok"}}));
}
