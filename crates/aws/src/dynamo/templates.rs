//! Templates: a head item per template (`#HEAD`, the latest version and the concurrency
//! guard, listed through `gsi1` = `TPLS`) and one item per version (`V#<version>`).

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};
use ggprov_domain::ports::{StoreError, TemplateStore};
use ggprov_domain::{Page, PageRequest, Template, TemplateName};

use super::versioned::{HEAD, version_sk};
use super::{DynamoStore, Item, Query, TxError, doc, key, n, s, to_doc};

fn pk(name: &TemplateName) -> String {
    format!("TPL#{}", name.as_str())
}

impl DynamoStore {
    fn version_put(&self, template: &Template) -> TransactWriteItem {
        let mut item = key(pk(&template.name), version_sk(template.version));
        item.insert("doc".into(), to_doc(template));
        TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .condition_expression("attribute_not_exists(pk)")
                    .build()
                    .expect("complete put"),
            )
            .build()
    }
}

fn head_item(template: &Template) -> Item {
    let mut item = key(pk(&template.name), HEAD);
    item.insert("doc".into(), to_doc(template));
    item.insert("latest".into(), n(template.version));
    item.insert("gsi1pk".into(), s("TPLS"));
    item.insert("gsi1sk".into(), s(template.name.as_str()));
    item
}

#[async_trait]
impl TemplateStore for DynamoStore {
    async fn create_template(&self, template: &Template) -> Result<(), StoreError> {
        let head = TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(head_item(template)))
                    .condition_expression("attribute_not_exists(pk)")
                    .build()
                    .expect("complete put"),
            )
            .build();
        // A version item left behind by an interrupted delete is overwritten, not a conflict.
        let mut version = key(pk(&template.name), version_sk(template.version));
        version.insert("doc".into(), to_doc(template));
        let version = TransactWriteItem::builder()
            .put(Put::builder().table_name(&self.table).set_item(Some(version)).build().expect("complete put"))
            .build();
        match self.transact(vec![head, version]).await {
            Ok(()) => Ok(()),
            Err(TxError::Cancelled(reasons)) if reasons.first().is_some_and(|r| r == "ConditionalCheckFailed") => {
                Err(StoreError::AlreadyExists)
            }
            Err(TxError::Cancelled(_)) => Err(StoreError::Conflict),
            Err(TxError::Store(err)) => Err(err),
        }
    }

    async fn append_template_version(&self, template: &Template) -> Result<(), StoreError> {
        let head = head_item(template);
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(pk(&template.name), HEAD)))
            .update_expression("SET latest = :v, doc = :doc")
            .condition_expression("latest = :prev")
            .expression_attribute_values(":v", n(template.version))
            .expression_attribute_values(":prev", n(template.version.saturating_sub(1)))
            .expression_attribute_values(":doc", head["doc"].clone())
            .build()
            .expect("complete update");
        match self.transact(vec![TransactWriteItem::builder().update(update).build(), self.version_put(template)]).await
        {
            Ok(()) => Ok(()),
            Err(TxError::Cancelled(_)) => match self.get(&pk(&template.name), HEAD).await? {
                None => Err(StoreError::NotFound),
                Some(_) => Err(StoreError::Conflict),
            },
            Err(TxError::Store(err)) => Err(err),
        }
    }

    async fn latest_template(&self, name: &TemplateName) -> Result<Option<Template>, StoreError> {
        self.get(&pk(name), HEAD).await?.as_ref().map(doc).transpose()
    }

    async fn template_version(&self, name: &TemplateName, version: u32) -> Result<Option<Template>, StoreError> {
        self.get(&pk(name), &version_sk(version)).await?.as_ref().map(doc).transpose()
    }

    async fn list_templates(
        &self,
        page: PageRequest<TemplateName>,
    ) -> Result<Page<Template, TemplateName>, StoreError> {
        let mut query = Query::partition(Some("gsi1"), "TPLS");
        query.after = page.exclusive_start.as_ref().map(|n| n.as_str().to_owned());
        query.limit = Some(page.limit as usize + 1);
        let templates = self.query(query).await?.iter().map(doc).collect::<Result<Vec<Template>, _>>()?;
        Ok(Page::from_overfetch(templates, page.limit, |t| t.name.clone()))
    }

    async fn list_template_versions(
        &self,
        name: &TemplateName,
        page: PageRequest<u32>,
    ) -> Result<Page<Template, u32>, StoreError> {
        let versions =
            self.version_items(pk(name), &page).await?.iter().map(doc).collect::<Result<Vec<Template>, _>>()?;
        Ok(Page::from_overfetch(versions, page.limit, |t| t.version))
    }

    async fn delete_template(&self, name: &TemplateName) -> Result<bool, StoreError> {
        if self.get(&pk(name), HEAD).await?.is_none() {
            return Ok(false);
        }
        // Versions first, the head last: an interrupted delete leaves a template that a
        // retried delete finishes, never versions without a head that a new template would show.
        self.delete_versions(pk(name)).await?;
        self.delete(&pk(name), HEAD).await?;
        Ok(true)
    }
}
