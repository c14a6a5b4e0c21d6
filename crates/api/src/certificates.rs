//! The certificate inventory and revocation (ggprov extension): `GET /certificates/expiring`,
//! `GET /certificates/{certificateId}`, `POST /certificates/{certificateId}/revoke`,
//! `POST /certificates/revoke` (by thing) and `GET /fleet/certificates`.

use axum::extract::State;
use axum::http::StatusCode;
use ggprov_domain::certificate_service::{
    CaView, CertificateError, CertificateSummary, DeviceCsr, DeviceRotation, RevocationOutcome,
};
use ggprov_domain::certificates::{CertificateEntry, CertificateInfo, ThingKind, parse_within};
use ggprov_domain::{Problems, ThingName, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody};
use crate::extract::{Path, Query};
use crate::media::{Cdf, CdfJson};
use crate::pagination::{Pagination, parse_count};
use crate::state::AppState;

const TAG: &str = "Certificates";

/// The most things one bulk revocation names.
const MAX_REVOKE: usize = 1000;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_expiring_certificates))
        .routes(routes!(get_certificate))
        .routes(routes!(revoke_certificate))
        .routes(routes!(revoke_certificates_of_things))
        .routes(routes!(get_fleet_certificates))
        .routes(routes!(list_cas))
        .routes(routes!(delete_ca))
        .routes(routes!(rotate_device_certificate))
        .routes(routes!(confirm_device_certificate))
}

/// `POST /devices/{name}/certificateRotation`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct DeviceCsrBody {
    /// The CSR the device made for its new key (PEM); the key stays on the device.
    #[schema(required, nullable = false, min_length = 1, max_length = 16384)]
    csr: Option<String>,
    /// The CA that signs it (default: the default CA).
    #[schema(nullable = false)]
    ca_id: Option<String>,
    /// Validity in days (default: as long as the old certificate).
    #[schema(nullable = false, minimum = 1, maximum = 36500)]
    days_expiry: Option<u32>,
    /// When the old certificate goes: `afterConfirm` (default: when the device confirms),
    /// `immediately`, `never`.
    #[schema(nullable = false)]
    revoke_old: Option<ggprov_domain::rotation::RevokeOld>,
}

impl crate::body_schema::BodySchema for DeviceCsrBody {
    const SCHEMA: Option<&'static str> = Some("DeviceCsrBody");
}

fn device_name(name: &str) -> Result<ThingName, ApiError> {
    ThingName::parse(name)
        .map_err(|_| ApiError::not_found("DEVICE_NOT_FOUND", format!("client device '{name}' does not exist")))
}

/// A client device's new certificate for the CSR it sends (its key never leaves it): signed,
/// registered and attached next to the old one with the same policies. The old one goes when
/// the device confirms (`afterConfirm`, the default), at once, or never. Sending the same CSR
/// again answers the same certificate.
#[utoipa::path(
    post, path = "/devices/{name}/certificateRotation", tag = TAG, operation_id = "rotateDeviceCertificate",
    params(("name" = String, Path, description = "Client device (thing) name")),
    request_body(content((DeviceCsrBody = "application/vnd.aws-cdf-v1.0+json"), (DeviceCsrBody = "application/json"))),
    responses(
        (status = 200, body = DeviceRotation, content_type = "application/vnd.aws-cdf-v1.0+json"),
        (status = 400, description = "No CSR, a CSR that cannot be signed, an unknown CA", body = ErrorBody),
        (status = 404, description = "No such client device", body = ErrorBody),
        (status = 409, description = "CHANGED_CONCURRENTLY: other requests kept changing the device's certificate; send again. CERTIFICATE_REVOKED: the device's certificate was revoked; provision it again", body = ErrorBody),
    )
)]
pub(crate) async fn rotate_device_certificate(
    State(state): State<AppState>,
    Path(name): Path<String>,
    CdfJson(body): CdfJson<DeviceCsrBody>,
) -> Result<Cdf<DeviceRotation>, ApiError> {
    let name = device_name(&name)?;
    let request = DeviceCsr {
        csr: body.csr.unwrap_or_default(),
        ca_id: body.ca_id,
        days_expiry: body.days_expiry,
        revoke_old: body.revoke_old,
    };
    Ok(Cdf(state.certificates.rotate_device(&name, request).await?))
}

