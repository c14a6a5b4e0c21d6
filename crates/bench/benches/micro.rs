//! Micro-benchmarks: `cargo bench -p ggprov-bench`.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use ggprov_domain::ports::CaMaterial;
use ggprov_domain::provisioning::{CertInfo, KeyAlgorithm};
use ggprov_pki::installer::{InstallerInput, render};

fn main() {
    divan::main();
}

fn ca() -> &'static CaMaterial {
    static CA: OnceLock<CaMaterial> = OnceLock::new();
    CA.get_or_init(|| {
        let minted = ggprov_pki::create_ca("bench CA", 30).expect("CA");
        CaMaterial { ca_id: "bench".into(), certificate_pem: minted.certificate_pem, private_key: minted.private_key }
    })
}

/// Key pair + certificate signed by the CA, EC P-256 (the default).
#[divan::bench(sample_count = 200)]
fn mint_ec_p256() -> ggprov_pki::Minted {
    ggprov_pki::mint(ca(), "core-0001", &CertInfo::default()).expect("mint")
}

/// The same with an RSA-2048 key (key generation dominates).
#[divan::bench(sample_count = 20)]
fn mint_rsa_2048() -> ggprov_pki::Minted {
    ggprov_pki::mint(ca(), "core-0001", &CertInfo { key_algorithm: Some(KeyAlgorithm::Rsa2048), ..CertInfo::default() })
        .expect("mint")
}

#[divan::bench]
fn installer_config(bencher: divan::Bencher<'_, '_>) {
    let params = BTreeMap::from([("ThingName".to_owned(), "core-0001".to_owned())]);
    bencher.bench(|| {
        let input = InstallerInput {
            core_name: "core-0001",
            nucleus_version: "2.12.0",
            region: "us-east-1",
            role_alias: "GreengrassV2TokenExchangeRoleAlias",
            data_endpoint: "abc-ats.iot.us-east-1.amazonaws.com",
            credential_endpoint: "abc.credentials.iot.us-east-1.amazonaws.com",
            root_path: "/greengrass/v2",
            provisioning_template: "greengrass2_core",
            template_parameters: &params,
        };
        render("MANUAL_INSTALL", &input)
    });
}

#[divan::bench]
fn certs_bundle(bencher: divan::Bencher<'_, '_>) {
    let minted = mint_ec_p256();
    bencher.bench(|| {
        ggprov_pki::certs_zip(&minted.certificate_pem, Some(&minted.private_key), Some(&ca().certificate_pem))
    });
}

/// A template body with every optional part: parse and validate.
#[divan::bench]
fn template_validation(bencher: divan::Bencher<'_, '_>) {
    let job: serde_json::Value = serde_json::json!({
        "jobExecutionsRolloutConfig": {"exponentialRate": {"baseRatePerMinute": 10, "incrementFactor": 2, "rateIncreaseCriteria": {"numberOfSucceededThings": 5}}, "maximumPerMinute": 100},
        "abortConfig": {"criteriaList": [{"failureType": "FAILED", "action": "CANCEL", "thresholdPercentage": 10, "minNumberOfExecutedThings": 5}]},
        "timeoutConfig": {"inProgressTimeoutInMinutes": 60}
    });
    let components: serde_json::Value = serde_json::json!([
        {"key": "aws.greengrass.Nucleus", "version": "2.12.0", "configurationUpdate": {"merge": "{\"logging\":{\"level\":\"INFO\"}}"}},
        {"key": "aws.greengrass.Cli", "version": "2.12.0"},
        {"key": "aws.greengrass.LogManager", "version": "2.3.7", "runWith": {"posixUser": "ggc_user:ggc_group"}}
    ]);
    bencher.bench(|| {
        let components: Vec<ggprov_domain::Component> = serde_json::from_value(components.clone()).expect("components");
        let job: ggprov_domain::template::JobConfig = serde_json::from_value(job.clone()).expect("job");
        ggprov_domain::TemplateSpec::new(components, Some(job), None).expect("valid")
    });
}

/// A store holding 100,000 cores over 20 template versions, 8 nucleus versions and 4 platforms
/// (read without the read-model cache: what a store read costs).
fn seeded_fleet() -> (tokio::runtime::Runtime, tempfile::TempDir, Arc<ggprov_store_sqlite::SqliteStore>) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("dir");
    let store = runtime.block_on(async {
        let store =
            Arc::new(ggprov_store_sqlite::SqliteStore::open(&dir.path().join("bench.sqlite")).await.expect("store"));
        store.seed_fleet_for_benchmarks(100_000, 20).await.expect("seed");
        store
    });
    (runtime, dir, store)
}

/// `GET /fleet/summary`'s read with 100,000 cores spread over 20 template versions.
#[divan::bench(sample_count = 50)]
fn fleet_summary_100k_cores(bencher: divan::Bencher<'_, '_>) {
    let (runtime, _dir, store) = seeded_fleet();
    bencher.bench(|| {
        runtime.block_on(async {
            ggprov_domain::ports::FleetCounters::fleet_counters(store.as_ref()).await.expect("summary")
        })
    });
}

/// `GET /fleet/software`'s read with 100,000 cores over 8 nucleus versions and 4 platforms.
#[divan::bench(sample_count = 50)]
fn software_summary_100k_cores(bencher: divan::Bencher<'_, '_>) {
    let (runtime, _dir, store) = seeded_fleet();
    bencher.bench(|| {
        runtime.block_on(async {
            ggprov_domain::ports::FleetCounters::software_counters(store.as_ref()).await.expect("summary")
        })
    });
}
