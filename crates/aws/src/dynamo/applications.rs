//! Applications: a head item per application (`#HEAD`: the latest version number, the guard
//! of appends, listed through `gsi1` = `APPS`) and one item per version (`V#<version>`). The
//! Compose file is its own attribute, unescaped, so a 256 KiB file fits DynamoDB's 400 KB item.
//! A delete marks the head `deleting` first; appends and publishes are conditional on its
//! absence.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{ConditionCheck, Delete, Put, ReturnValue, TransactWriteItem, Update};
use ggprov_domain::application::{Application, ApplicationName, ApplicationState};
use ggprov_domain::cores::Event;
use ggprov_domain::ports::{ApplicationStore, Publication, StoreError};
use ggprov_domain::{Page, PageRequest, Timestamp};

use super::versioned::{HEAD, version_sk};
use super::{DynamoStore, Item, Query, TxError, doc, get_n, get_s, key, n, s, store_error, to_doc};

fn pk(name: &ApplicationName) -> String {
    format!("APP#{}", name.as_str())
}

fn version_item(app: &Application) -> Item {
    let mut item = key(pk(&app.name), version_sk(app.version));
    let mut without_compose = app.clone();
    without_compose.compose = String::new();
    item.insert("doc".into(), to_doc(&without_compose));
    item.insert("compose".into(), s(app.compose.clone()));
    item.insert(
        "published".into(),
        aws_sdk_dynamodb::types::AttributeValue::Bool(app.state == ApplicationState::Published),
    );
    item
}

fn from_item(item: &Item) -> Result<Application, StoreError> {
    let mut app: Application = doc(item)?;
    app.compose = get_s(item, "compose")?.to_owned();
    Ok(app)
}

impl DynamoStore {
    async fn latest_version(&self, name: &ApplicationName) -> Result<Option<u32>, StoreError> {
        self.get(&pk(name), HEAD).await?.map(|head| get_n(&head, "latest")).transpose()
    }

    pub(crate) fn put(&self, item: Item, condition: Option<&str>) -> TransactWriteItem {
        TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .set_condition_expression(condition.map(str::to_owned))
                    .build()
                    .expect("complete put"),
            )
            .build()
    }

    async fn versions_by_key(&self, keys: Vec<Item>) -> Result<Vec<Application>, StoreError> {
        let mut apps = self.batch_get(keys, None).await?.iter().map(from_item).collect::<Result<Vec<_>, _>>()?;
        apps.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(apps)
    }
}

#[async_trait]
impl ApplicationStore for DynamoStore {
    async fn create_application(&self, app: &Application) -> Result<(), StoreError> {
        let mut head = key(pk(&app.name), HEAD);
        head.insert("latest".into(), n(app.version));
        head.insert("gsi1pk".into(), s("APPS"));
        head.insert("gsi1sk".into(), s(app.name.as_str()));
        let writes = vec![self.put(head, Some("attribute_not_exists(pk)")), self.put(version_item(app), None)];
        match self.transact(writes).await {
            Ok(()) => Ok(()),
            Err(TxError::Cancelled(reasons)) if reasons.first().is_some_and(|r| r == "ConditionalCheckFailed") => {
                Err(StoreError::AlreadyExists)
            }
            Err(TxError::Cancelled(_)) => Err(StoreError::Conflict),
            Err(TxError::Store(err)) => Err(err),
        }
    }