/// The device runs with its new certificate: the old one is deactivated, detached and deleted,
/// and the inventory names the new one (a `Certificate Rotated` event).
#[utoipa::path(
    post, path = "/devices/{name}/certificateRotation/confirm", tag = TAG, operation_id = "confirmDeviceCertificate",
    params(("name" = String, Path, description = "Client device (thing) name")),
    responses(
        (status = 200, body = DeviceRotation, content_type = "application/vnd.aws-cdf-v1.0+json"),
        (status = 404, description = "No such client device", body = ErrorBody),
        (status = 409, description = "NOTHING_TO_CONFIRM: no new certificate waits; CHANGED_CONCURRENTLY: send again", body = ErrorBody),
    )
)]
pub(crate) async fn confirm_device_certificate(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Cdf<DeviceRotation>, ApiError> {
    let name = device_name(&name)?;
    Ok(Cdf(state.certificates.confirm_device(&name).await?))
}

/// `GET /certificateAuthorities`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CaList {
    certificate_authorities: Vec<CaView>,
}

/// The CAs ggprov signs with (`ggprov ca create|import` on the embedded default; IoT + SSM on
/// AWS), which is the default, and how many ACTIVE certificates each signs.
#[utoipa::path(
    get, path = "/certificateAuthorities", tag = TAG, operation_id = "listCertificateAuthorities",
    responses((status = 200, body = CaList, content_type = "application/vnd.aws-cdf-v1.0+json"))
)]
pub(crate) async fn list_cas(State(state): State<AppState>) -> Result<Cdf<CaList>, ApiError> {
    Ok(Cdf(CaList { certificate_authorities: state.certificates.cas().await? }))
}

