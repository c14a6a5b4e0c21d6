//! `DeploymentRecords` on SQLite: deployment tasks' targets (items of the task), template
//! deployments, and each core's deployment state, changed only through the domain's
//! transitions (`Core::assign_deployment`, `record_deployment_failure`, `apply_outcome`).

use async_trait::async_trait;
use ggprov_domain::cores::{Core, Event, NewCore, TaskItem, TemplateRef};
use ggprov_domain::ports::{DeploymentOutcome, DeploymentRecords, StoreError};
use ggprov_domain::rollout::RolloutState;
use ggprov_domain::software::Nucleus;
use ggprov_domain::{Page, PageRequest, TaskId, TaskStatus, ThingName, Timestamp};
use rusqlite::Connection;

use crate::cores::{read_core, write_core};
use crate::rows::{end_item, item_from_row, write_event};
use crate::sql::query;
use crate::{SqliteStore, unavailable};

/// Ends a deployment item and applies `change` to its core (if the core exists), in one
/// transaction; a duplicate delivery (the item ended already) changes nothing.
async fn end_deployment_item(
    store: &SqliteStore,
    task: &TaskId,
    core: &ThingName,
    outcome: TaskStatus,
    message: Option<&str>,
    change: impl FnOnce(&mut Core, Timestamp),
) -> Result<(), StoreError> {
    let now = Timestamp::now();
    store
        .write(|c| {
            if !end_item(c, task, core, outcome, message, now)? {
                return Ok(());
            }
            if let Some(before) = read_core(c, core.as_str())? {
                let mut after = before.clone();
                change(&mut after, now);
                write_core(c, Some(&before), Some(&after))?;
                if outcome == TaskStatus::Success {
                    query("UPDATE task_items SET previous = ? WHERE task_id = ? AND name = ?")
                        .bind(serde_json::to_string(&before.desired).expect("serialises"))
                        .bind(task.as_str())
                        .bind(core.as_str())
                        .execute(c)
                        .map_err(unavailable)?;
                }
            }
            Ok(())
        })
        .await
}

/// Remembers which template version a Greengrass deployment (revision) deploys.
pub(crate) fn record_revision(c: &Connection, deployment_id: &str, template: &TemplateRef) -> Result<(), StoreError> {
    query(
        "INSERT OR IGNORE INTO deployment_revisions (deployment_id, template_name, template_version) VALUES (?, ?, ?)",
    )
    .bind(deployment_id)
    .bind(&template.name)
    .bind(i64::from(template.version))
    .execute(c)
    .map_err(unavailable)?;
    Ok(())
}

fn expand_items(
    c: &Connection,
    task: &TaskId,
    cores: &[ThingName],
    waves: &[u32],
    now: Timestamp,
) -> Result<(), StoreError> {
    for (i, core) in cores.iter().enumerate() {
        query(
            "INSERT INTO task_items (task_id, name, request, status, created_at, wave) VALUES (?, ?, ?, 'Waiting', ?, ?)",
        )
        .bind(task.as_str())
        .bind(core.as_str())
        .bind(serde_json::json!({"name": core.as_str(), "provisioningTemplate": ""}).to_string())
        .bind(now.as_millis())
        .bind(i64::from(waves.get(i).copied().unwrap_or(0)))
        .execute(c)
        .map_err(unavailable)?;
    }
    Ok(())
}

#[async_trait]
impl DeploymentRecords for SqliteStore {
    async fn unexpanded_deployment_tasks(&self, before: Timestamp) -> Result<Vec<TaskId>, StoreError> {
        let rows =
            query("SELECT id FROM tasks WHERE kind = 'deployment' AND expanded = 0 AND created_at < ? ORDER BY id")
                .bind(before.as_millis())
                .fetch_all(self.reader())
                .map_err(unavailable)?;
        Ok(rows.iter().map(|r| TaskId::from_text(r.get("id"))).collect())
    }

    async fn expand_deployment_task(
        &self,
        task: &TaskId,
        cores: &[ThingName],
        waves: &[u32],
        batch_size: u32,
        events: &[Event],
        rollout: Option<&RolloutState>,
    ) -> Result<bool, StoreError> {
        let now = Timestamp::now();
        let batches_total = cores.len().div_ceil(batch_size.max(1) as usize) as i64;
        self.write(|c| {
            // The rollout is saved only if nobody changed it since it was read (an operator's
            // pause before the expansion is kept: the caller reads again and retries).
            let rollout = rollout.map(|r| {
                let mut next = r.clone();
                next.rev += 1;
                (r.rev, next)
            });
            let claimed = query(
                "UPDATE tasks SET expanded = 1, batches_total = ?, batch_size = ?, rollout = COALESCE(?, rollout), \
                 rollout_active = ? WHERE id = ? AND expanded = 0 AND (? IS NULL OR json_extract(rollout, '$.rev') = ?)",
            )
            .bind(batches_total)
            .bind(i64::from(batch_size))
            .bind(rollout.as_ref().map(|(_, r)| serde_json::to_string(r).expect("serialises")))
            .bind(rollout.as_ref().is_some_and(|(_, r)| r.is_active()))
            .bind(task.as_str())
            .bind(rollout.as_ref().map(|(rev, _)| *rev as i64))
            .bind(rollout.as_ref().map(|(rev, _)| *rev as i64))
            .execute(c)
            .map_err(unavailable)?;
            if claimed.rows_affected() == 0 {
                return Ok(false);
            }
            expand_items(c, task, cores, waves, now)?;
            for event in events {
                write_event(c, event, now)?;
            }
            Ok(true)
        })
        .await
    }

