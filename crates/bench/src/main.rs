//! `ggprov-bench`: throughput, quota, latency, fan-out, idle, fault and crash runs.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use ggprov_bench::goals::{Better, Goal};
use ggprov_bench::server::locate_ggprov;
use ggprov_bench::verify::verify;
use ggprov_bench::{Api, Server, names, quantile_ms};
use serde_json::{Value, json};

/// Measure ggprov on the embedded default (it is started for each run on a fresh data directory).
#[derive(Parser)]
#[command(name = "ggprov-bench")]
struct Cli {
    /// The ggprov binary (default: the one next to this harness, built if missing).
    #[arg(long, global = true)]
    ggprov: Option<PathBuf>,
    /// Where JSON results go.
    #[arg(long, global = true, default_value = "target/bench")]
    out: PathBuf,
    /// Fail when a ratio misses its issue-18 goal by more than 5 % (absolute figures are only
    /// reported).
    #[arg(long, global = true)]
    check: bool,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// N cores from POST /coreTasks to all Success.
    Throughput {
        #[arg(long, default_value_t = 10_000)]
        cores: usize,
    },
    /// The same with the local cloud's AWS quotas on.
    Quota {
        #[arg(long, default_value_t = 300)]
        cores: usize,
        /// The simulated account's quotas as a multiple of AWS's defaults. Below 1, ggprov is
        /// configured with the defaults and must adapt (AIMD); above 1, it is told the raised
        /// quotas (`GGPROV_RATE_LIMIT=aws,API=rate,...`), as an operator would.
        #[arg(long, default_value_t = 1.0)]
        quota_scale: f64,
    },
    /// A certificate rotation of N cores under AWS's default quotas (provisioned first without
    /// them): cores/s as a fraction of the binding quota; exits non-zero unless every core ends
    /// with one ACTIVE certificate. For analysis, `GGPROV_BENCH_RATE_LIMIT` replaces the
    /// server's `GGPROV_RATE_LIMIT` (`aws`) and `GGPROV_BENCH_NO_QUOTAS` leaves the local cloud's
    /// quotas off.
    Rotation {
        #[arg(long, default_value_t = 300)]
        cores: usize,
    },
    /// Latency and throughput of `/health` (the reference) and five routes (POST /applications
    /// with a 20-service Compose file).
    Latency {
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Requests to each POST route.
        #[arg(long, default_value_t = 5_000)]
        requests: usize,
        /// Requests to each GET route: at tens of thousands a second, 5,000 last a fifth of a
        /// second and their shares of `/health` moved by ±0.15 between runs.
        #[arg(long, default_value_t = 40_000)]
        get_requests: usize,
    },
    /// `GET /fleet/software` and `GET /fleet/summary` over a fleet of N cores (seeded straight
    /// into the store: 20 template versions, 8 nucleus versions, 4 platforms).
    Software {
        #[arg(long, default_value_t = 100_000)]
        cores: u32,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        #[arg(long, default_value_t = 5_000)]
        requests: usize,
    },
    /// A deployment task to N cores.
    Fanout {
        #[arg(long, default_value_t = 1_000)]
        cores: usize,
    },
    /// Start-up time and idle memory.
    Idle,
    /// Throttling 0.2 + errors 0.05: every core must still succeed.
    Fault {
        #[arg(long, default_value_t = 200)]
        cores: usize,
    },
    /// Simultaneous duplicate Creates, core/device claims of one name, and jobs delivered to two
    /// workers; then: one certificate per thing, one kind per name, every task ended.
    Race {
        #[arg(long, default_value_t = 500)]
        pairs: usize,
        #[arg(long, default_value_t = 100)]
        claims: usize,
    },
    /// A staged rollout over N cores in W waves, then an aborting one (every tenth core fails,
    /// 5 % threshold): wave gaps, abort reaction, AWS calls per core.
    Rollout {
        #[arg(long, default_value_t = 10_000)]
        cores: usize,
        #[arg(long, default_value_t = 5)]
        waves: usize,
    },
    /// SIGKILL during a task, K times; then verify.
    Crash {
        #[arg(long, default_value_t = 1_000)]
        cores: usize,
        #[arg(long, default_value_t = 5)]
        kills: usize,
    },
}

