//! `RolloutRecords` on SQLite: the rollout state in `tasks.rollout` (conditional on its `rev`),
//! items' waves and reports in `task_items`, retry revisions in `tasks.revision`.

use async_trait::async_trait;
use ggprov_domain::cores::{Event, TemplateRef};
use ggprov_domain::ports::{RolloutRecords, StoreError};
use ggprov_domain::rollout::{CoreDeploymentView, ItemReport, RolloutItem, RolloutState};
use ggprov_domain::{TaskId, ThingName, Timestamp};

use crate::rows::{core_from_row, corrupt, status, thing, write_event};
use crate::sql::query;
use crate::{SqliteStore, unavailable};

#[async_trait]
impl RolloutRecords for SqliteStore {
    async fn active_rollouts(&self) -> Result<Vec<TaskId>, StoreError> {
        let rows = query("SELECT id FROM tasks WHERE rollout_active = 1 AND expanded = 1 ORDER BY id")
            .fetch_all(self.reader())
            .map_err(unavailable)?;
        Ok(rows.iter().map(|r| TaskId::from_text(r.get("id"))).collect())
    }

    async fn save_rollout(
        &self,
        task: &TaskId,
        state: &mut RolloutState,
        event: Option<&Event>,
        skip: Option<&str>,
    ) -> Result<bool, StoreError> {
        let now = Timestamp::now();
        let mut next = state.clone();
        next.rev += 1;
        self.write(|c| {
            let saved = query(
                "UPDATE tasks SET rollout = ?, rollout_active = ? WHERE id = ? AND json_extract(rollout, '$.rev') = ?",
            )
            .bind(serde_json::to_string(&next).expect("serialises"))
            .bind(next.is_active())
            .bind(task.as_str())
            .bind(i64::try_from(state.rev).unwrap_or(i64::MAX))
            .execute(c)
            .map_err(unavailable)?;
            if saved.rows_affected() != 1 {
                return Ok(false);
            }
            if let Some(message) = skip {
                query(
                    "UPDATE task_items SET status = 'Failure', status_message = ?, report = 'SKIPPED', updated_at = ? \
                     WHERE task_id = ? AND status = 'Waiting'",
                )
                .bind(message)
                .bind(now.as_millis())
                .bind(task.as_str())
                .execute(c)
                .map_err(unavailable)?;
            }
            if let Some(event) = event {
                write_event(c, event, now)?;
            }
            *state = next;
            Ok(true)
        })
        .await
    }

    async fn rollout_items(&self, task: &TaskId) -> Result<Vec<RolloutItem>, StoreError> {
        let rows = query(
            "SELECT i.name AS item_name, i.status AS item_status, i.wave, i.report, i.previous, c.* FROM task_items i \
             LEFT JOIN cores c ON c.name = i.name WHERE i.task_id = ? ORDER BY i.name",
        )
        .bind(task.as_str())
        .fetch_all(self.reader())
        .map_err(unavailable)?;
        rows.iter()
            .map(|r| {
                let report: Option<String> = r.try_get("report").map_err(unavailable)?;
                let previous: Option<String> = r.try_get("previous").map_err(unavailable)?;
                let has_core = r.try_get::<Option<String>>("name").map_err(unavailable)?.is_some();
                Ok(RolloutItem {
                    name: thing(r.try_get("item_name").map_err(unavailable)?)?,
                    wave: u32::try_from(r.try_get::<i64>("wave").map_err(unavailable)?).map_err(corrupt)?,
                    status: status(r.try_get("item_status").map_err(unavailable)?)?,
                    report: report.as_deref().map(|t| ItemReport::parse(t).ok_or_else(|| corrupt(t))).transpose()?,
                    previous: previous.map(|p| serde_json::from_str::<TemplateRef>(&p)).transpose().map_err(corrupt)?,
                    core: if has_core { Some(CoreDeploymentView::from(&core_from_row(r)?)) } else { None },
                })
            })
            .collect()
    }

    async fn save_item_reports(&self, task: &TaskId, reports: &[(ThingName, ItemReport)]) -> Result<(), StoreError> {
        for chunk in reports.chunks(500) {
            self.write(|c| {
                for (name, report) in chunk {
                    query("UPDATE task_items SET report = ? WHERE task_id = ? AND name = ? AND report IS NULL")
                        .bind(report.as_str())
                        .bind(task.as_str())
                        .bind(name.as_str())
                        .execute(c)
                        .map_err(unavailable)?;
                }
                Ok(())
            })
            .await?;
        }
        Ok(())
    }

    async fn save_task_revision(
        &self,
        task: &TaskId,
        template: &TemplateRef,
        deployment_id: &str,
    ) -> Result<String, StoreError> {
        self.write(|c| {
            let won = query("UPDATE tasks SET revision = ? WHERE id = ? AND revision IS NULL")
                .bind(deployment_id)
                .bind(task.as_str())
                .execute(c)
                .map_err(unavailable)?
                .rows_affected()
                == 1;
            if won {
                query(
                    "UPDATE template_deployments SET deployment_id = ? WHERE template_name = ? AND template_version = ?",
                )
                .bind(deployment_id)
                .bind(&template.name)
                .bind(i64::from(template.version))
                .execute(c)
                .map_err(unavailable)?;
                crate::deployments::record_revision(c, deployment_id, template)?;
            }
            let recorded: String = query("SELECT revision FROM tasks WHERE id = ?")
                .bind(task.as_str())
                .fetch_one(c)
                .map_err(unavailable)?
                .get("revision");
            Ok(recorded)
        })
        .await
    }
}