    async fn fail_deployment_task(&self, task: &TaskId, message: &str) -> Result<(), StoreError> {
        query("UPDATE tasks SET expanded = 1, batches_total = 0, status_message = ? WHERE id = ?")
            .bind(message)
            .bind(task.as_str())
            .execute_write(&self.db)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn core_deployments(
        &self,
        core: &ThingName,
        page: PageRequest<TaskId>,
    ) -> Result<Page<(TaskId, TaskItem<NewCore>), TaskId>, StoreError> {
        let rows = query(
            "SELECT i.task_id, i.name, i.request, i.status, i.status_message, i.created_at, i.updated_at FROM task_items i \
             JOIN tasks t ON t.id = i.task_id WHERE t.kind = 'deployment' AND i.name = ? AND i.task_id > ? ORDER BY i.task_id LIMIT ?",
        )
        .bind(core.as_str())
        .bind(page.exclusive_start.as_ref().map_or("", TaskId::as_str))
        .bind(i64::from(page.limit) + 1)
        .fetch_all(self.reader())
        .map_err(unavailable)?;
        let items = rows
            .iter()
            .map(|r| Ok((TaskId::from_text(r.get("task_id")), item_from_row(r)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Page::from_overfetch(items, page.limit, |(id, _)| id.clone()))
    }

    async fn template_deployment(&self, template: &TemplateRef) -> Result<Option<String>, StoreError> {
        let row =
            query("SELECT deployment_id FROM template_deployments WHERE template_name = ? AND template_version = ?")
                .bind(&template.name)
                .bind(i64::from(template.version))
                .fetch_optional(self.reader())
                .map_err(unavailable)?;
        Ok(row.map(|r| r.get("deployment_id")))
    }

    async fn save_template_deployment(
        &self,
        template: &TemplateRef,
        group: &str,
        deployment_id: &str,
    ) -> Result<String, StoreError> {
        self.write(|c| {
            query("INSERT OR IGNORE INTO template_deployments (template_name, template_version, thing_group, deployment_id, created_at) VALUES (?, ?, ?, ?, ?)")
                .bind(&template.name)
                .bind(i64::from(template.version))
                .bind(group)
                .bind(deployment_id)
                .bind(Timestamp::now().as_millis())
                .execute(c)
                .map_err(unavailable)?;
            record_revision(c, deployment_id, template)
        })
        .await?;
        self.template_deployment(template).await?.ok_or_else(|| StoreError::unavailable("template deployment vanished"))
    }

    async fn template_of_deployment(&self, deployment_id: &str) -> Result<Option<TemplateRef>, StoreError> {
        let row = query("SELECT template_name, template_version FROM deployment_revisions WHERE deployment_id = ?")
            .bind(deployment_id)
            .fetch_optional(self.reader())
            .map_err(unavailable)?;
        Ok(row.map(|r| TemplateRef { name: r.get("template_name"), version: r.get::<i64>("template_version") as u32 }))
    }

    async fn complete_deployment_item(
        &self,
        task: &TaskId,
        core: &ThingName,
        template: &TemplateRef,
        deployment_id: &str,
        nucleus: Option<&Nucleus>,
        moved_at: Timestamp,
    ) -> Result<(), StoreError> {
        end_deployment_item(self, task, core, TaskStatus::Success, None, |c, now| {
            c.assign_deployment(template, deployment_id, nucleus, moved_at.min(now));
        })
        .await
    }

    async fn fail_deployment_item(&self, task: &TaskId, core: &ThingName, message: &str) -> Result<(), StoreError> {
        end_deployment_item(self, task, core, TaskStatus::Failure, Some(message), |c, now| {
            c.record_deployment_failure(message, now);
        })
        .await
    }

    async fn apply_deployment_outcome(
        &self,
        outcome: &DeploymentOutcome,
        template: &TemplateRef,
        event: &Event,
    ) -> Result<bool, StoreError> {
        self.write(|c| {
            let Some(before) = read_core(c, &outcome.core_name)? else {
                return Ok(false);
            };
            let mut after = before.clone();
            if !after.apply_outcome(outcome, template) {
                return Ok(false);
            }
            write_core(c, Some(&before), Some(&after))?;
            write_event(c, event, Timestamp::now())?;
            Ok(true)
        })
        .await
    }
}