    async fn append_application_version(&self, app: &Application) -> Result<(), StoreError> {
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(pk(&app.name), HEAD)))
            .update_expression("SET latest = :v")
            .condition_expression("latest = :prev AND attribute_not_exists(deleting)")
            .expression_attribute_values(":v", n(app.version))
            .expression_attribute_values(":prev", n(app.version.saturating_sub(1)))
            .build()
            .expect("complete update");
        let writes = vec![TransactWriteItem::builder().update(update).build(), self.put(version_item(app), None)];
        match self.transact(writes).await {
            Ok(()) => Ok(()),
            Err(TxError::Cancelled(_)) => match self.get(&pk(&app.name), HEAD).await? {
                Some(head) if !head.contains_key("deleting") => Err(StoreError::Conflict),
                // Gone, or being deleted: as good as gone.
                _ => Err(StoreError::NotFound),
            },
            Err(TxError::Store(err)) => Err(err),
        }
    }

    async fn publish_application_version(&self, app: &Application, event: &Event) -> Result<Publication, StoreError> {
        let item = version_item(app);
        let live = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(key(pk(&app.name), HEAD)))
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(deleting)")
            .build()
            .expect("complete condition check");
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(pk(&app.name), version_sk(app.version))))
            .update_expression("SET doc = :doc, published = :t")
            .condition_expression("published = :f")
            .expression_attribute_values(":doc", item["doc"].clone())
            .expression_attribute_values(":t", aws_sdk_dynamodb::types::AttributeValue::Bool(true))
            .expression_attribute_values(":f", aws_sdk_dynamodb::types::AttributeValue::Bool(false))
            .build()
            .expect("complete update");
        let writes = vec![
            TransactWriteItem::builder().condition_check(live).build(),
            TransactWriteItem::builder().update(update).build(),
            self.event_put(event, Timestamp::now()),
        ];
        match self.transact(writes).await {
            Ok(()) => Ok(Publication::Published),
            Err(TxError::Cancelled(reasons)) => match reasons.as_slice() {
                [head, ..] if head == "ConditionalCheckFailed" => Ok(Publication::Gone),
                [_, version, ..] if version == "ConditionalCheckFailed" => Ok(Publication::AlreadyPublished),
                _ => Err(StoreError::Conflict),
            },
            Err(TxError::Store(err)) => Err(err),
        }
    }

    async fn latest_application(&self, name: &ApplicationName) -> Result<Option<Application>, StoreError> {
        let Some(head) = self.get(&pk(name), HEAD).await? else {
            return Ok(None);
        };
        let latest: u32 = get_n(&head, "latest")?;
        self.get(&pk(name), &version_sk(latest)).await?.as_ref().map(from_item).transpose()
    }

    async fn application_version(
        &self,
        name: &ApplicationName,
        version: u32,
    ) -> Result<Option<Application>, StoreError> {
        // Versions above the head's are left over from an interrupted delete: not this one's.
        if self.latest_version(name).await?.is_none_or(|latest| version > latest) {
            return Ok(None);
        }
        self.get(&pk(name), &version_sk(version)).await?.as_ref().map(from_item).transpose()
    }

    async fn list_applications(
        &self,
        page: PageRequest<ApplicationName>,
    ) -> Result<Page<Application, ApplicationName>, StoreError> {
        let mut query = Query::partition(Some("gsi1"), "APPS");
        query.after = page.exclusive_start.as_ref().map(|n| n.as_str().to_owned());
        query.limit = Some(page.limit as usize + 1);
        let heads = self.query(query).await?;
        let keys = heads
            .iter()
            .map(|head| Ok(key(get_s(head, "pk")?, version_sk(get_n(head, "latest")?))))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let apps = self.versions_by_key(keys).await?;
        Ok(Page::from_overfetch(apps, page.limit, |a| a.name.clone()))
    }

    async fn list_application_versions(
        &self,
        name: &ApplicationName,
        page: PageRequest<u32>,
    ) -> Result<Page<Application, u32>, StoreError> {
        let Some(latest) = self.latest_version(name).await? else {
            return Ok(Page { items: Vec::new(), last_evaluated: None });
        };
        let mut versions =
            self.version_items(pk(name), &page).await?.iter().map(from_item).collect::<Result<Vec<_>, _>>()?;
        versions.retain(|a| a.version <= latest);
        Ok(Page::from_overfetch(versions, page.limit, |a| a.version))
    }

    async fn begin_application_delete(&self, name: &ApplicationName) -> Result<Option<u32>, StoreError> {
        let marked = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(pk(name), HEAD)))
            .update_expression("SET deleting = :t")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":t", aws_sdk_dynamodb::types::AttributeValue::Bool(true))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match marked {
            Ok(out) => out.attributes.as_ref().map(|head| get_n(head, "latest")).transpose(),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(None),
            Err(err) => Err(store_error(err)),
        }
    }

    async fn delete_application(&self, name: &ApplicationName, event: &Event) -> Result<bool, StoreError> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(pk(name), HEAD)))
            .condition_expression("attribute_exists(deleting)")
            .build()
            .expect("key");
        match self
            .transact(vec![
                TransactWriteItem::builder().delete(delete).build(),
                self.event_put(event, Timestamp::now()),
            ])
            .await
        {
            Ok(()) => {
                // The head (with the event) first, the versions after: versions an interrupted
                // delete leaves behind are above no head, so nothing reads them (a new
                // application of the name overwrites them as it grows).
                self.delete_versions(pk(name)).await?;
                Ok(true)
            }
            Err(TxError::Cancelled(_)) => match self.get(&pk(name), HEAD).await? {
                None => Ok(false),
                // Not marked: the caller skipped `begin_application_delete`.
                Some(_) => Err(StoreError::Conflict),
            },
            Err(TxError::Store(err)) => Err(err),
        }
    }
}
