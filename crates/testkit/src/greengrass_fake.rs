//! A Greengrass V2 control-plane fake speaking the real REST-JSON wire format, for the real
//! `aws-sdk-greengrassv2` client (moto has no Greengrass V2). Point the client at it with
//! `AWS_ENDPOINT_URL_GREENGRASSV2`.
//!
//! It keeps core devices, client-device associations, deployments and their per-core
//! executions in memory. Lists answer two entries a page, so callers must follow `nextToken`.
//! Tests play the devices: [`GreengrassFake::register_core`] is a nucleus connecting for the
//! first time, [`GreengrassFake::finish_deployment`] a core reporting a deployment's end.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// Entries per page of every list.
const PAGE: usize = 2;

#[derive(Default)]
struct Fake {
    cores: BTreeMap<String, Value>,
    installed: BTreeMap<String, Vec<(String, String)>>,
    /// core → deployment id → (status, reason)
    executions: BTreeMap<String, BTreeMap<String, (String, Option<String>)>>,
    associations: BTreeMap<String, BTreeSet<String>>,
    /// deployment id → the request as received, plus `deploymentId` and a creation time
    deployments: BTreeMap<String, Value>,
    private_components: BTreeSet<(String, String)>,
    /// Recipes of the components created through `CreateComponentVersion`.
    recipes: BTreeMap<(String, String), Value>,
    /// Things that exist (associations of unknown things fail like AWS's).
    known_things: Option<BTreeSet<String>>,
    calls: BTreeMap<String, u64>,
}

type Shared = Arc<Mutex<Fake>>;

fn now_secs() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert("x-amzn-errortype", HeaderValue::from_str(code).expect("ascii code"));
    (status, headers, Json(json!({ "message": message }))).into_response()
}

fn not_found(message: &str) -> Response {
    error(StatusCode::NOT_FOUND, "ResourceNotFoundException", message)
}

/// One page of `items` after the token (an index) with the next token if more remain.
#[allow(clippy::needless_pass_by_value)]
fn page(items: Vec<Value>, token: Option<&String>) -> (Vec<Value>, Option<String>) {
    let start = token.and_then(|t| t.parse::<usize>().ok()).unwrap_or(0);
    let end = (start + PAGE).min(items.len());
    let next = (end < items.len()).then(|| end.to_string());
    (items.get(start..end).map(<[Value]>::to_vec).unwrap_or_default(), next)
}

fn count(state: &Shared, api: &str) {
    *state.lock().expect("fake lock").calls.entry(api.to_owned()).or_default() += 1;
}

async fn get_core(State(state): State<Shared>, Path(name): Path<String>) -> Response {
    count(&state, "GetCoreDevice");
    match state.lock().expect("fake lock").cores.get(&name) {
        Some(core) => Json(core.clone()).into_response(),
        None => not_found(&format!("core device {name} not found")),
    }
}

async fn delete_core(State(state): State<Shared>, Path(name): Path<String>) -> Response {
    count(&state, "DeleteCoreDevice");
    let mut fake = state.lock().expect("fake lock");
    if fake.cores.remove(&name).is_none() {
        return not_found(&format!("core device {name} not found"));
    }
    fake.installed.remove(&name);
    fake.executions.remove(&name);
    StatusCode::NO_CONTENT.into_response()
}

async fn installed(
    State(state): State<Shared>,
    Path(name): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let fake = state.lock().expect("fake lock");
    if !fake.cores.contains_key(&name) {
        return not_found(&format!("core device {name} not found"));
    }
    let items = fake
        .installed
        .get(&name)
        .into_iter()
        .flatten()
        .map(|(n, v)| json!({"componentName": n, "componentVersion": v, "lifecycleState": "RUNNING", "isRoot": true}))
        .collect();
    let (items, next) = page(items, q.get("nextToken"));
    Json(json!({"installedComponents": items, "nextToken": next})).into_response()
}

async fn effective(
    State(state): State<Shared>,
    Path(name): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let fake = state.lock().expect("fake lock");
    if !fake.cores.contains_key(&name) {
        return not_found(&format!("core device {name} not found"));
    }
    let items = fake
        .executions
        .get(&name)
        .into_iter()
        .flatten()
        .map(|(id, (status, reason))| {
            let deployment = &fake.deployments[id];
            json!({
                "deploymentId": id,
                "deploymentName": deployment["deploymentName"],
                "iotJobId": format!("job-{id}"),
                "targetArn": deployment["targetArn"],
                "coreDeviceExecutionStatus": status,
                "reason": reason,
                "creationTimestamp": deployment["creationTimestamp"],
                "modifiedTimestamp": now_secs(),
            })
        })
        .collect();
    let (items, next) = page(items, q.get("nextToken"));
    Json(json!({"effectiveDeployments": items, "nextToken": next})).into_response()
}

