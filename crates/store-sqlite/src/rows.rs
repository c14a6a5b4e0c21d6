//! Row mapping and the writes every record family shares (item endings, outbox events).

use ggprov_domain::cores::{Core, DeploymentStatus, Device, Event, NewCore, StoredEvent, TaskItem, TemplateRef};
use ggprov_domain::ports::StoreError;
use ggprov_domain::{TaskId, TaskStatus, TaskType, ThingName, Timestamp};
use rusqlite::Connection;

use crate::sql::{Row, query};
use crate::unavailable;

pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::unavailable(format!("stored data is invalid: {what}"))
}

pub(crate) fn ts(ms: i64) -> Result<Timestamp, StoreError> {
    Timestamp::from_millis(ms).ok_or_else(|| corrupt(format!("timestamp {ms}")))
}

pub(crate) fn opt_ts(ms: Option<i64>) -> Result<Option<Timestamp>, StoreError> {
    ms.map(ts).transpose()
}

pub(crate) fn thing(name: &str) -> Result<ThingName, StoreError> {
    ThingName::parse(name).map_err(|_| corrupt(format!("thing name {name}")))
}

pub(crate) fn status(text: &str) -> Result<TaskStatus, StoreError> {
    TaskStatus::parse(text).ok_or_else(|| corrupt(format!("status {text}")))
}

pub(crate) fn task_type(text: &str) -> Result<TaskType, StoreError> {
    match text {
        "Create" => Ok(TaskType::Create),
        "Delete" => Ok(TaskType::Delete),
        other => Err(corrupt(format!("task type {other}"))),
    }
}

pub(crate) fn item_from_row(row: &Row) -> Result<TaskItem<NewCore>, StoreError> {
    Ok(TaskItem {
        name: thing(row.try_get("name").map_err(unavailable)?)?,
        request: serde_json::from_str(row.try_get("request").map_err(unavailable)?).map_err(corrupt)?,
        status: status(row.try_get("status").map_err(unavailable)?)?,
        status_message: row.try_get("status_message").map_err(unavailable)?,
        created_at: ts(row.try_get("created_at").map_err(unavailable)?)?,
        updated_at: opt_ts(row.try_get("updated_at").map_err(unavailable)?)?,
    })
}

pub(crate) fn core_from_row(row: &Row) -> Result<Core, StoreError> {
    let get_str = |col: &str| row.try_get::<String>(col).map_err(unavailable);
    Ok(Core {
        name: thing(&get_str("name")?)?,
        provisioning_template: get_str("provisioning_template")?,
        desired: TemplateRef {
            name: get_str("desired_name")?,
            version: row.try_get::<i64>("desired_version").map_err(unavailable)? as u32,
        },
        reported: TemplateRef {
            name: get_str("reported_name")?,
            version: row.try_get::<i64>("reported_version").map_err(unavailable)? as u32,
        },
        deployment_status: DeploymentStatus::parse(&get_str("deployment_status")?),
        deployment_status_message: row.try_get("deployment_status_message").map_err(unavailable)?,
        artifacts: serde_json::from_str(&get_str("artifacts")?).map_err(corrupt)?,
        desired_deployment_id: row.try_get("desired_deployment_id").map_err(unavailable)?,
        status_at: opt_ts(row.try_get("status_at").map_err(unavailable)?)?,
        software: serde_json::from_str(&get_str("software")?).map_err(corrupt)?,
        certificate: certificate_column(row)?,
        created_at: ts(row.try_get("created_at").map_err(unavailable)?)?,
        updated_at: opt_ts(row.try_get("updated_at").map_err(unavailable)?)?,
    })
}

pub(crate) fn device_from_row(row: &Row) -> Result<Device, StoreError> {
    let get_str = |col: &str| row.try_get::<String>(col).map_err(unavailable);
    Ok(Device {
        name: thing(&get_str("name")?)?,
        core_name: thing(&get_str("core_name")?)?,
        provisioning_template: get_str("provisioning_template")?,
        artifacts: serde_json::from_str(&get_str("artifacts")?).map_err(corrupt)?,
        certificate: certificate_column(row)?,
        created_at: ts(row.try_get("created_at").map_err(unavailable)?)?,
        updated_at: opt_ts(row.try_get("updated_at").map_err(unavailable)?)?,
    })
}

fn certificate_column(row: &Row) -> Result<Option<ggprov_domain::certificates::CertificateInfo>, StoreError> {
    row.try_get::<Option<String>>("certificate")
        .map_err(unavailable)?
        .map(|text| serde_json::from_str(&text).map_err(corrupt))
        .transpose()
}

pub(crate) fn event_from_row(r: &Row) -> Result<StoredEvent, StoreError> {
    Ok(StoredEvent {
        id: r.get("id"),
        sequence: r.get::<i64>("sequence") as u64,
        event: Event {
            detail_type: r.get("detail_type"),
            detail: serde_json::from_str(r.get_str("detail")).map_err(corrupt)?,
        },
        time: ts(r.get("created_at"))?,
    })
}

pub(crate) fn write_event(c: &Connection, event: &Event, now: Timestamp) -> Result<(), StoreError> {
    query("INSERT INTO outbox (id, detail_type, detail, created_at) VALUES (?, ?, ?, ?)")
        .bind(uuid::Uuid::new_v4().simple().to_string())
        .bind(&event.detail_type)
        .bind(event.detail.to_string())
        .bind(now.as_millis())
        .execute(c)
        .map_err(unavailable)?;
    Ok(())
}

/// Ends an unfinished item; `false` when it had already ended (a duplicate delivery).
pub(crate) fn end_item(
    c: &Connection,
    task: &TaskId,
    name: &ThingName,
    outcome: TaskStatus,
    message: Option<&str>,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let ended = query(
        "UPDATE task_items SET status = ?, status_message = ?, updated_at = ? \
         WHERE task_id = ? AND name = ? AND status NOT IN ('Success', 'Failure')",
    )
    .bind(outcome.as_str())
    .bind(message)
    .bind(now.as_millis())
    .bind(task.as_str())
    .bind(name.as_str())
    .execute(c)
    .map_err(unavailable)?;
    if ended.rows_affected() != 1 {
        return Ok(false);
    }
    // The item's claim on its thing goes with it (deployment items hold none).
    query("DELETE FROM thing_claims WHERE name = ? AND task_id = ?")
        .bind(name.as_str())
        .bind(task.as_str())
        .execute(c)
        .map_err(unavailable)?;
    Ok(true)
}

/// Which of `names` have a row in `table` (`cores` or `devices`), 500 names a query.
pub(crate) fn existing(
    db: &crate::inline::Database,
    table: &'static str,
    names: &[ThingName],
) -> Result<std::collections::BTreeSet<ThingName>, StoreError> {
    let mut found = std::collections::BTreeSet::new();
    for chunk in names.chunks(500) {
        let marks = vec!["?"; chunk.len()].join(",");
        // The table name comes from this crate only.
        let sql = format!("SELECT name FROM {table} WHERE name IN ({marks})");
        let mut query = query(sql);
        for name in chunk {
            query = query.bind(name.as_str());
        }
        for row in query.fetch_all(db).map_err(unavailable)? {
            found.insert(thing(row.try_get("name").map_err(unavailable)?)?);
        }
    }
    Ok(found)
}