/// A Compose file of 20 services with pinned images, ports, volumes and environment: what a
/// sizeable application sends to `POST /applications`.
fn twenty_service_compose() -> String {
    let mut text =
        String::from("x-common: &common\n  restart: unless-stopped\n  logging:\n    driver: local\nservices:\n");
    for i in 0..20 {
        let image = match i % 3 {
            0 => format!("public.ecr.aws/acme/svc-{i}:1.{i}.0"),
            1 => format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/acme/svc-{i}:2.{i}"),
            _ => format!("acme/svc-{i}@sha256:{:064x}", i + 1),
        };
        text.push_str(&format!(
            "  svc-{i}:\n    <<: *common\n    image: {image}\n    container_name: acme-svc-{i}\n    ports:\n      - \"{}:8080\"\n    environment:\n      SERVICE: svc-{i}\n      LOG_LEVEL: info\n    volumes:\n      - data-{i}:/var/lib/svc\n",
            9000 + i
        ));
    }
    text.push_str("volumes:\n");
    for i in 0..20 {
        text.push_str(&format!("  data-{i}: {{}}\n"));
    }
    text
}

fn print_table(title: &str, rows: &[(&str, String)]) {
    println!("\n{title}");
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in rows {
        println!("  {key:<width$}  {value}");
    }
}

fn save(out: &std::path::Path, name: &str, value: &Value) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    let path = out.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(value)?)?;
    println!("  (written to {})", path.display());
    Ok(())
}

/// Starts ggprov on a fresh data directory, removed when the run ends unless
/// `GGPROV_BENCH_KEEP_DATA` is set: then it is left for inspection (and so that no removed
/// files slow the next run's file creation on a journal-less ext4; `docs/performance.md`).
fn start(binary: &std::path::Path, env: &[(&str, &str)]) -> anyhow::Result<(Server, tempfile::TempDir)> {
    let mut dir = tempfile::Builder::new().prefix("ggprov-bench-").tempdir()?;
    if std::env::var_os("GGPROV_BENCH_KEEP_DATA").is_some() {
        dir.disable_cleanup(true);
        println!("  data directory kept: {}", dir.path().display());
    }
    let server = Server::start(binary, dir.path(), env)?;
    Ok((server, dir))
}

/// Sends `requests` requests from `concurrency` clients at once (`request(i)` builds the i-th);
/// returns the sorted latencies of the successful ones and the seconds it took.
async fn load(
    concurrency: usize,
    requests: usize,
    request: impl Fn(usize) -> reqwest::RequestBuilder,
) -> (Vec<Duration>, f64) {
    let started = Instant::now();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    let latencies = futures::future::join_all((0..concurrency).map(|_| async {
        let mut mine = Vec::new();
        loop {
            let i = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if i >= requests {
                return mine;
            }
            let t = Instant::now();
            let ok = request(i).send().await.map(|r| r.status().is_success()).unwrap_or(false);
            if ok {
                mine.push(t.elapsed());
            }
        }
    }))
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    let mut all: Vec<Duration> = latencies.into_iter().flatten().collect();
    all.sort();
    (all, elapsed)
}

/// Provisions `n` cores and returns (seconds, task).
/// The rate the AWS default quotas (times `scale`) allow: the lowest quota divided by the whole
/// number of calls each core needs of that API (calls made once per run, such as a policy
/// group's set-up, round to none; throttled calls counted in `per_core` round away too).
/// Returns the rate and what binds.
fn binding_quota(calls: &Value, per_core: &dyn Fn(&str) -> f64, scale: f64) -> (f64, String) {
    let mut binding = (f64::INFINITY, String::from("nothing"));
    for api in calls.as_object().into_iter().flat_map(|all| all.keys()) {
        let needed = per_core(api).round();
        if needed < 1.0 {
            continue;
        }
        let quota = ggprov_domain::quotas::aws_default_rate(api) * scale;
        let rate = quota / needed;
        if rate < binding.0 {
            binding = (rate, format!("{api} {quota}/s, {needed} a core"));
        }
    }
    binding
}

