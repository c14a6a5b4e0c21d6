//! The end-state checks of the fault and crash runs. Each returns the problems it found, so a
//! caller (and a test) can see which check caught what.

use std::path::Path;

use ggprov_domain::ports::SecretPem;
use serde_json::Value;

use crate::Api;

/// Every check, by name.
pub const CHECKS: &[&str] = &["task", "inventory", "certificates", "keys", "fleet"];

/// Runs every check; returns `check: problem` lines (empty when all is well).
pub async fn verify(api: &Api, data_dir: &Path, task_id: &str, cores: &[String]) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();

    let task = api.get(&format!("/coreTasks/{task_id}")).await?;
    if task["taskStatus"] != "Success" {
        problems.push(format!("task: status {}", task["taskStatus"]));
    }
    for core in task["cores"].as_array().into_iter().flatten().filter(|c| c["taskStatus"] != "Success") {
        problems.push(format!("task: core {} is {} ({})", core["name"], core["taskStatus"], core["statusMessage"]));
    }

    let inventory = api.get("/local-cloud/inventory").await?;
    let n = cores.len() as u64;
    for (field, expected) in [("things", n), ("certificates", n), ("activeCertificates", n), ("coreDevices", n)] {
        if inventory[field].as_u64() != Some(expected) {
            problems.push(format!(
                "inventory: {field} is {}, expected {expected} (one per core, no orphans)",
                inventory[field]
            ));
        }
    }

    for core in cores {
        let thing: Value = api.get(&format!("/local-cloud/things/{core}")).await.unwrap_or(Value::Null);
        let principals = thing["principals"].as_array().cloned().unwrap_or_default();
        if principals.len() != 1 || principals[0]["status"] != "ACTIVE" {
            problems.push(format!(
                "certificates: {core} has {} principal(s): {}",
                principals.len(),
                thing["principals"]
            ));
            continue;
        }
        let bundle = std::fs::read(data_dir.join("artifacts").join(core).join(core).join("certs.zip"));
        let Ok(bundle) = bundle else {
            problems.push(format!("keys: {core} has no certs bundle"));
            continue;
        };
        let (Some(cert), Some(key)) = (
            ggprov_pki::read_zip_entry(&bundle, "certs/cert.pem"),
            ggprov_pki::read_zip_entry(&bundle, "certs/private.key"),
        ) else {
            problems.push(format!("keys: {core}'s bundle lacks its certificate or key"));
            continue;
        };
        if ggprov_pki::fingerprint(&cert).ok().as_deref() != principals[0]["certificateId"].as_str() {
            problems.push(format!("certificates: {core}'s registered certificate is not the bundled one"));
        }
        if !ggprov_pki::key_matches(&cert, &SecretPem::new(key)).unwrap_or(false) {
            problems.push(format!("keys: {core}'s key does not match its certificate"));
        }
    }

    let counters = api.get("/fleet/summary").await?;
    let recount = api.get("/fleet/summary/recount").await?;
    if counters != recount {
        problems.push(format!("fleet: counters {counters} differ from the recount {recount}"));
    }
    let software = api.get("/fleet/software").await?;
    let software_recount = api.get("/fleet/software/recount").await?;
    if software != software_recount {
        problems.push(format!("software: counters {software} differ from the recount {software_recount}"));
    }
    Ok(problems)
}
