//! The reliability harness's verification catches each kind of damage: a test for the checks
//! the fault and crash runs rely on.

use ggprov_bench::verify::verify;
use ggprov_bench::{Api, Server};
use ggprov_domain::ThingName;
use ggprov_domain::ports::IotRegistry as _;
use ggprov_domain::provisioning::CertificateStatus;

const BIN: &str = env!("CARGO_BIN_EXE_ggprov");

async fn provisioned(cores: &[String]) -> (Server, tempfile::TempDir, Api, String) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(BIN.as_ref(), dir.path(), &[]).unwrap();
    let api = Api::new(&server.base);
    let task = api.create_cores(cores).await.unwrap();
    api.wait_task(&format!("/coreTasks/{task}"), std::time::Duration::from_secs(60)).await.unwrap();
    (server, dir, api, task)
}

fn kinds(problems: &[String]) -> Vec<&str> {
    let mut kinds: Vec<&str> = problems.iter().map(|p| p.split(':').next().unwrap()).collect();
    kinds.dedup();
    kinds
}

#[tokio::test]
async fn each_verification_check_catches_its_kind_of_damage() {
    let cores: Vec<String> = vec!["v-1".into(), "v-2".into(), "v-3".into()];
    let (server, dir, api, task) = provisioned(&cores).await;
    assert_eq!(verify(&api, dir.path(), &task, &cores).await.unwrap(), Vec::<String>::new(), "a clean run passes");

    // keys: a lost certs bundle.
    std::fs::remove_file(dir.path().join("artifacts/v-1/v-1/certs.zip")).unwrap();
    assert_eq!(kinds(&verify(&api, dir.path(), &task, &cores).await.unwrap()), ["keys"]);

    // inventory + certificates: a second certificate on a core, and an orphan thing.
    let cloud = ggprov_embedded::open_local_cloud(&ggprov::embedded_settings(
        &ggprov::Config::from_sources([("GGPROV_DATA_DIR".to_owned(), dir.path().display().to_string())], None)
            .unwrap(),
    ))
    .await
    .unwrap();
    let extra = ggprov_pki::create_ca("stray", 1).unwrap().certificate_pem;
    let registered = cloud.register_certificate(&extra, None, CertificateStatus::Active).await.unwrap();
    cloud.attach_thing_principal(&ThingName::parse("v-2").unwrap(), &registered.arn).await.unwrap();
    cloud.create_thing(&ThingName::parse("orphan").unwrap(), None, &Default::default()).await.unwrap();
    let found = verify(&api, dir.path(), &task, &cores).await.unwrap();
    let kinds_found = kinds(&found);
    assert!(kinds_found.contains(&"inventory") && kinds_found.contains(&"certificates"), "{found:?}");

    // fleet: counters that drifted from the records.
    let pool =
        sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.path().join("ggprov.sqlite").display())).await.unwrap();
    sqlx::query("UPDATE fleet_counters SET desired_in_use = desired_in_use + 1").execute(&pool).await.unwrap();
    assert!(verify(&api, dir.path(), &task, &cores).await.unwrap().iter().any(|p| p.starts_with("fleet:")));

    // task: a core that did not succeed.
    let failing = serde_json::json!({"type": "Create", "coreVersion": "2.12.0", "cores": [{"name": "f-1", "provisioningTemplate": "greengrass2_core", "configFileGenerator": "NOPE"}]});
    let response = api.send(reqwest::Method::POST, "/coreTasks", &failing).await.unwrap();
    let failed_task = response.headers()["x-taskid"].to_str().unwrap().to_owned();
    api.wait_task(&format!("/coreTasks/{failed_task}"), std::time::Duration::from_secs(60)).await.unwrap();
    assert!(
        verify(&api, dir.path(), &failed_task, &["f-1".to_owned()])
            .await
            .unwrap()
            .iter()
            .any(|p| p.starts_with("task:"))
    );
    drop(server);
}
