//! Docker Compose applications: a Compose file plus options, checked before it is stored and
//! turned into one Greengrass component version per application version (recipe, artifacts,
//! the IAM statements the core's token exchange role needs).

mod compose;
mod image;
mod recipe;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use compose::ComposeService;
pub use image::{ImageKind, ImageRef};
pub use recipe::{COMPOSE_FILE, OVERRIDE_FILE};

use crate::template::{ComponentName, ComponentVersion};
use crate::time::Timestamp;
use crate::validation::Problems;

/// Largest Compose file accepted (413 above).
pub const MAX_COMPOSE_BYTES: usize = 256 * 1024;
/// The component name prefix: application `shop` is component `ggprov.app.shop`.
pub const DEFAULT_COMPONENT_PREFIX: &str = "ggprov.app";

/// An application name: 1–64 ASCII letters, digits, `_` and `-`, starting with a letter or
/// digit (it becomes part of a component name and the Compose project name).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ApplicationName(String);

impl ApplicationName {
    pub const MAX_LEN: usize = 64;

    pub fn parse(name: &str) -> Result<Self, String> {
        let valid = !name.is_empty()
            && name.len() <= Self::MAX_LEN
            && name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if valid {
            Ok(Self(name.to_owned()))
        } else {
            Err(format!(
                "'{name}' is not an application name: use 1 to {} ASCII letters, digits, '_' and '-', starting with a letter or digit (it becomes part of the component name)",
                Self::MAX_LEN
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ApplicationName {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        Self::parse(&value)
    }
}

impl From<ApplicationName> for String {
    fn from(name: ApplicationName) -> String {
        name.0
    }
}

impl std::fmt::Display for ApplicationName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The options of the Greengrass V1 Docker connector that still mean something, plus what
/// containers need on V2. Absent fields take their defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplicationOptions {
    /// `docker compose pull` at install (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_before_up: Option<bool>,
    /// Recreate every container on `up`, even unchanged ones (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_deploy: Option<bool>,
    /// `docker compose down` when the component stops, e.g. for the next version (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_containers_on_new_deployment: Option<bool>,
    /// Never pull: the images must be on the core already or come as tarballs (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline_mode: Option<bool>,
    /// Seconds between container status lines in the component log (1–9999, default 300).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 9999))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_log_frequency_secs: Option<u32>,
    /// The uid that runs `docker compose` (default: the component's user).
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 2147483647))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<u32>,
    /// Containers talk to the nucleus over Greengrass IPC (socket mount, SVCUID, access control).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipc: Option<bool>,
    /// Containers get the core's AWS credentials (token exchange service; host network).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_credentials: Option<bool>,
    /// Containers use stream manager (its port and authentication; host network).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_manager: Option<bool>,
}

/// Options with every default filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedOptions {
    pub pull_before_up: bool,
    pub force_deploy: bool,
    pub stop_containers_on_new_deployment: bool,
    pub offline_mode: bool,
    pub status_log_frequency_secs: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<u32>,
    pub ipc: bool,
    pub aws_credentials: bool,
    pub stream_manager: bool,
}

impl ApplicationOptions {
    fn resolve(&self) -> ResolvedOptions {
        ResolvedOptions {
            pull_before_up: self.pull_before_up.unwrap_or(true),
            force_deploy: self.force_deploy.unwrap_or(false),
            stop_containers_on_new_deployment: self.stop_containers_on_new_deployment.unwrap_or(true),
            offline_mode: self.offline_mode.unwrap_or(false),
            status_log_frequency_secs: self.status_log_frequency_secs.unwrap_or(300),
            run_as_user: self.run_as_user,
            ipc: self.ipc.unwrap_or(false),
            aws_credentials: self.aws_credentials.unwrap_or(false),
            stream_manager: self.stream_manager.unwrap_or(false),
        }
    }
}

/// Credentials of one registry: a Secrets Manager secret (`{"username", "password"}`) whose
/// name starts with `greengrass-`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegistryCredential {
    /// Registry host as images name it, e.g. `registry.example.com:5000` (`docker.io` for Docker Hub).
    #[cfg_attr(feature = "openapi", schema(example = "registry.example.com"))]
    pub registry: String,
    #[cfg_attr(
        feature = "openapi",
        schema(example = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:greengrass-registry-AbCdEf")
    )]
    pub secret_arn: String,
}

/// An image tarball (`docker save`) already in the artifact store, loaded before `up`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageTarball {
    /// Key in ggprov's artifact store (bucket), ending in `.tar`, `.tar.gz` or `.tgz`.
    #[cfg_attr(feature = "openapi", schema(example = "images/shop-api-1.4.tar"))]
    pub key: String,
    /// The image references the tarball holds: their services are not pulled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<String>,
}

