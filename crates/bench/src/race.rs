//! The race run: clients that submit at the same moment, and jobs delivered twice.
//!
//! Two `ggprov serve` processes share one data directory (the API with its worker, and a
//! worker-role process), with a work lease short enough that a job comes back to the other
//! worker while the first still works on it, and a sweeper that re-queues after one second.
//! Into that: pairs of simultaneous duplicate `Create`s of new names, and names submitted as a
//! core and as a client device at the same moment. Then it checks that every thing has exactly
//! one certificate, no name is of two kinds, and every accepted task ended in success.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use serde_json::{Value, json};

use crate::{Api, Server};

/// What the race run found.
#[derive(Debug, Default)]
pub struct RaceReport {
    pub pairs: usize,
    pub claims: usize,
    /// Submissions answered 202 / refused (409, or 400 for the other kind).
    pub accepted: usize,
    pub refused: usize,
    pub seconds: f64,
    /// Job deliveries the two workers handled, against jobs submitted: more means duplicates.
    pub deliveries: u64,
    pub jobs: usize,
    /// Duplicate-Create pairs whose second request was answered after the first had ended
    /// (both accepted, one owner at a time).
    pub sequential: usize,
    /// Pairs both accepted whose second task is stamped before the first's item ended. Not a
    /// verdict: both stamps are taken before the store's write lock, and SQLite's busy handler
    /// does not grant it in arrival order, so a task stamped earlier can commit after an item
    /// ended later (seen once in CI: 42 ms apart). The claim itself is checked exactly by the
    /// store conformance tests (`a_thing_has_one_owner_until_its_item_ends`,
    /// `concurrent_claims_of_one_name_have_exactly_one_winner`); the certificates below check
    /// that no thing was provisioned twice.
    pub overlapping_stamps: usize,
    pub problems: Vec<String>,
}