/// Forgets a CA: refused while it signs ACTIVE certificates (409 `CA_IN_USE` with the count)
/// or is the default (409 `CA_IS_DEFAULT`).
#[utoipa::path(
    delete, path = "/certificateAuthorities/{caId}", tag = TAG, operation_id = "deleteCertificateAuthority",
    params(("caId" = String, Path, description = "CA id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such CA", body = ErrorBody),
        (status = 409, description = "CA_IN_USE or CA_IS_DEFAULT", body = ErrorBody),
    )
)]
pub(crate) async fn delete_ca(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    state.certificates.delete_ca(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

impl From<CertificateError> for ApiError {
    fn from(err: CertificateError) -> Self {
        let message = err.to_string();
        match err {
            CertificateError::NotFound(_) => Self::not_found("CERTIFICATE_NOT_FOUND", message),
            CertificateError::UnknownThing(_) => Self::not_found("THING_NOT_FOUND", message),
            CertificateError::NoCertificate(_) => Self::not_found("CERTIFICATE_NOT_FOUND", message),
            CertificateError::Cloud { source, .. } if source.is_transient() => Self::unavailable(message, source),
            CertificateError::Cloud { .. } => Self::new(StatusCode::CONFLICT, "REVOCATION_REFUSED", message),
            CertificateError::Invalid { field, problem } => {
                Self::validation(vec![ggprov_domain::FieldProblem { field: field.to_owned(), problem }])
            }
            CertificateError::NothingToConfirm(_) => Self::new(StatusCode::CONFLICT, "NOTHING_TO_CONFIRM", message),
            CertificateError::Revoked { .. } => Self::new(StatusCode::CONFLICT, "CERTIFICATE_REVOKED", message),
            CertificateError::CaNotFound(_) => Self::not_found("CA_NOT_FOUND", message),
            CertificateError::CaSource(source) if source.is_transient() => Self::unavailable(message, source),
            CertificateError::CaSource(_) => Self::new(StatusCode::CONFLICT, "CA_CHANGE_REFUSED", message),
            CertificateError::CaInUse { .. } => Self::new(StatusCode::CONFLICT, "CA_IN_USE", message),
            CertificateError::CaIsDefault(_) => Self::new(StatusCode::CONFLICT, "CA_IS_DEFAULT", message),
            CertificateError::Store(ggprov_domain::ports::StoreError::Conflict) => Self::new(
                StatusCode::CONFLICT,
                "CHANGED_CONCURRENTLY",
                "another request kept changing this thing's certificate; send the request again".to_owned(),
            ),
            CertificateError::Store(store) => store.into(),
        }
    }
}

/// A certificate and the thing that holds it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CertificateResource {
    #[schema(example = "core-0001")]
    thing_name: String,
    /// `core` or `device`.
    thing_kind: ThingKind,
    #[serde(flatten)]
    certificate: CertificateInfo,
}

impl From<CertificateEntry> for CertificateResource {
    fn from(e: CertificateEntry) -> Self {
        Self { thing_name: e.thing_name.as_str().to_owned(), thing_kind: e.thing_kind, certificate: e.certificate }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct ExpiringQuery {
    /// How far ahead: days (`30d`, or a bare number of days) or hours (`12h`); default `30d`.
    /// Certificates that have expired already are included.
    #[param(pattern = "^[0-9]{1,9}[dh]?$", example = "30d")]
    within: Option<String>,
    /// Page size, 1 to 1000 (default 1000).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    count: Option<String>,
    /// `pagination.lastEvaluated.notAfter` of the previous page (with `exclusiveStartCertificateId`).
    #[param(format = DateTime, pattern = "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$")]
    exclusive_start_not_after: Option<String>,
    /// `pagination.lastEvaluated.certificateId` of the previous page.
    #[param(pattern = "^[0-9a-f]{1,64}$")]
    exclusive_start_certificate_id: Option<String>,
}

/// Where the next page starts.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LastEvaluatedCertificate {
    #[schema(value_type = String)]
    not_after: Timestamp,
    certificate_id: String,
}

/// `GET /certificates/expiring`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ExpiringList {
    /// ACTIVE certificates ending before this instant, soonest first.
    #[schema(value_type = String)]
    before: Timestamp,
    /// How many there are in all (every page).
    total: i64,
    certificates: Vec<CertificateResource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pagination: Option<Pagination<LastEvaluatedCertificate>>,
}

/// ACTIVE certificates of cores and client devices that end within `within` (default 30 days),
/// expired ones first, soonest first; `total` counts every page.
#[utoipa::path(
    get, path = "/certificates/expiring", tag = TAG, operation_id = "listExpiringCertificates",
    params(ExpiringQuery),
    responses(
        (status = 200, body = ExpiringList, content_type = "application/vnd.aws-cdf-v1.0+json"),
        (status = 400, description = "Invalid duration, page size or start", body = ErrorBody),
    )
)]
pub(crate) async fn list_expiring_certificates(
    State(state): State<AppState>,
    Query(query): Query<ExpiringQuery>,
) -> Result<Cdf<ExpiringList>, ApiError> {
    let mut problems = Problems::new();
    let within = match parse_within(query.within.as_deref().unwrap_or("30d")) {
        Ok(ms) => ms,
        Err(problem) => {
            problems.add("within", problem);
            0
        }
    };
    let start = match (&query.exclusive_start_not_after, &query.exclusive_start_certificate_id) {
        (None, None) => None,
        (Some(_), Some(id))
            if id.is_empty()
                || id.len() > 64
                || !id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            problems.add(
                "exclusiveStartCertificateId",
                "must be a certificate id (up to 64 lowercase hex digits); pass pagination.lastEvaluated.certificateId as it came",
            );
            None
        }
        (Some(at), Some(id)) => match at.parse::<Timestamp>() {
            Ok(at) => Some((at, id.clone())),
            Err(_) => {
                problems.add(
                    "exclusiveStartNotAfter",
                    format!("'{at}' is not a timestamp; pass pagination.lastEvaluated.notAfter as it came"),
                );
                None
            }
        },
        _ => {
            problems.add(
                "exclusiveStartNotAfter",
                "give exclusiveStartNotAfter and exclusiveStartCertificateId together (pagination.lastEvaluated)",
            );
            None
        }
    };
    if !problems.is_empty() {
        return Err(ApiError::validation(problems.into_vec()));
    }
    let count = parse_count(query.count.as_deref())?;
    let result = state.certificates.expiring(within, count.page(start)).await?;
    let last = result
        .page
        .last_evaluated
        .map(|(not_after, certificate_id)| LastEvaluatedCertificate { not_after, certificate_id });
    Ok(Cdf(ExpiringList {
        before: result.before,
        total: result.total,
        certificates: result.page.items.into_iter().map(CertificateResource::from).collect(),
        pagination: Pagination::form_a(&count, last),
    }))
}

