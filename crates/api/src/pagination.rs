//! The CDF list conventions: `count` (echoed back as a string) and `exclusiveStart*`, and the
//! `pagination` object of the responses.

use ggprov_domain::pagination::MAX_PAGE_SIZE;
use ggprov_domain::{FieldProblem, PageRequest, ThingName};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;

/// `count` as sent: validated, and kept as text because the CDF API echoes it as a string.
#[derive(Debug, Clone)]
pub(crate) struct Count {
    pub(crate) limit: u32,
    pub(crate) echo: Option<String>,
}

/// Parses `count`: absent means the maximum page; otherwise 1 to 1000.
pub(crate) fn parse_count(count: Option<&str>) -> Result<Count, ApiError> {
    let Some(text) = count else {
        return Ok(Count { limit: MAX_PAGE_SIZE, echo: None });
    };
    match text.parse::<u32>() {
        Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => Ok(Count { limit: n, echo: Some(text.to_owned()) }),
        _ => Err(ApiError::validation(vec![FieldProblem {
            field: "count".into(),
            problem: format!("'{text}' is not a page size; use a whole number from 1 to {MAX_PAGE_SIZE}"),
        }])),
    }
}

impl Count {
    pub(crate) fn page<K>(&self, exclusive_start: Option<K>) -> PageRequest<K> {
        match exclusive_start {
            Some(key) => PageRequest::after(self.limit, key),
            None => PageRequest::first(self.limit),
        }
    }
}

/// The `pagination` object: `count` echoes the request (as a string), `lastEvaluated` holds
/// the key to pass as `exclusiveStart*` for the next page and is present only when one follows.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Pagination<K> {
    /// The requested page size, echoed as a string (CDF compatibility).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) count: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) last_evaluated: Option<K>,
}

impl<K> Pagination<K> {
    /// Form A: `None` (no `pagination` key) when neither part is present.
    pub(crate) fn form_a(count: &Count, last_evaluated: Option<K>) -> Option<Self> {
        (count.echo.is_some() || last_evaluated.is_some()).then(|| Self { count: count.echo.clone(), last_evaluated })
    }
}

/// Paging by thing name: `count` and `exclusiveStartThingName`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct ThingPageQuery {
    /// Page size, 1 to 1000.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub(crate) count: Option<String>,
    /// `pagination.lastEvaluated.thingName` of the previous page.
    #[param(pattern = "^[a-zA-Z0-9:_-]+$", min_length = 1, max_length = 128)]
    pub(crate) exclusive_start_thing_name: Option<String>,
}

impl ThingPageQuery {
    /// The start key, checked.
    pub(crate) fn start(&self) -> Result<Option<ThingName>, ApiError> {
        self.exclusive_start_thing_name
            .as_deref()
            .map(|s| {
                ThingName::parse(s).map_err(|e| {
                    ApiError::validation(vec![FieldProblem {
                        field: "exclusiveStartThingName".into(),
                        problem: e.to_string(),
                    }])
                })
            })
            .transpose()
    }
}

/// `lastEvaluated` of the template list.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LastEvaluatedName {
    pub(crate) name: String,
}

/// `lastEvaluated` of a template's version list.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LastEvaluatedVersion {
    pub(crate) version: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_must_be_1_to_1000() {
        assert_eq!(parse_count(None).unwrap().limit, 1000);
        assert_eq!(parse_count(Some("10")).unwrap().echo.as_deref(), Some("10"));
        for bad in ["0", "-1", "abc", "1001", "1.5", ""] {
            assert_eq!(parse_count(Some(bad)).unwrap_err().status().as_u16(), 400, "{bad}");
        }
    }
}