/// The sum of a counter family's samples in a Prometheus text page.
fn counter_sum(page: &str, family: &str) -> u64 {
    page.lines()
        .filter(|l| l.starts_with(family) && l[family.len()..].starts_with('{'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

const ENV: [(&str, &str); 4] = [
    ("GGPROV_WORKER_LEASE_MS", "50"),
    ("GGPROV_MAX_ATTEMPTS", "100"),
    ("GGPROV_RETRY_BASE_MS", "20"),
    ("GGPROV_SWEEP_AFTER_SECS", "1"),
];

fn core_body(name: &str) -> Value {
    json!({"type": "Create", "coreVersion": "2.12.0",
           "cores": [{"name": name, "provisioningTemplate": "greengrass2_core"}]})
}

fn device_body(name: &str) -> Value {
    json!({"type": "Create", "devices": [{"name": name, "provisioningTemplate": "greengrass2_client_device"}]})
}

/// A name and the two answers its simultaneous submissions got: (status, task path if accepted).
type Submitted = (String, [(u16, Option<String>); 2]);

/// POSTs (again after a 503, as a client retries an outage or throttling) and returns
/// (status, task path when accepted).
async fn submit(api: &Api, path: &str, body: &Value, tasks: &str) -> anyhow::Result<(u16, Option<String>)> {
    for _ in 0..50 {
        let response =
            api.client.post(format!("{}{path}", api.base)).json(body).send().await.context(path.to_owned())?;
        let status = response.status().as_u16();
        if status == 503 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let task = response.headers().get("x-taskid").and_then(|v| v.to_str().ok()).map(|id| format!("{tasks}/{id}"));
        return Ok((status, task));
    }
    bail!("{path}: still 503 after 50 tries")
}

async fn status_of(api: &Api, path: &str) -> anyhow::Result<u16> {
    Ok(api.client.get(format!("{}{path}", api.base)).send().await?.status().as_u16())
}

/// Runs the race with `pairs` duplicate-Create pairs and `claims` core/device claims.
pub async fn race(binary: &Path, pairs: usize, claims: usize) -> anyhow::Result<RaceReport> {
    let dir = tempfile::tempdir()?;
    let api_server = Server::start(binary, dir.path(), &ENV)?;
    let mut worker_env = ENV.to_vec();
    worker_env.push(("GGPROV_ROLE", "worker"));
    let worker = Server::start(binary, dir.path(), &worker_env)?;
    let api = Api::new(&api_server.base);
    let mut report = RaceReport { pairs, claims, ..RaceReport::default() };
    let started = Instant::now();

    // A gateway for the device claims, connected to (simulated) Greengrass.
    let gateway = api.create_cores(&["race-gw".to_owned()]).await?;
    let done = api.wait_task(&format!("/coreTasks/{gateway}"), Duration::from_secs(300)).await?;
    if done["taskStatus"] != "Success" {
        bail!("the gateway core was not provisioned: {done}");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while api.get("/cores/race-gw").await?["device"]["status"] != "HEALTHY" {
        if Instant::now() > deadline {
            bail!("the gateway core never connected");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Slow the cloud down so that items outlive the lease and jobs are delivered twice.
    api.faults(json!({"throttleRate": 0.3, "quotas": true})).await?;

    let pair_results: Vec<anyhow::Result<Submitted>> =
        futures::stream::iter((0..pairs).map(|i| format!("race-p-{i:05}")))
            .map(|name| {
                let api = api.clone();
                async move {
                    let body = core_body(&name);
                    let (a, b) = tokio::join!(
                        submit(&api, "/coreTasks", &body, "/coreTasks"),
                        submit(&api, "/coreTasks", &body, "/coreTasks")
                    );
                    Ok((name, [a?, b?]))
                }
            })
            .buffer_unordered(32)
            .collect()
            .await;
    let claim_results: Vec<anyhow::Result<Submitted>> =
        futures::stream::iter((0..claims).map(|i| format!("race-c-{i:05}")))
            .map(|name| {
                let api = api.clone();
                async move {
                    let (core, device) = (core_body(&name), device_body(&name));
                    let (a, b) = tokio::join!(
                        submit(&api, "/coreTasks", &core, "/coreTasks"),
                        submit(&api, "/cores/race-gw/deviceTasks", &device, "/deviceTasks")
                    );
                    Ok((name, [a?, b?]))
                }
            })
            .buffer_unordered(32)
            .collect()
            .await;

    let mut tasks = Vec::new();
    let mut sequential = Vec::new();
    let mut pair_names = Vec::new();
    let mut claim_names = Vec::new();
    for (kind, results) in [("pair", pair_results), ("claim", claim_results)] {
        for result in results {
            let (name, answers) = result?;
            let accepted: Vec<&String> =
                answers.iter().filter_map(|(s, t)| (*s == 202).then_some(t.as_ref()).flatten()).collect();
            let refused = answers.iter().filter(|(s, _)| matches!(s, 409 | 422)).count();
            report.accepted += accepted.len();
            report.refused += refused;
            if kind == "pair" && accepted.len() == 2 {
                // Both accepted is right only if they did not overlap: one request was answered
                // after the other's item had ended (a retried 503, a slow connection), so the
                // second re-provisioned a core that had one owner at a time. Checked below.
                sequential.push((name.clone(), accepted[0].clone(), accepted[1].clone()));
            } else if accepted.len() != 1 || refused != 1 {
                report.problems.push(format!(
                    "{kind} {name}: answers {:?}, expected one 202 and one refusal",
                    [answers[0].0, answers[1].0]
                ));
            }
            tasks.extend(accepted.into_iter().cloned());
            if kind == "pair" { pair_names.push(name) } else { claim_names.push(name) }
        }
    }

    for task in &tasks {
        let done = api.wait_task(task, Duration::from_secs(1_800)).await?;
        if done["taskStatus"] != "Success" {
            report.problems.push(format!("task {task} ended {}", done["taskStatus"]));
        }
    }
    api.faults(json!({})).await?;

    for (name, a, b) in &sequential {
        let (a, b): (Value, Value) = (api.get(a).await?, api.get(b).await?);
        match stamps_overlap(&a, &b) {
            Some(overlap) => {
                eprintln!("pair {name}: {overlap} (stamps precede the write lock; see RaceReport::overlapping_stamps)");
                report.overlapping_stamps += 1;
            }
            None => report.sequential += 1,
        }
    }

    for name in pair_names.iter().chain(&claim_names) {
        let thing: Value = api.get(&format!("/local-cloud/things/{name}")).await.unwrap_or(Value::Null);
        let principals = thing["principals"].as_array().cloned().unwrap_or_default();
        let active = principals.iter().filter(|p| p["status"] == "ACTIVE").count();
        if principals.len() != 1 || active != 1 {
            report
                .problems
                .push(format!("certificates: {name} has {} certificate(s), {active} active", principals.len()));
            continue;
        }
        // The bundle holds the key of the registered certificate (not another writer's).
        let bundle = std::fs::read(dir.path().join("artifacts").join(name).join(name).join("certs.zip"));
        let entries = bundle.ok().and_then(|b| {
            Some((
                ggprov_pki::read_zip_entry(&b, "certs/cert.pem")?,
                ggprov_pki::read_zip_entry(&b, "certs/private.key")?,
            ))
        });
        let Some((cert, key)) = entries else {
            report.problems.push(format!("keys: {name} has no complete certs bundle"));
            continue;
        };
        if ggprov_pki::fingerprint(&cert).ok().as_deref() != principals[0]["certificateId"].as_str()
            || !ggprov_pki::key_matches(&cert, &ggprov_domain::ports::SecretPem::new(key)).unwrap_or(false)
        {
            report.problems.push(format!("keys: {name}'s bundle does not hold the registered certificate's key"));
        }
    }
    for name in &claim_names {
        let is_core = status_of(&api, &format!("/cores/{name}")).await? == 200;
        let is_device = status_of(&api, &format!("/devices/{name}")).await? == 200;
        if is_core == is_device {
            report.problems.push(format!("kinds: {name} is a core: {is_core}, a client device: {is_device}"));
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    report.jobs = tasks.len() + 1;
    for base in [&api_server.base, &worker.base] {
        let page = api.client.get(format!("{base}/metrics")).send().await?.text().await?;
        report.deliveries += counter_sum(&page, "ggprov_jobs_total");
    }
    Ok(report)
}

/// For two accepted one-core Create tasks of one name (as `GET /coreTasks/{id}` answers them):
/// whether the later-stamped task was stamped before the earlier one's item ended, said in
/// words, or `None` when the stamps show one stored after the other had ended. Stamps are
/// taken before the store's write, so on SQLite (whose busy handler does not grant the write
/// lock in arrival order) an overlap is not proof that both were open at once; on DynamoDB,
/// with no lock wait between stamp and write, the stamps' order is close to the writes'.
pub fn stamps_overlap(one: &Value, other: &Value) -> Option<String> {
    let created = |task: &Value| task["createdAt"].as_str().unwrap_or("").to_owned();
    let (first, second) = if created(one) <= created(other) { (one, other) } else { (other, one) };
    let first_ended = first["cores"][0]["updatedAt"].as_str().unwrap_or("");
    (created(second).as_str() < first_ended)
        .then(|| format!("the second Create is stamped {} and the first's item ended {first_ended}", created(second)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::stamps_overlap;

    fn task(created: &str, ended: &str) -> serde_json::Value {
        json!({"createdAt": created, "cores": [{"updatedAt": ended}]})
    }

    #[test]
    fn a_task_stamped_before_the_other_ended_overlaps_in_either_order() {
        let first = task("2026-12-01T10:00:00.100Z", "2026-12-01T10:00:00.400Z");
        let second = task("2026-12-01T10:00:00.300Z", "2026-12-01T10:00:00.900Z");
        let said = stamps_overlap(&first, &second).expect("overlap");
        assert!(said.contains("10:00:00.300Z") && said.contains("10:00:00.400Z"), "{said}");
        assert_eq!(stamps_overlap(&second, &first), Some(said));
        let after = task("2026-12-01T10:00:00.400Z", "2026-12-01T10:00:00.900Z");
        assert_eq!(stamps_overlap(&first, &after), None, "stored when the first had ended");
    }
}
