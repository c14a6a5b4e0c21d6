//! The Greengrass recipe of an application version, its artifacts and the IAM statements the
//! core's token exchange role needs. Deterministic: the same input gives the same bytes.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::image::ImageKind;
use super::{ApplicationName, CheckedInput, ComposeService, ResolvedOptions, StoredArtifact};
use crate::template::{ComponentName, ComponentVersion};

/// File name of the Compose file among the component's artifacts.
pub const COMPOSE_FILE: &str = "docker-compose.yaml";
/// File name of the generated Compose override (IPC, credentials, stream manager).
pub const OVERRIDE_FILE: &str = "ggprov-override.yaml";

const ANY_V2: &str = ">=2.0.0 <3.0.0";

pub(super) struct RecipeInput<'a> {
    pub name: &'a ApplicationName,
    pub component_name: &'a ComponentName,
    pub component_version: &'a ComponentVersion,
    pub checked: &'a CheckedInput,
    pub bucket: &'a str,
    pub region: &'a str,
}

pub(super) struct Generated {
    pub recipe: Value,
    pub artifacts: Vec<StoredArtifact>,
    pub iam_statements: Vec<Value>,
}

fn needs_override(options: &ResolvedOptions) -> bool {
    options.ipc || options.aws_credentials || options.stream_manager
}