/// What `POST` / `PUT /applications` carry (the name is in the path for `PUT`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationInput {
    pub description: Option<String>,
    pub compose: String,
    pub options: ApplicationOptions,
    pub registry_credentials: Vec<RegistryCredential>,
    pub images: Vec<ImageTarball>,
}

/// Why an application cannot be stored as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputError {
    /// The Compose file is over [`MAX_COMPOSE_BYTES`].
    TooLarge(usize),
    Invalid(Problems),
}

/// A checked input: what the Compose file runs and the warnings for the response.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedInput {
    pub input: ApplicationInput,
    pub options: ResolvedOptions,
    pub services: Vec<ComposeService>,
    pub warnings: Vec<String>,
    /// Digest of the input: a retried request is recognised by it.
    pub fingerprint: String,
}

const SECRET_ARN_HELP: &str = "must be a Secrets Manager secret ARN (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME) whose name starts with 'greengrass-'";

impl ApplicationInput {
    /// Every check that needs nothing but the input and the deployment region.
    pub fn check(self, region: &str) -> Result<CheckedInput, InputError> {
        if self.compose.len() > MAX_COMPOSE_BYTES {
            return Err(InputError::TooLarge(self.compose.len()));
        }
        let mut problems = Problems::new();
        if self.description.as_ref().is_some_and(|d| d.chars().count() > 1024) {
            problems.add("description", "is longer than 1024 characters");
        }
        let options = self.options.resolve();
        if !(1..=9999).contains(&options.status_log_frequency_secs) {
            problems.add("options.statusLogFrequencySecs", "must be between 1 and 9999 seconds");
        }
        if options.run_as_user.is_some_and(|uid| uid > i32::MAX as u32) {
            problems.add("options.runAsUser", "must be a uid between 0 and 2147483647");
        }
        let checked = compose::check_compose(&self.compose, region, &mut problems);
        let mut warnings = checked.warnings;
        let used_registries: std::collections::BTreeSet<&str> =
            checked.services.iter().map(|s| s.image.registry.as_str()).collect();
        let mut seen = std::collections::BTreeSet::new();
        for (i, cred) in self.registry_credentials.iter().enumerate() {
            let field = format!("registryCredentials[{i}]");
            if cred.registry.is_empty()
                || cred.registry.len() > 255
                || !cred.registry.chars().all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c))
            {
                problems
                    .add(format!("{field}.registry"), "must be a registry host such as registry.example.com[:port]");
            } else if !seen.insert(cred.registry.as_str()) {
                problems.add(format!("{field}.registry"), format!("'{}' has credentials listed twice", cred.registry));
            } else if !used_registries.contains(cred.registry.as_str()) {
                warnings.push(format!("{field}: no service uses an image from '{}'", cred.registry));
            }
            match secret_name(&cred.secret_arn) {
                Some(name) if name.starts_with("greengrass-") => {}
                Some(name) => problems.add(
                    format!("{field}.secretArn"),
                    format!("names secret '{name}'; the secret's name must start with 'greengrass-' (the core's role may read only those)"),
                ),
                None => problems.add(format!("{field}.secretArn"), SECRET_ARN_HELP),
            }
        }
        let mut basenames = std::collections::BTreeSet::new();
        let used_images = compose::distinct_images(&checked.services);
        for (i, tarball) in self.images.iter().enumerate() {
            let field = format!("images[{i}].key");
            let key = tarball.key.as_str();
            let valid = !key.is_empty()
                && key.len() <= 1024
                && !key.starts_with('/')
                && !key.split('/').any(|part| part.is_empty() || part == "." || part == "..")
                && key.chars().all(|c| c.is_ascii_graphic())
                && [".tar", ".tar.gz", ".tgz"].iter().any(|ext| key.ends_with(ext));
            if !valid {
                problems.add(
                    &field,
                    "must be a key in the artifact store (a/b/c.tar, .tar.gz or .tgz; no '..', no spaces)",
                );
                continue;
            }
            let base = key.rsplit('/').next().unwrap_or(key);
            if [COMPOSE_FILE, OVERRIDE_FILE].contains(&base) || !basenames.insert(base.to_owned()) {
                problems.add(
                    &field,
                    format!("file name '{base}' is used twice; artifacts of one component share a directory"),
                );
            }
            for (j, reference) in tarball.references.iter().enumerate() {
                if !used_images.contains(reference.as_str()) {
                    warnings.push(format!("images[{i}].references[{j}]: no service runs '{reference}'"));
                }
            }
        }
        if options.aws_credentials || options.stream_manager {
            for service in &checked.services {
                if service.uses_networks {
                    problems.add(
                        "compose",
                        format!(
                            "line {}: service '{}' sets `networks`/`network_mode`, but awsCredentials and streamManager run every service on the host network (the credentials and stream manager listen on localhost)",
                            service.line, service.name
                        ),
                    );
                } else if !service.host_ports.is_empty() {
                    warnings.push(format!(
                        "line {}: service '{}': `ports` are ignored on the host network (awsCredentials / streamManager)",
                        service.line, service.name
                    ));
                }
            }
        }
        if !problems.is_empty() {
            return Err(InputError::Invalid(problems));
        }
        let fingerprint = hex::encode(Sha256::digest(serde_json::to_vec(&self).expect("input serialises")));
        Ok(CheckedInput { input: self, options, services: checked.services, warnings, fingerprint })
    }
}