/// A certificate ggprov recorded for a core or client device (revoked ones included).
#[utoipa::path(
    get, path = "/certificates/{certificateId}", tag = TAG, operation_id = "getCertificate",
    params(("certificateId" = String, Path, description = "AWS IoT certificate id")),
    responses(
        (status = 200, body = CertificateResource, content_type = "application/vnd.aws-cdf-v1.0+json"),
        (status = 404, description = "No such certificate in the inventory", body = ErrorBody),
    )
)]
pub(crate) async fn get_certificate(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Cdf<CertificateResource>, ApiError> {
    Ok(Cdf(state.certificates.get(&id).await?.into()))
}

/// Revokes a certificate at once: AWS IoT sets it `REVOKED` (it can never be activated again)
/// and it is detached from its thing; the record is kept with `status: REVOKED` and a
/// `Certificate Revoked` event is sent. Revoking it again answers the same.
#[utoipa::path(
    post, path = "/certificates/{certificateId}/revoke", tag = TAG, operation_id = "revokeCertificate",
    params(("certificateId" = String, Path, description = "AWS IoT certificate id")),
    responses(
        (status = 200, body = CertificateResource, content_type = "application/vnd.aws-cdf-v1.0+json"),
        (status = 404, description = "No such certificate in the inventory", body = ErrorBody),
        (status = 409, description = "AWS IoT refused the revocation", body = ErrorBody),
    )
)]
pub(crate) async fn revoke_certificate(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Cdf<CertificateResource>, ApiError> {
    Ok(Cdf(state.certificates.revoke(&id).await?.into()))
}

/// `POST /certificates/revoke`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RevokeThingsBody {
    /// Cores or client devices whose certificate to revoke, 1 to 1000 names (a repeated name
    /// gets one outcome).
    #[schema(required, nullable = false, min_items = 1, max_items = 1000, value_type = Option<Vec<crate::deployment_tasks::ThingNameText>>, example = json!(["core-0001"]))]
    thing_names: Option<Vec<String>>,
}

impl crate::body_schema::BodySchema for RevokeThingsBody {
    const SCHEMA: Option<&'static str> = Some("RevokeThingsBody");
}

/// `POST /certificates/revoke`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RevocationResults {
    /// One per thing, in the order given.
    results: Vec<RevocationOutcome>,
}

/// Revokes the current certificate of each thing named, as `POST /certificates/{id}/revoke`
/// does; each thing gets its outcome (`REVOKED`, or `FAILED` with the reason).
#[utoipa::path(
    post, path = "/certificates/revoke", tag = TAG, operation_id = "revokeCertificatesOfThings",
    request_body(content((RevokeThingsBody = "application/vnd.aws-cdf-v1.0+json"), (RevokeThingsBody = "application/json"))),
    responses(
        (status = 200, body = RevocationResults, content_type = "application/vnd.aws-cdf-v1.0+json"),
        (status = 400, description = "No names, too many, or an invalid name", body = ErrorBody),
    )
)]
pub(crate) async fn revoke_certificates_of_things(
    State(state): State<AppState>,
    CdfJson(body): CdfJson<RevokeThingsBody>,
) -> Result<Cdf<RevocationResults>, ApiError> {
    let mut problems = Problems::new();
    let names = body.thing_names.unwrap_or_default();
    if names.is_empty() || names.len() > MAX_REVOKE {
        problems.add("thingNames", format!("give 1 to {MAX_REVOKE} thing names (got {})", names.len()));
    }
    let mut things = Vec::with_capacity(names.len());
    let mut seen = std::collections::BTreeSet::new();
    for (i, name) in names.iter().enumerate() {
        match ThingName::parse(name) {
            // Revoking twice is revoking once: a repeated name gets one outcome.
            Ok(thing) if !seen.insert(thing.clone()) => {}
            Ok(thing) => things.push(thing),
            Err(err) => problems.add(format!("thingNames[{i}]"), err.to_string()),
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::validation(problems.into_vec()));
    }
    Ok(Cdf(RevocationResults { results: state.certificates.revoke_things(&things).await? }))
}

/// ACTIVE certificates of cores and client devices by expiry bucket (expired, within 7 days,
/// 7 to 30, 30 to 90, later), in all and per CA: exact, counted in one consistent read.
#[utoipa::path(
    get, path = "/fleet/certificates", tag = TAG, operation_id = "getFleetCertificates",
    responses((status = 200, body = CertificateSummary, content_type = "application/vnd.aws-cdf-v1.0+json"))
)]
pub(crate) async fn get_fleet_certificates(State(state): State<AppState>) -> Result<Cdf<CertificateSummary>, ApiError> {
    Ok(Cdf(state.certificates.summary().await?))
}
