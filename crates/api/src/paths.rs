//! Path normalisation before routing, as the original's Express router matched paths:
//! a trailing slash is ignored, fixed segments match in any letter case (`/Templates`), and an
//! optional base path (API Gateway custom-domain mapping) is removed.

use std::sync::{Arc, OnceLock};

use axum::extract::Request;
use axum::http::Uri;
use axum::http::uri::PathAndQuery;

/// Every CDF route of the published document, `{}` standing for a parameter. Fixed segments
/// of a request path that match one of these shapes (case-insensitively) are rewritten to
/// this spelling; a new route joins by being documented.
fn route_shapes() -> &'static [String] {
    static SHAPES: OnceLock<Vec<String>> = OnceLock::new();
    SHAPES.get_or_init(|| {
        let doc = crate::openapi::openapi();
        doc["paths"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(path, _)| path)
            .filter(|path| !crate::openapi::OPERATIONAL_PATHS.contains(&path.as_str()))
            .map(|path| {
                path.split('/')
                    .map(|segment| if segment.starts_with('{') { "{}" } else { segment })
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .collect()
    })
}

/// Rewrites a request path to the spelling the router expects; `None` if nothing changes.
pub(crate) fn normalize(original: &str, base_path: Option<&str>) -> Option<String> {
    let mut path = original;
    if let Some(base) = base_path {
        let base = base.trim_matches('/');
        let stripped = path.strip_prefix('/').and_then(|rest| {
            let head = rest.get(..base.len())?;
            let tail = &rest[base.len()..];
            (head.eq_ignore_ascii_case(base) && (tail.is_empty() || tail.starts_with('/'))).then_some(tail)
        });
        if let Some(tail) = stripped {
            path = tail;
        }
    }
    let trimmed = path.trim_end_matches('/');
    let segments: Vec<&str> = trimmed.split('/').skip(1).collect();
    let canonical = route_shapes().iter().find_map(|shape| {
        let shape_segments: Vec<&str> = shape.split('/').skip(1).collect();
        (shape_segments.len() == segments.len()
            && shape_segments.iter().zip(&segments).all(|(s, p)| *s == "{}" || s.eq_ignore_ascii_case(p)))
        .then(|| {
            shape_segments
                .iter()
                .zip(&segments)
                .map(|(s, p)| if *s == "{}" { *p } else { *s })
                .fold(String::new(), |acc, seg| acc + "/" + seg)
        })
    });
    // Paths that are no CDF route (the docs pages, unknown paths) keep their spelling, but
    // lose the base path.
    let result = canonical.unwrap_or_else(|| if path.is_empty() { "/".to_owned() } else { path.to_owned() });
    (result != original).then_some(result)
}

/// Applies [`normalize`] to a request's URI, keeping its query string.
pub(crate) fn normalize_request(base_path: Option<Arc<str>>) -> impl Fn(Request) -> Request + Clone {
    move |mut request: Request| {
        let uri = request.uri();
        if let Some(path) = normalize(uri.path(), base_path.as_deref()) {
            let path_and_query = match uri.query() {
                Some(query) => format!("{path}?{query}"),
                None => path,
            };
            if let Ok(path_and_query) = PathAndQuery::try_from(path_and_query) {
                let mut parts = uri.clone().into_parts();
                parts.path_and_query = Some(path_and_query);
                if let Ok(new_uri) = Uri::from_parts(parts) {
                    *request.uri_mut() = new_uri;
                }
            }
        }
        request
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(path: &str) -> String {
        normalize(path, None).unwrap_or_else(|| path.to_owned())
    }

    #[test]
    fn trailing_slashes_and_letter_case_of_fixed_segments() {
        assert_eq!(n("/templates/"), "/templates");
        assert_eq!(n("/Templates/MyTemplate/VERSIONS/2/"), "/templates/MyTemplate/versions/2");
        // Parameters keep their case.
        assert_eq!(n("/TEMPLATES/Versions"), "/templates/Versions");
        // Other paths are left alone: /docs/ must stay /docs/ for the docs page.
        assert_eq!(n("/unknown/Path/"), "/unknown/Path/");
        assert_eq!(n("/docs/"), "/docs/");
        assert_eq!(n("/"), "/");
        assert_eq!(normalize("/templates", None), None);
    }

    #[test]
    fn base_path_is_removed() {
        assert_eq!(normalize("/prod/templates", Some("prod")).as_deref(), Some("/templates"));
        assert_eq!(normalize("/PROD/templates/x", Some("/prod/")).as_deref(), Some("/templates/x"));
        assert_eq!(normalize("/production/templates", Some("prod")), None);
        assert_eq!(normalize("/prod", Some("prod")).as_deref(), Some("/"));
    }
}