/// The secret name of a Secrets Manager ARN (without the 6-character suffix AWS adds).
fn secret_name(arn: &str) -> Option<&str> {
    let rest = arn.strip_prefix("arn:")?;
    let mut parts = rest.splitn(6, ':');
    let (partition, service, region, account, kind, name) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let ok = matches!(partition, "aws" | "aws-cn" | "aws-us-gov")
        && service == "secretsmanager"
        && !region.is_empty()
        && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && kind == "secret"
        && !name.is_empty()
        && name.len() <= 512
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c));
    ok.then_some(name)
}

/// Whether a version's component exists in Greengrass yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApplicationState {
    /// Stored; its artifacts and component are being created (a crash leaves it here, and the
    /// next request on the application finishes it).
    Pending,
    /// Its component version is in the catalogue: templates can name it.
    Published,
}

/// An artifact of a component version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredArtifact {
    pub bucket: String,
    pub key: String,
    /// `s3://bucket/key`, as the recipe names it.
    pub uri: String,
    /// The object version the store gave it (S3 with versioning), once uploaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
}

/// One version of an application, as stored and shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Application {
    pub name: ApplicationName,
    pub version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub compose: String,
    pub options: ResolvedOptions,
    #[serde(default)]
    pub registry_credentials: Vec<RegistryCredential>,
    #[serde(default)]
    pub images: Vec<ImageTarball>,
    pub services: Vec<ComposeService>,
    #[serde(default)]
    pub warnings: Vec<String>,
    pub component_name: ComponentName,
    pub component_version: ComponentVersion,
    pub artifacts: Vec<StoredArtifact>,
    /// The generated Greengrass recipe (JSON).
    pub recipe: serde_json::Value,
    /// What the core's token exchange role needs for this version (IAM policy statements).
    pub iam_statements: Vec<serde_json::Value>,
    pub state: ApplicationState,
    pub fingerprint: String,
    pub created_at: Timestamp,
}

/// Where a version's artifacts go and what the recipe can reference.
#[derive(Debug, Clone)]
pub struct PublishTarget<'a> {
    pub prefix: &'a str,
    pub bucket: &'a str,
    pub region: &'a str,
}

impl Application {
    /// A pending version built from a checked input.
    pub fn build(name: ApplicationName, version: u32, checked: CheckedInput, target: &PublishTarget<'_>) -> Self {
        let component_name = ComponentName::parse(&format!("{}.{}", target.prefix, name.as_str()))
            .expect("a prefix and an application name form a component name");
        let component_version =
            ComponentVersion::parse(&format!("{version}.0.0")).expect("N.0.0 is a semantic version");
        let generated = recipe::generate(&recipe::RecipeInput {
            name: &name,
            component_name: &component_name,
            component_version: &component_version,
            checked: &checked,
            bucket: target.bucket,
            region: target.region,
        });
        Self {
            name,
            version,
            description: checked.input.description,
            compose: checked.input.compose,
            options: checked.options,
            registry_credentials: checked.input.registry_credentials,
            images: checked.input.images,
            services: checked.services,
            warnings: checked.warnings,
            component_name,
            component_version,
            artifacts: generated.artifacts,
            recipe: generated.recipe,
            iam_statements: generated.iam_statements,
            state: ApplicationState::Pending,
            fingerprint: checked.fingerprint,
            created_at: Timestamp::now(),
        }
    }

    /// The bytes of the artifacts ggprov writes itself (Compose file, override), by key.
    pub fn own_artifacts(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        for artifact in &self.artifacts {
            if artifact.key.ends_with(COMPOSE_FILE) {
                out.push((artifact.key.clone(), self.compose.clone().into_bytes()));
            } else if artifact.key.ends_with(OVERRIDE_FILE) {
                out.push((artifact.key.clone(), recipe::override_file(&self.options, &self.services).into_bytes()));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
