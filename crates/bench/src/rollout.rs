//! The rollout run: a staged rollout over N simulated cores, watched from outside through the
//! API, for the figures the rollout issue sets goals on: seconds from a wave's last report to
//! the next wave's first move, seconds from the failure that crosses the threshold to the
//! abort, and AWS calls per core moved.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::Api;

/// What one rollout run measured.
#[derive(Debug, Default)]
pub struct RolloutFigures {
    /// Per wave transition: seconds from the wave's last report (as the API shows it) to the
    /// next wave's first move.
    pub wave_gaps: Vec<f64>,
    pub complete_seconds: f64,
    /// Seconds from the threshold being crossed (as the API shows it) to `Aborted`.
    pub abort_reaction: f64,
    /// Cores moved after the abort was seen (must be 0).
    pub moved_after_abort: u64,
    pub aws_calls_per_core: f64,
}

fn waves(task: &Value) -> Vec<Value> {
    task["rollout"]["waves"].as_array().cloned().unwrap_or_default()
}

fn total(task: &Value, field: &str) -> u64 {
    waves(task).iter().filter_map(|w| w[field].as_u64()).sum()
}

async fn submit(api: &Api, body: &Value) -> anyhow::Result<String> {
    let response = api.send(reqwest::Method::POST, "/deploymentTasks", body).await?;
    Ok(response.headers().get("x-taskid").context("x-taskid")?.to_str()?.to_owned())
}

fn calls(v: &Value) -> u64 {
    v.as_object().map_or(0, |m| m.values().filter_map(Value::as_u64).sum::<u64>())
}

/// Runs a complete rollout of template `name` v1 in `wave_count` equal waves over `cores`, then
/// an aborting one of v2 with every tenth core failing and a 5 % failure threshold.
pub async fn run(api: &Api, name: &str, cores: &[String], wave_count: usize) -> anyhow::Result<RolloutFigures> {
    let mut figures = RolloutFigures::default();
    let steps: Vec<Value> = (1..=wave_count).map(|i| json!({"percent": (i * 100).div_ceil(wave_count)})).collect();
    let calls_before = calls(&api.get("/local-cloud/calls").await?);
    let started = Instant::now();
    let id = submit(
        api,
        &json!({"template": {"name": name, "version": 1}, "targets": {"thingNames": cores}, "rollout": {"waves": steps}}),
    )
    .await?;
    let path = format!("/deploymentTasks/{id}");
    // When each wave was first seen fully reported, and when the next was first seen moving.
    let mut reported_at: Vec<Option<Instant>> = vec![None; wave_count];
    let mut moving_at: Vec<Option<Instant>> = vec![None; wave_count];
    let deadline = Instant::now() + Duration::from_secs(3_600);
    loop {
        let task = api.get(&path).await?;
        let now = Instant::now();
        for (i, wave) in waves(&task).iter().enumerate().take(wave_count) {
            if reported_at[i].is_none() && wave["planned"].as_u64() == wave["succeeded"].as_u64() {
                reported_at[i] = Some(now);
            }
            if moving_at[i].is_none() && wave["moved"].as_u64().unwrap_or(0) > 0 {
                moving_at[i] = Some(now);
            }
        }
        match task["rollout"]["state"].as_str() {
            Some("Running") => {}
            Some("Completed") => break,
            other => bail!("the rollout ended {other:?}: {}", task["rollout"]),
        }
        if now > deadline {
            bail!("the rollout did not complete in time");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    figures.complete_seconds = started.elapsed().as_secs_f64();
    for i in 1..wave_count {
        if let (Some(reported), Some(moving)) = (reported_at[i - 1], moving_at[i]) {
            figures.wave_gaps.push(moving.saturating_duration_since(reported).as_secs_f64());
        }
    }
    let calls_after = calls(&api.get("/local-cloud/calls").await?);
    figures.aws_calls_per_core = (calls_after - calls_before) as f64 / cores.len() as f64;

    // The aborting run: every tenth core fails; the 5 % threshold is crossed mid-rollout.
    let failing: Vec<&String> = cores.iter().step_by(10).collect();
    api.send(reqwest::Method::PUT, "/local-cloud/behaviors", &json!({"names": failing, "deploymentOutcome": "FAILED"}))
        .await?;
    let threshold = cores.len() as u64 * 5 / 100;
    let steps: Vec<Value> = (1..=wave_count).map(|i| json!({"percent": (i * 100).div_ceil(wave_count)})).collect();
    let id = submit(
        api,
        &json!({"template": {"name": name, "version": 2}, "targets": {"thingNames": cores}, "rollout": {
            "waves": steps, "successThreshold": 0.8, "failureThreshold": {"percent": 5}}}),
    )
    .await?;
    let path = format!("/deploymentTasks/{id}");
    let mut crossed: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(3_600);
    let aborted = loop {
        let task = api.get(&path).await?;
        let now = Instant::now();
        if crossed.is_none() && total(&task, "failed") > threshold {
            crossed = Some(now);
        }
        match task["rollout"]["state"].as_str() {
            Some("Running") => {}
            Some("Aborted") => break task,
            other => bail!("the rollout ended {other:?} instead of aborting: {}", task["rollout"]),
        }
        if now > deadline {
            bail!("the rollout did not abort in time");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let seen = Instant::now();
    figures.abort_reaction = crossed.map_or(0.0, |c| seen.saturating_duration_since(c).as_secs_f64());
    let moved_at_abort = total(&aborted, "moved");
    // Give the workers time to do anything they still would.
    tokio::time::sleep(Duration::from_secs(2)).await;
    figures.moved_after_abort = total(&api.get(&path).await?, "moved") - moved_at_abort;
    Ok(figures)
}
