use serde_json::Value;

use super::*;

const REGION: &str = "eu-west-1";

fn input(compose: &str) -> ApplicationInput {
    ApplicationInput {
        description: None,
        compose: compose.to_owned(),
        options: ApplicationOptions::default(),
        registry_credentials: Vec::new(),
        images: Vec::new(),
    }
}

fn build(input: ApplicationInput) -> Application {
    let checked = input.check(REGION).expect("valid input");
    let target = PublishTarget { prefix: DEFAULT_COMPONENT_PREFIX, bucket: "ggprov-artifacts", region: REGION };
    Application::build(ApplicationName::parse("shop").unwrap(), 3, checked, &target)
}

fn problems(input: ApplicationInput) -> Vec<(String, String)> {
    match input.check(REGION) {
        Err(InputError::Invalid(p)) => p.iter().map(|p| (p.field.clone(), p.problem.clone())).collect(),
        other => panic!("expected problems, got {other:?}"),
    }
}

/// The fields Greengrass requires of a recipe (`CreateComponentVersion` refuses it otherwise)
/// and the shapes it reads; every generated recipe passes.
fn greengrass_recipe_problems(recipe: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if recipe["RecipeFormatVersion"] != "2020-01-25" {
        out.push("RecipeFormatVersion".to_owned());
    }
    for field in ["ComponentName", "ComponentVersion"] {
        if !recipe[field].is_string() {
            out.push(field.to_owned());
        }
    }
    if recipe["ComponentVersion"].as_str().and_then(|v| ComponentVersion::parse(v).ok()).is_none() {
        out.push("ComponentVersion is not semver".to_owned());
    }
    for (name, dep) in recipe["ComponentDependencies"].as_object().into_iter().flatten() {
        if !dep["VersionRequirement"].is_string()
            || !["HARD", "SOFT"].contains(&dep["DependencyType"].as_str().unwrap_or(""))
        {
            out.push(format!("dependency {name}"));
        }
    }
    let Some(manifests) = recipe["Manifests"].as_array().filter(|m| !m.is_empty()) else {
        out.push("Manifests".to_owned());
        return out;
    };
    for manifest in manifests {
        if !manifest["Platform"]["os"].is_string() {
            out.push("Platform.os".to_owned());
        }
        for (step, body) in manifest["Lifecycle"].as_object().into_iter().flatten() {
            if !["Setenv", "Bootstrap", "Install", "Startup", "Run", "Shutdown", "Recover"].contains(&step.as_str()) {
                out.push(format!("lifecycle step {step}"));
            }
            if !body["Script"].is_string() {
                out.push(format!("{step}.Script"));
            }
        }
        for artifact in manifest["Artifacts"].as_array().into_iter().flatten() {
            let uri = artifact["URI"].as_str().unwrap_or("");
            if !(uri.starts_with("s3://") || uri.starts_with("docker:") || uri.starts_with("greengrass:")) {
                out.push(format!("artifact {uri}"));
            }
        }
    }
    out
}

#[test]
fn public_images_become_docker_artifacts_with_default_options() {
    let app = build(input(
        "services:\n  web:\n    image: public.ecr.aws/nginx/nginx:1.25\n    ports: ['8080:80']\n  cache:\n    image: redis:7.2\n",
    ));
    assert!(greengrass_recipe_problems(&app.recipe).is_empty(), "{:?}", greengrass_recipe_problems(&app.recipe));
    assert_eq!(app.component_name.as_str(), "ggprov.app.shop");
    assert_eq!(app.component_version.as_str(), "3.0.0");
    insta::assert_json_snapshot!("public_images", (&app.recipe, &app.iam_statements));
}

#[test]
fn private_ecr_and_registry_credentials_add_iam_and_a_login() {
    let mut i = input(
        "services:\n  api:\n    image: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop/api@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n  ui:\n    image: registry.example.com:5000/shop/ui:2.0\n",
    );
    i.registry_credentials = vec![RegistryCredential {
        registry: "registry.example.com:5000".into(),
        secret_arn: "arn:aws:secretsmanager:eu-west-1:123456789012:secret:greengrass-shop-registry-AbCdEf".into(),
    }];
    i.options.run_as_user = Some(1000);
    i.options.stop_containers_on_new_deployment = Some(false);
    let app = build(i);
    assert!(greengrass_recipe_problems(&app.recipe).is_empty());
    assert!(app.warnings.is_empty(), "{:?}", app.warnings);
    insta::assert_json_snapshot!("private_images", (&app.recipe, &app.iam_statements));
}

