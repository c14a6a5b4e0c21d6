//! `TemplateStore` on SQLite: tables `template_heads` and `template_versions`.

use async_trait::async_trait;
use ggprov_domain::ports::{StoreError, TemplateStore};
use ggprov_domain::{Page, PageRequest, Template, TemplateName, TemplateSpec, Timestamp};

use rusqlite::Connection;

use crate::sql::{Row, query};
use crate::{SqliteStore, is_unique_violation, unavailable};

/// `SELECT` of whole template versions followed by the given clauses.
macro_rules! select_versions {
    ($clauses:literal) => {
        concat!("SELECT name, version, spec, created_at, updated_at FROM template_versions", $clauses)
    };
}

fn template_from_row(row: &Row) -> Result<Template, StoreError> {
    let name: String = row.try_get("name").map_err(unavailable)?;
    let version: i64 = row.try_get("version").map_err(unavailable)?;
    let spec: String = row.try_get("spec").map_err(unavailable)?;
    let created_at: i64 = row.try_get("created_at").map_err(unavailable)?;
    let updated_at: Option<i64> = row.try_get("updated_at").map_err(unavailable)?;
    let corrupt =
        |what: &str| StoreError::unavailable(format!("stored template '{name}' v{version} has an invalid {what}"));
    Ok(Template {
        name: TemplateName::parse(&name).map_err(|_| corrupt("name"))?,
        version: u32::try_from(version).map_err(|_| corrupt("version"))?,
        spec: serde_json::from_str::<TemplateSpec>(&spec).map_err(|_| corrupt("content"))?,
        created_at: Timestamp::from_millis(created_at).ok_or_else(|| corrupt("creation time"))?,
        updated_at: match updated_at {
            Some(ms) => Some(Timestamp::from_millis(ms).ok_or_else(|| corrupt("update time"))?),
            None => None,
        },
    })
}

fn spec_json(template: &Template) -> String {
    serde_json::to_string(&template.spec).expect("a template spec always serialises")
}

/// Page size plus one: the extra row tells whether another page follows.
fn overfetch(limit: u32) -> i64 {
    i64::from(limit) + 1
}

#[async_trait]
impl TemplateStore for SqliteStore {
    async fn create_template(&self, template: &Template) -> Result<(), StoreError> {
        self.write(|c| {
            let inserted = query("INSERT INTO template_heads (name, latest_version) VALUES (?, ?)")
                .bind(template.name.as_str())
                .bind(i64::from(template.version))
                .execute(c);
            match inserted {
                Err(err) if is_unique_violation(&err) => return Err(StoreError::AlreadyExists),
                other => other.map_err(unavailable)?,
            };
            insert_version(c, template)?;
            Ok(())
        })
        .await
    }

    async fn append_template_version(&self, template: &Template) -> Result<(), StoreError> {
        let previous = i64::from(template.version) - 1;
        self.write(|c| {
            let moved = query("UPDATE template_heads SET latest_version = ? WHERE name = ? AND latest_version = ?")
                .bind(i64::from(template.version))
                .bind(template.name.as_str())
                .bind(previous)
                .execute(c)
                .map_err(unavailable)?;
            if moved.rows_affected() == 0 {
                let exists = query("SELECT 1 FROM template_heads WHERE name = ?")
                    .bind(template.name.as_str())
                    .fetch_optional(c)
                    .map_err(unavailable)?;
                return Err(if exists.is_some() { StoreError::Conflict } else { StoreError::NotFound });
            }
            insert_version(c, template)?;
            Ok(())
        })
        .await
    }

    async fn latest_template(&self, name: &TemplateName) -> Result<Option<Template>, StoreError> {
        // The state before the read: a commit during the read makes the entry stale at once.
        let at = self.read_models.current();
        if let Some(known) = self.read_models.templates.get(at, name.as_str()) {
            return Ok(known.map(|t| (*t).clone()));
        }
        let sql = "SELECT v.name, v.version, v.spec, v.created_at, v.updated_at FROM template_heads h \
                   JOIN template_versions v ON v.name = h.name AND v.version = h.latest_version WHERE h.name = ?";
        let row = query(sql).bind(name.as_str()).fetch_optional(self.reader()).map_err(unavailable)?;
        let template = row.as_ref().map(template_from_row).transpose()?;
        self.read_models.templates.put(at, name.as_str(), template.clone().map(std::sync::Arc::new));
        Ok(template)
    }

    async fn latest_versions(
        &self,
        names: &[TemplateName],
    ) -> Result<std::collections::BTreeMap<String, u32>, StoreError> {
        if names.is_empty() {
            return Ok(Default::default());
        }
        let all = self.all_latest_versions().await?;
        Ok(names.iter().filter_map(|n| all.get(n.as_str()).map(|v| (n.as_str().to_owned(), *v))).collect())
    }

    async fn template_version(&self, name: &TemplateName, version: u32) -> Result<Option<Template>, StoreError> {
        let row = query(select_versions!(" WHERE name = ? AND version = ?"))
            .bind(name.as_str())
            .bind(i64::from(version))
            .fetch_optional(self.reader())
            .map_err(unavailable)?;
        row.as_ref().map(template_from_row).transpose()
    }

    async fn list_templates(
        &self,
        page: PageRequest<TemplateName>,
    ) -> Result<Page<Template, TemplateName>, StoreError> {
        let sql = "SELECT v.name, v.version, v.spec, v.created_at, v.updated_at FROM template_heads h \
                   JOIN template_versions v ON v.name = h.name AND v.version = h.latest_version \
                   WHERE h.name > ? ORDER BY h.name LIMIT ?";
        let after = page.exclusive_start.as_ref().map_or("", TemplateName::as_str);
        let rows = query(sql).bind(after).bind(overfetch(page.limit)).fetch_all(self.reader()).map_err(unavailable)?;
        let items = rows.iter().map(template_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(items, page.limit, |t| t.name.clone()))
    }

    async fn list_template_versions(
        &self,
        name: &TemplateName,
        page: PageRequest<u32>,
    ) -> Result<Page<Template, u32>, StoreError> {
        let rows = query(select_versions!(" WHERE name = ? AND version > ? ORDER BY version LIMIT ?"))
            .bind(name.as_str())
            .bind(i64::from(page.exclusive_start.unwrap_or(0)))
            .bind(overfetch(page.limit))
            .fetch_all(self.reader())
            .map_err(unavailable)?;
        let items = rows.iter().map(template_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(items, page.limit, |t| t.version))
    }

    async fn delete_template(&self, name: &TemplateName) -> Result<bool, StoreError> {
        self.write(|c| {
            let head = query("DELETE FROM template_heads WHERE name = ?")
                .bind(name.as_str())
                .execute(c)
                .map_err(unavailable)?;
            query("DELETE FROM template_versions WHERE name = ?")
                .bind(name.as_str())
                .execute(c)
                .map_err(unavailable)?;
            Ok(head.rows_affected() > 0)
        })
        .await
    }
}

fn insert_version(c: &Connection, template: &Template) -> Result<(), StoreError> {
    query("INSERT INTO template_versions (name, version, spec, created_at, updated_at) VALUES (?, ?, ?, ?, ?)")
        .bind(template.name.as_str())
        .bind(i64::from(template.version))
        .bind(spec_json(template))
        .bind(template.created_at.as_millis())
        .bind(template.updated_at.map(|t| t.as_millis()))
        .execute(c)
        .map(drop)
        .map_err(|err| if is_unique_violation(&err) { StoreError::Conflict } else { unavailable(err) })
}