async fn associate(State(state): State<Shared>, Path(core): Path<String>, Json(body): Json<Value>) -> Response {
    count(&state, "BatchAssociateClientDeviceWithCoreDevice");
    let mut fake = state.lock().expect("fake lock");
    if !fake.cores.contains_key(&core) {
        return not_found(&format!("core device {core} not found"));
    }
    let mut errors = Vec::new();
    for entry in body["entries"].as_array().into_iter().flatten() {
        let thing = entry["thingName"].as_str().unwrap_or_default().to_owned();
        if fake.known_things.as_ref().is_some_and(|known| !known.contains(&thing)) {
            errors.push(json!({"thingName": thing, "code": "ResourceNotFoundException", "message": "thing not found"}));
            continue;
        }
        fake.associations.entry(core.clone()).or_default().insert(thing);
    }
    Json(json!({"errorEntries": errors})).into_response()
}

async fn disassociate(State(state): State<Shared>, Path(core): Path<String>, Json(body): Json<Value>) -> Response {
    count(&state, "BatchDisassociateClientDeviceFromCoreDevice");
    let mut fake = state.lock().expect("fake lock");
    for entry in body["entries"].as_array().into_iter().flatten() {
        if let (Some(set), Some(thing)) = (fake.associations.get_mut(&core), entry["thingName"].as_str()) {
            set.remove(thing);
        }
    }
    Json(json!({"errorEntries": []})).into_response()
}

async fn associated(
    State(state): State<Shared>,
    Path(core): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let fake = state.lock().expect("fake lock");
    let items = fake
        .associations
        .get(&core)
        .into_iter()
        .flatten()
        .map(|t| json!({"thingName": t, "associationTimestamp": now_secs()}))
        .collect();
    let (items, next) = page(items, q.get("nextToken"));
    Json(json!({"associatedClientDevices": items, "nextToken": next})).into_response()
}

async fn create_deployment(State(state): State<Shared>, Json(mut body): Json<Value>) -> Response {
    count(&state, "CreateDeployment");
    let Some(target) = body["targetArn"].as_str().map(str::to_owned) else {
        return error(StatusCode::BAD_REQUEST, "ValidationException", "targetArn is required");
    };
    if !target.contains(":thinggroup/") && !target.contains(":thing/") {
        return error(StatusCode::BAD_REQUEST, "ValidationException", "targetArn must be a thing or thing group ARN");
    }
    let id = uuid_like();
    body["deploymentId"] = json!(id);
    body["creationTimestamp"] = json!(now_secs());
    state.lock().expect("fake lock").deployments.insert(id.clone(), body);
    Json(json!({"deploymentId": id, "iotJobId": format!("job-{id}"), "iotJobArn": format!("arn:aws:iot:us-east-1:123456789012:job/job-{id}")}))
        .into_response()
}