#[test]
fn tarball_images_are_loaded_not_pulled_in_offline_mode() {
    let mut i = input("services:\n  api:\n    image: shop-api:1.4\n  proxy:\n    image: nginx:1.25\n");
    i.images = vec![ImageTarball { key: "images/shop-api-1.4.tar".into(), references: vec!["shop-api:1.4".into()] }];
    i.options.offline_mode = Some(true);
    i.options.force_deploy = Some(true);
    let app = build(i);
    assert!(greengrass_recipe_problems(&app.recipe).is_empty());
    insta::assert_json_snapshot!("tarball_offline", (&app.recipe, &app.iam_statements));
}

#[test]
fn ipc_credentials_and_stream_manager_get_an_override_file() {
    let mut i = input("services:\n  reader:\n    image: public.ecr.aws/acme/reader:3\n");
    i.options.ipc = Some(true);
    i.options.aws_credentials = Some(true);
    i.options.stream_manager = Some(true);
    i.options.status_log_frequency_secs = Some(60);
    let app = build(i);
    assert!(greengrass_recipe_problems(&app.recipe).is_empty());
    let own = app.own_artifacts();
    assert_eq!(own.len(), 2);
    let override_text = String::from_utf8(own[1].1.clone()).unwrap();
    insta::assert_snapshot!("ipc_override", override_text);
    insta::assert_json_snapshot!("ipc_recipe", (&app.recipe, &app.iam_statements));
}

#[test]
fn the_same_input_gives_the_same_artifacts_and_recipe() {
    let text = "services:\n  web:\n    image: nginx:1.25\n";
    let (a, b) = (build(input(text)), build(input(text)));
    assert_eq!((a.recipe, a.artifacts, a.fingerprint), (b.recipe, b.artifacts, b.fingerprint));
    let c = build(input("services:\n  web:\n    image: nginx:1.26\n"));
    assert_ne!(c.artifacts[0].key, build(input(text)).artifacts[0].key, "a new Compose file gets a new key");
}

#[test]
fn every_input_problem_names_its_field() {
    let mut i =
        input("services:\n  a:\n    image: 123456789012.dkr.ecr.us-east-1.amazonaws.com/x:1\n    networks: [n]\n");
    i.options.status_log_frequency_secs = Some(0);
    i.options.aws_credentials = Some(true);
    i.registry_credentials = vec![
        RegistryCredential {
            registry: "r.example.com".into(),
            secret_arn: "arn:aws:secretsmanager:eu-west-1:123456789012:secret:shop-AbCdEf".into(),
        },
        RegistryCredential { registry: "bad host".into(), secret_arn: "not-an-arn".into() },
    ];
    i.images = vec![
        ImageTarball { key: "../etc/passwd.tar".into(), references: vec![] },
        ImageTarball { key: "images/a.zip".into(), references: vec![] },
    ];
    let found = problems(i);
    let fields: Vec<&str> = found.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        fields,
        [
            "options.statusLogFrequencySecs",
            "compose",
            "registryCredentials[0].secretArn",
            "registryCredentials[1].registry",
            "registryCredentials[1].secretArn",
            "images[0].key",
            "images[1].key",
            "compose",
        ],
        "{found:?}"
    );
    assert!(found[1].1.contains("line 3") && found[1].1.contains("us-east-1"), "{found:?}");
    assert!(found[2].1.contains("'shop-AbCdEf'"), "{found:?}");
    assert!(found[7].1.contains("host network"), "{found:?}");
    assert_eq!(
        input(&"#".repeat(MAX_COMPOSE_BYTES + 1)).check(REGION),
        Err(InputError::TooLarge(MAX_COMPOSE_BYTES + 1))
    );
    assert_eq!(problems(input("services: []\n"))[0].1, "line 1: `services` must be a mapping of at least one service");
    assert_eq!(problems(input("- a\n"))[0].1, "line 1: the file must be a mapping with a `services` key");
    assert!(problems(input("version: '3'\n"))[0].1.contains("no `services`"));
    assert!(problems(input("services:\n  a: {}\n"))[0].1.contains("has no `image:`"));
}

#[test]
fn latest_and_untagged_images_are_warnings() {
    let app = build(input(
        "services:\n  a:\n    image: nginx\n  b:\n    image: nginx:latest\n  c:\n    image: nginx:1\n    build: .\n",
    ));
    assert_eq!(app.warnings.len(), 3, "{:?}", app.warnings);
    assert!(app.warnings[0].contains("untagged"));
    assert!(app.warnings[1].contains("`:latest`"));
    assert!(app.warnings[2].contains("`build:` is ignored"));
}

#[test]
fn names_are_component_safe() {
    assert!(ApplicationName::parse("shop-floor_2").is_ok());
    for bad in ["", "-x", "a.b", "a b", &"x".repeat(65)] {
        assert!(ApplicationName::parse(bad).is_err(), "{bad}");
    }
}