/// The Compose override ggprov adds (JSON, which is YAML): per service, the environment and
/// mounts the options need. Empty when no option needs one.
pub(super) fn override_file(options: &ResolvedOptions, services: &[ComposeService]) -> String {
    if !needs_override(options) {
        return String::new();
    }
    let mut environment: Vec<&str> = Vec::new();
    let mut volumes: Vec<&str> = Vec::new();
    let mut host_network = false;
    if options.ipc {
        environment.extend(["AWS_REGION", "SVCUID", "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"]);
        volumes.push(
            "${AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT}:${AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT}",
        );
    }
    if options.aws_credentials {
        environment.extend(["AWS_REGION", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN"]);
        host_network = true;
    }
    if options.stream_manager {
        environment.extend([
            "STREAM_MANAGER_SERVER_PORT",
            "STREAM_MANAGER_AUTHENTICATE_CLIENT",
            "SVCUID",
            "AWS_CONTAINER_AUTHORIZATION_TOKEN",
        ]);
        host_network = true;
    }
    environment.sort_unstable();
    environment.dedup();
    let mut out = serde_json::Map::new();
    for service in services {
        let mut entry = json!({ "environment": environment });
        if !volumes.is_empty() {
            entry["volumes"] = json!(volumes);
        }
        if host_network {
            entry["network_mode"] = json!("host");
        }
        out.insert(service.name.clone(), entry);
    }
    let mut text = serde_json::to_string_pretty(&json!({ "services": out })).expect("JSON");
    text.push('\n');
    text
}

/// `'text'` for a POSIX shell.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

pub(super) fn generate(input: &RecipeInput<'_>) -> Generated {
    let checked = input.checked;
    let options = &checked.options;
    let services = &checked.services;
    let override_text = override_file(options, services);
    // Content-addressed keys: an artifact never changes once a component version names it
    // (Greengrass records its digest), and a retried request writes the same key.
    let mut hasher = Sha256::new();
    hasher.update(checked.input.compose.as_bytes());
    hasher.update([0]);
    hasher.update(override_text.as_bytes());
    let digest = hex::encode(hasher.finalize());
    let dir = format!("applications/{}/{}", input.name.as_str(), &digest[..16]);
    let s3 = |key: &str| StoredArtifact {
        bucket: input.bucket.to_owned(),
        key: key.to_owned(),
        uri: format!("s3://{}/{key}", input.bucket),
        version_id: None,
    };
    let mut artifacts = vec![s3(&format!("{dir}/{COMPOSE_FILE}"))];
    if !override_text.is_empty() {
        artifacts.push(s3(&format!("{dir}/{OVERRIDE_FILE}")));
    }
    let tarballs: Vec<StoredArtifact> = checked.input.images.iter().map(|t| s3(&t.key)).collect();

    // Images that come from tarballs are neither downloaded by Greengrass nor pulled; images
    // Greengrass downloads (`docker:` artifacts, with its own ECR login) are not pulled again;
    // the rest are pulled by `docker compose` after the logins.
    let loaded: std::collections::BTreeSet<&str> =
        checked.input.images.iter().flat_map(|t| t.references.iter().map(String::as_str)).collect();
    let with_credentials: std::collections::BTreeSet<&str> =
        checked.input.registry_credentials.iter().map(|c| c.registry.as_str()).collect();
    let mut docker_uris: Vec<String> = Vec::new();
    let mut pulled: Vec<&str> = Vec::new();
    for service in services {
        let image = &service.image;
        if loaded.contains(image.reference.as_str()) {
            continue;
        }
        // Greengrass downloads ECR and public Docker Hub images itself; an image from a
        // registry with credentials is pulled by `docker compose` after the login.
        if !options.offline_mode && image.greengrass_can_pull() && !with_credentials.contains(image.registry.as_str()) {
            let uri = format!("docker:{}", image.reference);
            if !docker_uris.contains(&uri) {
                docker_uris.push(uri);
            }
        } else {
            pulled.push(&service.name);
        }
    }

    let mut dependencies = serde_json::Map::new();
    dependencies.insert(
        "aws.greengrass.DockerApplicationManager".into(),
        json!({"VersionRequirement": ANY_V2, "DependencyType": "HARD"}),
    );
    // S3 artifacts (the Compose file always is one), private ECR, secrets and container
    // credentials all go through the token exchange service.
    dependencies.insert(
        "aws.greengrass.TokenExchangeService".into(),
        json!({"VersionRequirement": ANY_V2, "DependencyType": "HARD"}),
    );
    if options.stream_manager {
        dependencies.insert(
            "aws.greengrass.StreamManager".into(),
            json!({"VersionRequirement": ANY_V2, "DependencyType": "HARD"}),
        );
    }

    let privileged = options.run_as_user.is_some();
    let as_user = options.run_as_user.map_or_else(String::new, |uid| format!("sudo -E -H -u '#{uid}' "));
    let project = input.name.as_str().to_ascii_lowercase();
    let mut compose_cmd = format!("{as_user}docker compose -p {project} -f {{artifacts:path}}/{COMPOSE_FILE}");
    if !override_text.is_empty() {
        compose_cmd.push_str(&format!(" -f {{artifacts:path}}/{OVERRIDE_FILE}"));
    }

    let mut install = vec!["set -e".to_owned()];
    for tarball in &tarballs {
        let base = tarball.key.rsplit('/').next().unwrap_or(&tarball.key);
        install.push(format!("{as_user}docker load -i {{artifacts:path}}/{base}"));
    }
    for cred in &checked.input.registry_credentials {
        let field = |name: &str| {
            format!("printf '%s' \"$secret\" | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"{name}\"])'")
        };
        install.push(format!(
            "secret=$(aws secretsmanager get-secret-value --region {} --secret-id {} --query SecretString --output text)",
            quote(input.region),
            quote(&cred.secret_arn)
        ));
        install.push(format!(
            "{} | {as_user}docker login {} --username \"$({})\" --password-stdin",
            field("password"),
            quote(&cred.registry),
            field("username")
        ));
    }
    if options.pull_before_up && !options.offline_mode && !pulled.is_empty() {
        install.push(format!("{compose_cmd} pull {}", pulled.join(" ")));
    }

    let mut up = format!("{compose_cmd} up -d");
    if options.force_deploy {
        up.push_str(" --force-recreate --remove-orphans");
    }
    if options.offline_mode {
        up.push_str(" --pull never");
    }
    let run =
        format!("set -e\n{up}\nwhile {compose_cmd} ps --all; do sleep {}; done", options.status_log_frequency_secs);
    let mut lifecycle = json!({"Run": {"Script": run, "RequiresPrivilege": privileged}});
    if install.len() > 1 {
        lifecycle["Install"] = json!({"Script": install.join("\n"), "RequiresPrivilege": privileged, "Timeout": 1800});
    }
    if options.stop_containers_on_new_deployment {
        lifecycle["Shutdown"] =
            json!({"Script": format!("{compose_cmd} down"), "RequiresPrivilege": privileged, "Timeout": 300});
    }

    let mut recipe_artifacts: Vec<Value> = artifacts
        .iter()
        .chain(&tarballs)
        .map(|a| json!({"URI": a.uri, "Unarchive": "NONE", "Permission": {"Read": "OWNER", "Execute": "NONE"}}))
        .collect();
    recipe_artifacts.extend(docker_uris.iter().map(|uri| json!({"URI": uri})));

    let mut configuration = json!({
        "Services": services.iter().map(|s| (s.name.clone(), json!({"Image": s.image.reference}))).collect::<serde_json::Map<_, _>>(),
    });
    if options.ipc {
        configuration["accessControl"] = json!({
            "aws.greengrass.ipc.pubsub": {
                format!("{}:pubsub:1", input.component_name.as_str()): {
                    "policyDescription": "The application's containers publish and subscribe to local topics over IPC.",
                    "operations": ["aws.greengrass#PublishToTopic", "aws.greengrass#SubscribeToTopic"],
                    "resources": ["*"]
                }
            }
        });
    }

    let recipe = json!({
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": input.component_name.as_str(),
        "ComponentVersion": input.component_version.as_str(),
        "ComponentType": "aws.greengrass.generic",
        "ComponentDescription": checked.input.description.clone().unwrap_or_else(|| format!("Docker Compose application {} (generated by ggprov)", input.name)),
        "ComponentPublisher": "ggprov",
        "ComponentDependencies": dependencies,
        "ComponentConfiguration": {"DefaultConfiguration": configuration},
        "Manifests": [{
            "Platform": {"os": "linux"},
            "Lifecycle": lifecycle,
            "Artifacts": recipe_artifacts,
        }],
    });

    let mut iam = Vec::new();
    let s3_resources: Vec<String> =
        artifacts.iter().chain(&tarballs).map(|a| format!("arn:aws:s3:::{}/{}", a.bucket, a.key)).collect();
    iam.push(json!({"Sid": "ReadApplicationArtifacts", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": s3_resources}));
    let mut repositories: Vec<String> = services
        .iter()
        .filter_map(|s| match &s.image.kind {
            ImageKind::PrivateEcr { account, region } => {
                Some(format!("arn:aws:ecr:{region}:{account}:repository/{}", s.image.repository))
            }
            _ => None,
        })
        .collect();
    repositories.sort();
    repositories.dedup();
    if !repositories.is_empty() {
        iam.push(json!({"Sid": "EcrAuthorization", "Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": "*"}));
        iam.push(json!({"Sid": "PullPrivateImages", "Effect": "Allow", "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"], "Resource": repositories}));
    }
    if !checked.input.registry_credentials.is_empty() {
        let secrets: Vec<&str> = checked.input.registry_credentials.iter().map(|c| c.secret_arn.as_str()).collect();
        iam.push(json!({"Sid": "ReadRegistryCredentials", "Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"], "Resource": secrets}));
    }

    let mut all_artifacts = artifacts;
    all_artifacts.extend(tarballs);
    Generated { recipe, artifacts: all_artifacts, iam_statements: iam }
}