async fn list_deployments(State(state): State<Shared>, Query(q): Query<BTreeMap<String, String>>) -> Response {
    let fake = state.lock().expect("fake lock");
    let mut matching: Vec<&Value> =
        fake.deployments.values().filter(|d| q.get("targetArn").is_none_or(|t| d["targetArn"] == *t)).collect();
    matching.sort_by(|a, b| {
        b["creationTimestamp"]
            .as_f64()
            .partial_cmp(&a["creationTimestamp"].as_f64())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    if q.get("historyFilter").map(String::as_str) == Some("LATEST_ONLY") {
        matching.truncate(1);
    }
    let items = matching
        .into_iter()
        .map(|d| {
            json!({
                "targetArn": d["targetArn"], "deploymentId": d["deploymentId"], "deploymentName": d["deploymentName"],
                "creationTimestamp": d["creationTimestamp"], "deploymentStatus": "ACTIVE", "isLatestForTarget": true,
                "revisionId": "1"
            })
        })
        .collect();
    let (items, next) = page(items, q.get("nextToken"));
    Json(json!({"deployments": items, "nextToken": next})).into_response()
}

fn component_parts(arn: &str) -> Option<(&str, &str, &str)> {
    // arn:aws:greengrass:<region>:<account or aws>:components:<name>:versions:<version>
    let rest = arn.strip_prefix("arn:aws:greengrass:")?;
    let mut parts = rest.splitn(3, ':');
    let (_region, owner, tail) = (parts.next()?, parts.next()?, parts.next()?);
    let tail = tail.strip_prefix("components:")?;
    let (name, version) = tail.split_once(":versions:")?;
    Some((owner, name, version))
}

async fn describe_component(State(state): State<Shared>, Path(arn): Path<String>) -> Response {
    count(&state, "DescribeComponent");
    let fake = state.lock().expect("fake lock");
    let Some((owner, name, version)) = component_parts(&arn) else {
        return error(StatusCode::BAD_REQUEST, "ValidationException", "not a component version ARN");
    };
    let exists = if owner == "aws" {
        name.starts_with("aws.greengrass.") && !name.contains("Missing")
    } else {
        fake.private_components.contains(&(name.to_owned(), version.to_owned()))
    };
    if !exists {
        return not_found(&format!("component {name} {version} not found"));
    }
    // The nucleus's recipe has a manifest for Linux on any architecture and one for Windows
    // on amd64; other components list none (any platform).
    let platforms = if name == "aws.greengrass.Nucleus" {
        json!([{"name": "linux", "attributes": {"os": "linux", "architecture": "*"}},
               {"name": "windows", "attributes": {"os": "windows", "architecture": "amd64"}}])
    } else {
        json!([])
    };
    Json(json!({
        "arn": arn, "componentName": name, "componentVersion": version, "creationTimestamp": now_secs(),
        "publisher": if owner == "aws" { "AWS" } else { "account" }, "status": {"componentState": "DEPLOYABLE"}, "platforms": platforms
    }))
    .into_response()
}

async fn list_components(State(state): State<Shared>, Query(q): Query<BTreeMap<String, String>>) -> Response {
    let fake = state.lock().expect("fake lock");
    let names: BTreeSet<&String> = fake.private_components.iter().map(|(n, _)| n).collect();
    let items = names
        .into_iter()
        .map(
            |n| json!({"arn": format!("arn:aws:greengrass:us-east-1:123456789012:components:{n}"), "componentName": n}),
        )
        .collect();
    let (items, next) = page(items, q.get("nextToken"));
    Json(json!({"components": items, "nextToken": next})).into_response()
}

async fn create_component_version(State(state): State<Shared>, Json(body): Json<Value>) -> Response {
    use base64::Engine as _;
    count(&state, "CreateComponentVersion");
    let Some(recipe) = body["inlineRecipe"]
        .as_str()
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            "inlineRecipe must be a base64 JSON or YAML recipe",
        );
    };
    let (Some(name), Some(version)) = (recipe["ComponentName"].as_str(), recipe["ComponentVersion"].as_str()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            "the recipe needs ComponentName and ComponentVersion",
        );
    };
    if recipe["RecipeFormatVersion"] != "2020-01-25" || !recipe["Manifests"].is_array() {
        return error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            "RecipeFormatVersion 2020-01-25 and Manifests are required",
        );
    }
    let key = (name.to_owned(), version.to_owned());
    let mut fake = state.lock().expect("fake lock");
    if fake.private_components.contains(&key) {
        return error(
            StatusCode::CONFLICT,
            "ConflictException",
            &format!("component {name} version {version} already exists"),
        );
    }
    fake.private_components.insert(key.clone());
    fake.recipes.insert(key, recipe.clone());
    Json(json!({
        "arn": format!("arn:aws:greengrass:us-east-1:123456789012:components:{name}:versions:{version}"),
        "componentName": name, "componentVersion": version, "creationTimestamp": now_secs(),
        "status": {"componentState": "DEPLOYABLE", "message": "deployable"}
    }))
    .into_response()
}

async fn delete_component(State(state): State<Shared>, Path(arn): Path<String>) -> Response {
    count(&state, "DeleteComponent");
    let Some((_, name, version)) = component_parts(&arn) else {
        return error(StatusCode::BAD_REQUEST, "ValidationException", "not a component version ARN");
    };
    let key = (name.to_owned(), version.to_owned());
    let mut fake = state.lock().expect("fake lock");
    if !fake.private_components.remove(&key) {
        return not_found(&format!("component {name} {version} not found"));
    }
    fake.recipes.remove(&key);
    StatusCode::NO_CONTENT.into_response()
}

