//! The OpenAPI document, generated from the handlers.

use utoipa::OpenApi;

use crate::router::api_router;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ggprov",
        description = "Provision and deploy to fleets of AWS IoT Greengrass V2 core devices and their client devices. \
                       Wire-compatible with the CDF greengrass2-provisioning module: request and response bodies use \
                       `application/vnd.aws-cdf-v1.0+json` (`application/json` is accepted too). Every error has the body \
                       `{\"error\": CODE, \"message\": text}`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    tags(
        (name = "Templates", description = "Versioned sets of Greengrass components and their deployment settings"),
        (name = "Core tasks", description = "Provision and delete Greengrass cores in bulk, asynchronously"),
        (name = "Cores", description = "Provisioned cores, their artifacts and live Greengrass status"),
        (name = "Client devices", description = "Provision client devices in bulk and associate them with their core"),
        (name = "Deployment tasks", description = "Roll template versions out to cores: one Greengrass deployment per template version"),
        (name = "Fleet", description = "Desired, reported and failed template versions across the fleet"),
        (name = "Provisioning templates", description = "CDF provisioning templates used to provision cores and devices"),
        (name = "Events", description = "Lifecycle events (what is published to EventBridge)"),
        (name = "Operations", description = "Health, readiness and API documentation"),
    )
)]
struct ApiDoc;

/// The complete OpenAPI document of the API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, api) = api_router().split_for_parts();
    api
}

pub(crate) fn base() -> utoipa::openapi::OpenApi {
    let mut api = ApiDoc::openapi();
    api.info.version = env!("CARGO_PKG_VERSION").to_owned();
    api
}