/// `API n.nn, ...` for every API the run called.
fn calls_a_core(calls: &Value, per_core: &dyn Fn(&str) -> f64) -> String {
    calls
        .as_object()
        .map(|all| {
            all.keys()
                .map(|api| (api, per_core(api)))
                .filter(|(_, n)| *n > 0.0)
                .map(|(api, n)| format!("{api} {n:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

async fn provision(api: &Api, n: usize, prefix: &str) -> anyhow::Result<(f64, String, Vec<String>)> {
    let cores = names(prefix, n);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for chunk in cores.chunks(5_000) {
        tasks.push(api.create_cores(chunk).await?);
    }
    let (mut first_created, mut last_updated) = (i64::MAX, i64::MIN);
    for task in &tasks {
        let done = api.wait_task(&format!("/coreTasks/{task}"), Duration::from_secs(3_600)).await?;
        if done["taskStatus"] != "Success" {
            bail!("task {task} ended {}", done["taskStatus"]);
        }
        first_created = first_created.min(task_millis(&done, "createdAt")?);
        last_updated = last_updated.max(task_millis(&done, "updatedAt")?);
    }
    // The tasks' own timestamps (milliseconds) from the first one's creation to the last one's
    // end: the harness's 100 ms polls would add up to a tenth of a second to each run, a
    // tenth of a 1,000-core run's time. The wall clock bounds it from above.
    let seconds = ((last_updated - first_created) as f64 / 1000.0).min(started.elapsed().as_secs_f64());
    Ok((seconds, tasks.remove(0), cores))
}

/// A task's timestamp `field`, in milliseconds since the epoch.
fn task_millis(task: &serde_json::Value, field: &str) -> anyhow::Result<i64> {
    let text = task[field].as_str().with_context(|| format!("the task has no {field}"))?;
    Ok(text.parse::<ggprov_domain::Timestamp>().with_context(|| format!("the task's {field}"))?.as_millis())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let binary = match &cli.ggprov {
        Some(path) => path.clone(),
        None => locate_ggprov()?,
    };
    let profile = ggprov_bench::server::build_profile(&binary);
    match cli.scenario {
        Scenario::Throughput { cores } => {
            let (server, _dir) = start(&binary, &[])?;
            let api = Api::new(&server.base);
            let cpu_before = server.cpu_seconds();
            let (seconds, _, _) = provision(&api, cores, "tp").await?;
            let cpu = server.cpu_seconds() - cpu_before;
            let (_, peak) = server.rss_mib();
            let result = json!({"scenario": "throughput", "profile": profile, "cores": cores, "seconds": seconds,
                "coresPerSecond": cores as f64 / seconds, "cpuSecondsPerCore": cpu / cores as f64, "peakRssMiB": peak});
            print_table(
                &format!("provisioning throughput ({profile})"),
                &[
                    ("cores", cores.to_string()),
                    ("seconds", format!("{seconds:.1}")),
                    ("cores/s", format!("{:.1}", cores as f64 / seconds)),
                    ("CPU ms/core", format!("{:.2}", cpu * 1000.0 / cores as f64)),
                    ("peak RSS", format!("{peak:.1} MiB")),
                ],
            );
            save(&cli.out, "throughput", &result)?;
            ggprov_bench::goals::report(
                &[
                    Goal::absolute("cores/s", cores as f64 / seconds, Better::Higher, 1000.0),
                    Goal::absolute("CPU ms per core", cpu * 1000.0 / cores as f64, Better::Lower, 2.0),
                    Goal::absolute("peak RSS MiB", peak, Better::Lower, 100.0),
                ],
                cli.check,
            )?;
        }
        Scenario::Quota { cores, quota_scale } => {
            let rate_limit = if quota_scale > 1.0 {
                let overrides: Vec<String> = ggprov_domain::quotas::QUOTED_APIS
                    .iter()
                    .map(|api| format!("{api}={}", ggprov_domain::quotas::aws_default_rate(api) * quota_scale))
                    .collect();
                format!("aws,{}", overrides.join(","))
            } else {
                "aws".to_owned()
            };
            let (server, _dir) = start(
                &binary,
                &[("GGPROV_MAX_ATTEMPTS", "100"), ("GGPROV_RETRY_BASE_MS", "100"), ("GGPROV_RATE_LIMIT", &rate_limit)],
            )?;
            let api = Api::new(&server.base);
            api.faults(json!({"quotas": true, "quotaScale": quota_scale})).await?;
            let (seconds, task, names) = provision(&api, cores, "q").await?;
            let calls: Value = api.get("/local-cloud/calls").await?;
            let per_core = |api_name: &str| calls[api_name].as_f64().unwrap_or(0.0) / cores as f64;
            let (binding, binding_api) = binding_quota(&calls, &per_core, quota_scale);
            let rate = cores as f64 / seconds;
            let problems = verify(&api, server.data_dir(), &task, &names).await?;
            let result = json!({"scenario": "quota", "profile": profile, "cores": cores, "quotaScale": quota_scale, "seconds": seconds, "coresPerSecond": rate,
                "bindingCoresPerSecond": binding, "bindingApi": binding_api, "fractionOfQuota": rate / binding, "failedCores": problems.len(), "apiCalls": calls});
            print_table(
                &format!("provisioning under AWS default quotas x {quota_scale} ({profile})"),
                &[
                    ("cores", cores.to_string()),
                    ("seconds", format!("{seconds:.1}")),
                    ("cores/s", format!("{rate:.2}")),
                    ("binding quota", format!("{binding:.2} cores/s ({binding_api})")),
                    ("fraction", format!("{:.2}", rate / binding)),
                    ("calls a core", calls_a_core(&calls, &per_core)),
                    ("problems", problems.len().to_string()),
                ],
            );
            save(&cli.out, &format!("quota-x{quota_scale}"), &result)?;
            ggprov_bench::goals::report(
                &[Goal::ratio("fraction of the binding quota", rate / binding, Better::Higher, 0.9)],
                cli.check,
            )?;
        }
        Scenario::Rotation { cores } => {
            let (server, _dir) = start(
                &binary,
                &[
                    ("GGPROV_MAX_ATTEMPTS", "100"),
                    ("GGPROV_RETRY_BASE_MS", "100"),
                    ("GGPROV_RATE_LIMIT", &std::env::var("GGPROV_BENCH_RATE_LIMIT").unwrap_or_else(|_| "aws".into())),
                ],
            )?;
            let api = Api::new(&server.base);
            provision(&api, cores, "r").await?;
            if std::env::var_os("GGPROV_BENCH_NO_QUOTAS").is_none() {
                api.faults(json!({"quotas": true})).await?;
            }
            let before: Value = api.get("/local-cloud/calls").await?;
            let started = Instant::now();
            let response = api
                .send(
                    reqwest::Method::POST,
                    "/certificateRotationTasks",
                    &json!({"targets": {"expiringWithinDays": 36500}}),
                )
                .await?;
            let id = response.headers().get("x-taskid").context("x-taskid")?.to_str()?.to_owned();
            let task = api.wait_task(&format!("/certificateRotationTasks/{id}"), Duration::from_secs(3_600)).await?;
            let seconds = started.elapsed().as_secs_f64();
            let after: Value = api.get("/local-cloud/calls").await?;
            let calls = |api_name: &str| {
                (after[api_name].as_f64().unwrap_or(0.0) - before[api_name].as_f64().unwrap_or(0.0)) / cores as f64
            };
            let inventory: Value = api.get("/local-cloud/inventory").await?;
            let mut problems = Vec::new();
            if task["taskStatus"] != "Success" {
                problems.push(format!("task ended {}: {}", task["taskStatus"], task["counts"]));
            }
            if inventory["certificates"].as_u64() != Some(cores as u64)
                || inventory["activeCertificates"].as_u64() != Some(cores as u64)
            {
                problems.push(format!("not one ACTIVE certificate a core: {inventory}"));
            }
            let (binding, binding_api) = binding_quota(&after, &calls, 1.0);
            let rate = cores as f64 / seconds;
            let result = json!({"scenario": "rotation", "profile": profile, "cores": cores, "seconds": seconds,
                "coresPerSecond": rate, "bindingCoresPerSecond": binding, "bindingApi": binding_api, "fractionOfQuota": rate / binding,
                "problems": problems, "callsPerCore": {"AttachPolicy": calls("AttachPolicy"), "DetachPolicy": calls("DetachPolicy"),
                "RegisterCertificate": calls("RegisterCertificate")}});
            print_table(
                &format!("certificate rotation under AWS default quotas ({profile})"),
                &[
                    ("cores", cores.to_string()),
                    ("seconds", format!("{seconds:.1}")),
                    ("cores/s", format!("{rate:.2}")),
                    ("binding quota", format!("{binding:.2} cores/s ({binding_api})")),
                    ("fraction", format!("{:.2}", rate / binding)),
                    ("calls a core", calls_a_core(&after, &calls)),
                    ("problems", problems.len().to_string()),
                ],
            );
            save(&cli.out, "rotation", &result)?;
            if !problems.is_empty() {
                bail!("rotation: {}", problems.join("; "));
            }
            ggprov_bench::goals::report(
                &[Goal::ratio("fraction of the binding quota", rate / binding, Better::Higher, 0.9)],
                cli.check,
            )?;
        }
        Scenario::Latency { concurrency, requests, get_requests } => {
            let (server, _dir) = start(&binary, &[])?;
            let api = Api::new(&server.base);
            api.send(
                reqwest::Method::POST,
                "/templates",
                &json!({"name": "lat", "components": [{"key": "aws.greengrass.Cli", "version": "2.12.0"}]}),
            )
            .await?;
            let (_, _, cores) = provision(&api, 100, "lat").await?;
            let mut table = Vec::new();
            let mut results = Vec::new();
            let compose = twenty_service_compose();
            let mut health_rps = f64::NAN;
            for (route, method) in [
                // The reference: what the HTTP stack serves with no store behind it.
                ("/health", "GET"),
                ("/cores/{name}", "GET"),
                ("/templates/lat", "GET"),
                ("/templates", "POST"),
                ("/fleet/summary", "GET"),
                ("/applications", "POST"),
            ] {
                let requests = if method == "GET" { get_requests } else { requests };
                let (all, elapsed) = load(concurrency, requests, |i| match (method, route) {
                    ("POST", "/applications") => api
                        .client
                        .post(format!("{}{route}", api.base))
                        .json(&json!({"name": format!("lat-{i}"), "compose": compose})),
                    ("POST", _) => api.client.post(format!("{}{route}", api.base)).json(
                        &json!({"name": format!("lat-{i}"), "components": [{"key": "aws.greengrass.Cli", "version": "2.12.0"}]}),
                    ),
                    _ => api.client.get(format!("{}{}", api.base, route.replace("{name}", &cores[i % cores.len()]))),
                })
                .await;
                let (p50, p99, p999) = (quantile_ms(&all, 0.5), quantile_ms(&all, 0.99), quantile_ms(&all, 0.999));
                let rps = all.len() as f64 / elapsed;
                if route == "/health" {
                    health_rps = rps;
                }
                let of_health = rps / health_rps;
                table.push((
                    format!("{method} {route}"),
                    format!(
                        "p50 {p50:.2} ms  p99 {p99:.2} ms  p99.9 {p999:.2} ms  {rps:.0} req/s = {of_health:.2} of /health  ({} ok of {requests})",
                        all.len()
                    ),
                ));
                results.push(json!({"route": format!("{method} {route}"), "p50Ms": p50, "p99Ms": p99, "p999Ms": p999, "requestsPerSecond": rps, "ofHealth": of_health, "ok": all.len(), "requests": requests}));
            }
            let rows: Vec<(&str, String)> = table.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
            print_table(&format!("API latency at concurrency {concurrency} ({profile})"), &rows);
            save(
                &cli.out,
                "latency",
                &json!({"scenario": "latency", "profile": profile, "concurrency": concurrency, "routes": results}),
            )?;
            let mut goals = Vec::new();
            for r in &results {
                let route = r["route"].as_str().unwrap_or("");
                if ["GET /cores/{name}", "GET /templates/lat", "GET /fleet/summary"].contains(&route) {
                    goals.push(Goal::ratio(
                        format!("{route}: share of /health"),
                        r["ofHealth"].as_f64().unwrap_or(0.0),
                        Better::Higher,
                        0.8,
                    ));
                    goals.push(Goal::absolute(
                        format!("{route}: p99 ms"),
                        r["p99Ms"].as_f64().unwrap_or(f64::MAX),
                        Better::Lower,
                        5.0,
                    ));
                }
            }
            ggprov_bench::goals::report(&goals, cli.check)?;
        }
        Scenario::Software { cores, concurrency, requests } => {
            let dir = tempfile::tempdir()?;
            let seeding = Instant::now();
            {
                let store = ggprov_store_sqlite::SqliteStore::open(&dir.path().join("ggprov.sqlite")).await?;
                store.seed_fleet_for_benchmarks(cores, 20).await?;
            }
            let seeded = seeding.elapsed().as_secs_f64();
            let server = Server::start(&binary, dir.path(), &[])?;
            let api = Api::new(&server.base);
            let software: Value = api.get("/fleet/software").await?;
            anyhow::ensure!(
                software["total"]["cores"].as_u64() == Some(u64::from(cores)),
                "the summary counts every seeded core: {}",
                software["total"]
            );
            let mut rows = vec![("cores", format!("{cores} (seeded in {seeded:.1} s)"))];
            let mut results = Vec::new();
            let mut table = Vec::new();
            for route in ["/health", "/fleet/software", "/fleet/summary"] {
                let (all, elapsed) =
                    load(concurrency, requests, |_| api.client.get(format!("{}{route}", api.base))).await;
                let (p50, p99) = (quantile_ms(&all, 0.5), quantile_ms(&all, 0.99));
                let rps = all.len() as f64 / elapsed;
                let goal = if route == "/fleet/software" { "  (goal p99 <= 5 ms)" } else { "" };
                table.push((
                    format!("GET {route}"),
                    format!("p50 {p50:.2} ms  p99 {p99:.2} ms  {rps:.0} req/s  ({} ok of {requests}){goal}", all.len()),
                ));
                results.push(
                    json!({"route": route, "p50Ms": p50, "p99Ms": p99, "requestsPerSecond": rps, "ok": all.len()}),
                );
            }
            rows.extend(table.iter().map(|(k, v)| (k.as_str(), v.clone())));
            rows.push(("rows in /fleet/software", software["versions"].as_array().map_or(0, Vec::len).to_string()));
            print_table(&format!("fleet read models at concurrency {concurrency} ({profile})"), &rows);
            save(
                &cli.out,
                "software",
                &json!({"scenario": "software", "profile": profile, "cores": cores, "concurrency": concurrency, "routes": results}),
            )?;
        }
        Scenario::Fanout { cores } => {
            let (server, _dir) = start(&binary, &[])?;
            let api = Api::new(&server.base);
            api.send(
                reqwest::Method::POST,
                "/templates",
                &json!({"name": "fan", "components": [{"key": "aws.greengrass.Cli", "version": "2.12.0"}]}),
            )
            .await?;
            let (_, _, names) = provision(&api, cores, "fan").await?;
            let calls_before: Value = api.get("/local-cloud/calls").await?;
            let started = Instant::now();
            let response = api
                .send(
                    reqwest::Method::POST,
                    "/deploymentTasks",
                    &json!({"template": {"name": "fan"}, "targets": {"thingNames": names}}),
                )
                .await?;
            let task = response.headers().get("x-taskid").context("x-taskid")?.to_str()?.to_owned();
            api.wait_task(&format!("/deploymentTasks/{task}"), Duration::from_secs(3_600)).await?;
            let assigned = started.elapsed().as_secs_f64();
            let deadline = Instant::now() + Duration::from_secs(3_600);
            loop {
                let summary = api.get("/fleet/summary").await?;
                if summary["templates"]["fan"]["versions"]["1"]["reportedInUse"].as_u64() == Some(cores as u64) {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("cores did not report in time");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let reported = started.elapsed().as_secs_f64();
            let calls_after: Value = api.get("/local-cloud/calls").await?;
            let total = |v: &Value| v.as_object().map_or(0, |m| m.values().filter_map(Value::as_u64).sum::<u64>());
            let per_core = (total(&calls_after) - total(&calls_before)) as f64 / cores as f64;
            let deployments = api.get("/local-cloud/inventory").await?["deployments"].clone();
            print_table(
                &format!("deployment fan-out ({profile})"),
                &[
                    ("cores", cores.to_string()),
                    ("task done", format!("{assigned:.1} s")),
                    ("all reported", format!("{reported:.1} s")),
                    ("AWS calls per core", format!("{per_core:.2}")),
                    ("Greengrass deployments", deployments.to_string()),
                ],
            );
            save(
                &cli.out,
                "fanout",
                &json!({"scenario": "fanout", "profile": profile, "cores": cores, "taskSeconds": assigned,
                "reportedSeconds": reported, "awsCallsPerCore": per_core, "deployments": deployments}),
            )?;
            ggprov_bench::goals::report(
                &[Goal::ratio("AWS calls per core moved", per_core, Better::Lower, 2.0)],
                cli.check,
            )?;
        }
        Scenario::Idle => {
            let started = Instant::now();
            let (server, _dir) = start(&binary, &[])?;
            let api = Api::new(&server.base);
            let deadline = Instant::now() + Duration::from_secs(30);
            while api
                .client
                .get(format!("{}/ready", api.base))
                .send()
                .await
                .map(|r| !r.status().is_success())
                .unwrap_or(true)
            {
                if Instant::now() > deadline {
                    bail!("never ready");
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let ready = started.elapsed().as_secs_f64() * 1000.0;
            tokio::time::sleep(Duration::from_secs(2)).await;
            let (rss, _) = server.rss_mib();
            print_table(
                &format!("idle ({profile})"),
                &[("start to ready", format!("{ready:.0} ms")), ("idle RSS", format!("{rss:.1} MiB"))],
            );
            save(
                &cli.out,
                "idle",
                &json!({"scenario": "idle", "profile": profile, "startToReadyMs": ready, "idleRssMiB": rss}),
            )?;
        }
        Scenario::Fault { cores } => {
            let env = [("GGPROV_MAX_ATTEMPTS", "100"), ("GGPROV_RETRY_BASE_MS", "50")];
            let (clean_server, _d1) = start(&binary, &env)?;
            let (clean, _, _) = provision(&Api::new(&clean_server.base), cores, "clean").await?;
            drop(clean_server);
            let (server, _d2) = start(&binary, &env)?;
            let api = Api::new(&server.base);
            api.faults(json!({"throttleRate": 0.2, "errorRate": 0.05})).await?;
            let (faulty, task, names) = provision(&api, cores, "fault").await?;
            api.faults(json!({})).await?;
            let problems = verify(&api, server.data_dir(), &task, &names).await?;
            print_table(
                &format!("fault run ({profile})"),
                &[
                    ("cores", cores.to_string()),
                    ("clean", format!("{clean:.1} s")),
                    ("throttle 0.2 + errors 0.05", format!("{faulty:.1} s")),
                    ("slowdown", format!("{:.2}x", faulty / clean)),
                    ("problems", problems.len().to_string()),
                ],
            );
            save(
                &cli.out,
                "fault",
                &json!({"scenario": "fault", "profile": profile, "cores": cores, "cleanSeconds": clean, "faultSeconds": faulty, "problems": problems}),
            )?;
            for p in &problems {
                eprintln!("  {p}");
            }
            if !problems.is_empty() {
                bail!("the fault run lost or duplicated something");
            }
            ggprov_bench::goals::report(
                &[Goal::ratio("fault time / clean time", faulty / clean, Better::Lower, 1.5)],
                cli.check,
            )?;
        }
        Scenario::Race { pairs, claims } => {
            let report = ggprov_bench::race::race(&binary, pairs, claims).await?;
            print_table(
                &format!("race run ({profile})"),
                &[
                    ("duplicate Create pairs", pairs.to_string()),
                    ("core/device claims", claims.to_string()),
                    ("accepted / refused", format!("{} / {}", report.accepted, report.refused)),
                    ("pairs answered one after the other", report.sequential.to_string()),
                    ("pairs both accepted, stamps overlapping (not a verdict)", report.overlapping_stamps.to_string()),
                    ("jobs / deliveries handled", format!("{} / {}", report.jobs, report.deliveries)),
                    ("seconds", format!("{:.1}", report.seconds)),
                    ("problems", report.problems.len().to_string()),
                ],
            );
            save(
                &cli.out,
                "race",
                &json!({"scenario": "race", "profile": profile, "pairs": pairs, "claims": claims, "accepted": report.accepted, "refused": report.refused, "jobs": report.jobs, "deliveries": report.deliveries, "seconds": report.seconds, "overlappingStamps": report.overlapping_stamps, "problems": report.problems}),
            )?;
            for p in &report.problems {
                eprintln!("  {p}");
            }
            if !report.problems.is_empty() {
                bail!("the race run found things with two certificates, names of two kinds or unfinished tasks");
            }
        }
        Scenario::Rollout { cores, waves } => {
            let (server, _dir) = start(&binary, &[])?;
            let api = Api::new(&server.base);
            for (version, cli) in [(1, "2.12.0"), (2, "2.12.1")] {
                let body = json!({"name": "roll", "components": [{"key": "aws.greengrass.Cli", "version": cli}]});
                let (method, path) = if version == 1 {
                    (reqwest::Method::POST, "/templates")
                } else {
                    (reqwest::Method::PUT, "/templates/roll")
                };
                api.send(method, path, &body).await?;
            }
            let (_, _, names) = provision(&api, cores, "roll").await?;
            let figures = ggprov_bench::rollout::run(&api, "roll", &names, waves).await?;
            let max_gap = figures.wave_gaps.iter().copied().fold(0.0, f64::max);
            print_table(
                &format!("staged rollout ({profile})"),
                &[
                    ("cores", cores.to_string()),
                    ("waves", waves.to_string()),
                    ("complete rollout", format!("{:.1} s", figures.complete_seconds)),
                    (
                        "wave gaps (last report → next move)",
                        figures.wave_gaps.iter().map(|g| format!("{g:.2}")).collect::<Vec<_>>().join(", ") + " s",
                    ),
                    ("largest wave gap (goal ≤ 1 s)", format!("{max_gap:.2} s")),
                    ("abort reaction (goal ≤ 1 s)", format!("{:.2} s", figures.abort_reaction)),
                    ("cores moved after the abort", figures.moved_after_abort.to_string()),
                    ("AWS calls per core (goal ≤ 2)", format!("{:.2}", figures.aws_calls_per_core)),
                ],
            );
            save(
                &cli.out,
                "rollout",
                &json!({"scenario": "rollout", "profile": profile, "cores": cores, "waves": waves,
                "completeSeconds": figures.complete_seconds, "waveGaps": figures.wave_gaps, "maxWaveGap": max_gap,
                "abortReaction": figures.abort_reaction, "movedAfterAbort": figures.moved_after_abort,
                "awsCallsPerCore": figures.aws_calls_per_core}),
            )?;
            if figures.moved_after_abort > 0 {
                bail!("{} cores moved after the abort", figures.moved_after_abort);
            }
            ggprov_bench::goals::report(
                &[
                    Goal::ratio("AWS calls per core moved", figures.aws_calls_per_core, Better::Lower, 2.0),
                    Goal::absolute("largest wave gap s", max_gap, Better::Lower, 1.0),
                    Goal::absolute("abort reaction s", figures.abort_reaction, Better::Lower, 1.0),
                ],
                cli.check,
            )?;
        }
        Scenario::Crash { cores, kills } => {
            let env =
                [("GGPROV_WORKER_LEASE_MS", "1000"), ("GGPROV_MAX_ATTEMPTS", "100"), ("GGPROV_RETRY_BASE_MS", "50")];
            let (mut server, _dir) = start(&binary, &env)?;
            let api = Api::new(&server.base);
            let names = names("crash", cores);
            let task = api.create_cores(&names).await?;
            let started = Instant::now();
            let mut rng = fastrand::Rng::new();
            for _ in 0..kills {
                tokio::time::sleep(Duration::from_millis(rng.u64(50..600))).await;
                server.restart()?;
            }
            let api = Api::new(&server.base);
            let done = api.wait_task(&format!("/coreTasks/{task}"), Duration::from_secs(3_600)).await?;
            let seconds = started.elapsed().as_secs_f64();
            let problems = verify(&api, server.data_dir(), &task, &names).await?;
            print_table(
                &format!("crash run ({profile})"),
                &[
                    ("cores", cores.to_string()),
                    ("SIGKILLs", kills.to_string()),
                    ("task", done["taskStatus"].to_string()),
                    ("seconds", format!("{seconds:.1}")),
                    ("problems", problems.len().to_string()),
                ],
            );
            save(
                &cli.out,
                "crash",
                &json!({"scenario": "crash", "profile": profile, "cores": cores, "kills": kills, "seconds": seconds, "problems": problems}),
            )?;
            for p in &problems {
                eprintln!("  {p}");
            }
            if !problems.is_empty() {
                bail!("the crash run lost or duplicated something");
            }
        }
    }
    Ok(())
}