fn uuid_like() -> String {
    let n: u128 = fastrand::u128(..);
    let h = format!("{n:032x}");
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// A running fake and its state.
#[derive(Clone)]
pub struct GreengrassFake {
    state: Shared,
    pub addr: SocketAddr,
}

impl GreengrassFake {
    /// Serves the fake on a free loopback port until the runtime ends.
    pub async fn start() -> Self {
        let state: Shared = Arc::default();
        let app = axum::Router::new()
            .route("/greengrass/v2/coreDevices/{name}", get(get_core).delete(delete_core))
            .route("/greengrass/v2/coreDevices/{name}/installedComponents", get(installed))
            .route("/greengrass/v2/coreDevices/{name}/effectiveDeployments", get(effective))
            .route("/greengrass/v2/coreDevices/{name}/associateClientDevices", post(associate))
            .route("/greengrass/v2/coreDevices/{name}/disassociateClientDevices", post(disassociate))
            .route("/greengrass/v2/coreDevices/{name}/associatedClientDevices", get(associated))
            .route("/greengrass/v2/deployments", post(create_deployment).get(list_deployments))
            .route("/greengrass/v2/components/{arn}/metadata", get(describe_component))
            .route("/greengrass/v2/components", get(list_components))
            .route("/greengrass/v2/components/{arn}", axum::routing::delete(delete_component))
            .route("/greengrass/v2/createComponentVersion", post(create_component_version))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the Greengrass fake");
        let addr = listener.local_addr().expect("bound");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { state, addr }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A core's nucleus connected for the first time: Greengrass knows the core device.
    pub fn register_core(&self, name: &str, nucleus_version: &str) {
        self.register_core_on(name, nucleus_version, "linux", "amd64");
    }

    /// [`Self::register_core`] on a given platform.
    pub fn register_core_on(&self, name: &str, nucleus_version: &str, os: &str, architecture: &str) {
        let mut fake = self.state.lock().expect("fake lock");
        fake.cores.insert(
            name.to_owned(),
            json!({"coreDeviceThingName": name, "coreVersion": nucleus_version, "platform": os, "architecture": architecture,
                   "status": "HEALTHY", "lastStatusUpdateTimestamp": now_secs(), "tags": {}}),
        );
        fake.installed.insert(name.to_owned(), vec![("aws.greengrass.Nucleus".to_owned(), nucleus_version.to_owned())]);
    }

    pub fn core_registered(&self, name: &str) -> bool {
        self.state.lock().expect("fake lock").cores.contains_key(name)
    }

    /// The core applied (or failed) a deployment: its effective deployments say so and, on
    /// success, its installed components are the deployment's.
    pub fn finish_deployment(&self, core: &str, deployment_id: &str, status: &str, reason: Option<&str>) {
        let mut fake = self.state.lock().expect("fake lock");
        let components: Vec<(String, String)> = fake.deployments[deployment_id]["components"]
            .as_object()
            .map(|c| {
                c.iter()
                    .map(|(n, s)| (n.clone(), s["componentVersion"].as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        fake.executions
            .entry(core.to_owned())
            .or_default()
            .insert(deployment_id.to_owned(), (status.to_owned(), reason.map(str::to_owned)));
        if status == "SUCCEEDED" {
            if let Some((_, version)) = components.iter().find(|(n, _)| n == "aws.greengrass.Nucleus")
                && let Some(device) = fake.cores.get_mut(core)
            {
                device["coreVersion"] = json!(version);
            }
            fake.installed.insert(core.to_owned(), components);
        }
    }

    /// Deployments created so far, as received (`deploymentId` added).
    pub fn deployments(&self) -> Vec<Value> {
        self.state.lock().expect("fake lock").deployments.values().cloned().collect()
    }

    /// Client devices associated with a core.
    pub fn associations(&self, core: &str) -> BTreeSet<String> {
        self.state.lock().expect("fake lock").associations.get(core).cloned().unwrap_or_default()
    }

    pub fn add_private_component(&self, name: &str, version: &str) {
        self.state.lock().expect("fake lock").private_components.insert((name.to_owned(), version.to_owned()));
    }

    /// The recipe a `CreateComponentVersion` call created, if any.
    pub fn recipe(&self, name: &str, version: &str) -> Option<Value> {
        self.state.lock().expect("fake lock").recipes.get(&(name.to_owned(), version.to_owned())).cloned()
    }

    /// How often an API was called.
    pub fn calls(&self, api: &str) -> u64 {
        self.state.lock().expect("fake lock").calls.get(api).copied().unwrap_or(0)
    }
}
