//! Metrics (namespace, metric name, dimension set) and the in-memory
//! catalog of every series the store holds.
//!
//! CloudWatch treats each unique combination of dimensions as its own
//! metric, and the order in which a caller lists dimensions does not matter,
//! so a [`MetricId`] keeps its dimensions sorted by name: the same set in any
//! order is the same series.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use flotilla_model::arn::Scope;

use crate::error::{check_count, check_len, MetricsError, Result};
use crate::types::{Dimension, Timestamp};

/// The most dimensions a metric may have.
pub const MAX_DIMENSIONS: usize = 30;

/// A metric: `Metric` in the model (`Namespace`, `MetricName`, `Dimensions`),
/// with the dimensions in canonical (name) order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MetricId {
    pub namespace: String,
    pub metric_name: String,
    pub dimensions: Vec<Dimension>,
}

impl MetricId {
    /// Validates the parts (the field names in errors are prefixed with
    /// `path`, e.g. `MetricData.member.3.`) and sorts the dimensions.
    pub fn new(
        namespace: &str,
        metric_name: &str,
        dimensions: &[Dimension],
        path: &str,
    ) -> Result<MetricId> {
        check_namespace(namespace, "Namespace")?;
        check_len(metric_name, &format!("{path}MetricName"), 1, 255)?;
        let dimensions = canonical_dimensions(dimensions, &format!("{path}Dimensions"))?;
        Ok(MetricId {
            namespace: namespace.to_string(),
            metric_name: metric_name.to_string(),
            dimensions,
        })
    }

    /// The dimensions as stored: a JSON array of `[name, value]` pairs in
    /// canonical order.
    pub(crate) fn dims_text(&self) -> String {
        let pairs: Vec<[&str; 2]> = self
            .dimensions
            .iter()
            .map(|d| [d.name.as_str(), d.value.as_str()])
            .collect();
        serde_json::to_string(&pairs).unwrap_or_else(|_| "[]".into())
    }

    pub(crate) fn from_stored(namespace: String, metric_name: String, dims: &str) -> MetricId {
        let pairs: Vec<(String, String)> = serde_json::from_str(dims).unwrap_or_default();
        MetricId {
            namespace,
            metric_name,
            dimensions: pairs
                .into_iter()
                .map(|(name, value)| Dimension { name, value })
                .collect(),
        }
    }
}

/// `Namespace`: 1 to 255 characters, not starting with a colon.
pub(crate) fn check_namespace(namespace: &str, field: &str) -> Result<()> {
    check_len(namespace, field, 1, 255)?;
    if namespace.starts_with(':') {
        return Err(MetricsError::invalid(format!(
            "The value {namespace} for parameter {field} is invalid. A namespace must not start with a colon."
        )));
    }
    Ok(())
}

/// Validates a `Dimensions` list (≤ 30, names 1–255, values 1–1024, no name
/// twice) and sorts it by name.
pub(crate) fn canonical_dimensions(
    dimensions: &[Dimension],
    field: &str,
) -> Result<Vec<Dimension>> {
    check_count(dimensions, field, MAX_DIMENSIONS)?;
    for (i, d) in dimensions.iter().enumerate() {
        check_len(&d.name, &format!("{field}.member.{}.Name", i + 1), 1, 255)?;
        check_len(
            &d.value,
            &format!("{field}.member.{}.Value", i + 1),
            1,
            1024,
        )?;
    }
    let mut sorted = dimensions.to_vec();
    sorted.sort();
    for pair in sorted.windows(2) {
        if pair[0].name == pair[1].name {
            return Err(MetricsError::invalid(format!(
                "The collection {field} must not contain the dimension name {} more than once.",
                pair[0].name
            )));
        }
    }
    Ok(sorted)
}

/// The store's number for a series.
pub(crate) type SeriesId = i64;

#[derive(Debug)]
pub(crate) struct Entry {
    pub scope: Scope,
    pub metric: Arc<MetricId>,
    /// The newest timestamp written (milliseconds), for ListMetrics'
    /// two-week horizon and `RecentlyActive`.
    pub last_ts: i64,
    /// What the `series` table holds for `last_ts`; it is rewritten only when
    /// a minute or more behind, so a busy series costs no extra writes.
    pub persisted_last_ts: i64,
}

/// Every series, by scope and metric (ordered, for ListMetrics pages) and
/// by id.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    scopes: HashMap<Scope, BTreeMap<Arc<MetricId>, SeriesId>>,
    entries: HashMap<SeriesId, Entry>,
}

impl Catalog {
    pub fn get(&self, scope: &Scope, metric: &MetricId) -> Option<SeriesId> {
        self.scopes.get(scope)?.get(metric).copied()
    }

    pub fn entry(&self, id: SeriesId) -> Option<&Entry> {
        self.entries.get(&id)
    }

    pub fn insert(&mut self, id: SeriesId, scope: Scope, metric: Arc<MetricId>, last_ts: i64) {
        self.scopes
            .entry(scope.clone())
            .or_default()
            .insert(Arc::clone(&metric), id);
        self.entries.insert(
            id,
            Entry {
                scope,
                metric,
                last_ts,
                persisted_last_ts: last_ts,
            },
        );
    }

    pub fn remove(&mut self, id: SeriesId) {
        if let Some(entry) = self.entries.remove(&id) {
            if let Some(metrics) = self.scopes.get_mut(&entry.scope) {
                metrics.remove(&entry.metric);
            }
        }
    }

    /// Raises a series' newest timestamp (after a durable write).
    pub fn touch(&mut self, id: SeriesId, ts: i64) {
        if let Some(entry) = self.entries.get_mut(&id) {
            entry.last_ts = entry.last_ts.max(ts);
        }
    }

    pub fn mark_persisted(&mut self, id: SeriesId, ts: i64) {
        if let Some(entry) = self.entries.get_mut(&id) {
            entry.persisted_last_ts = entry.persisted_last_ts.max(ts);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The scope's metrics from `after` (exclusive) on, in order.
    pub fn range<'a>(
        &'a self,
        scope: &Scope,
        after: Option<&MetricId>,
    ) -> impl Iterator<Item = (&'a Arc<MetricId>, &'a Entry)> + 'a {
        use std::ops::Bound;
        let lower = match after {
            Some(m) => Bound::Excluded(m.clone()),
            None => Bound::Unbounded,
        };
        self.scopes
            .get(scope)
            .into_iter()
            .flat_map(move |metrics| {
                metrics.range::<MetricId, _>((lower.clone(), Bound::Unbounded))
            })
            .filter_map(move |(metric, id)| self.entries.get(id).map(|e| (metric, e)))
    }

    /// Series whose newest data is older than `horizon`: nothing of them is
    /// retained any more.
    pub fn expired(&self, horizon: Timestamp) -> Vec<SeriesId> {
        self.entries
            .iter()
            .filter(|(_, e)| e.last_ts < horizon.millis())
            .map(|(id, _)| *id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dimension_order_does_not_matter() {
        let a = MetricId::new(
            "App",
            "Latency",
            &[
                Dimension::new("Service", "web"),
                Dimension::new("Cluster", "prod"),
            ],
            "",
        )
        .unwrap();
        let b = MetricId::new(
            "App",
            "Latency",
            &[
                Dimension::new("Cluster", "prod"),
                Dimension::new("Service", "web"),
            ],
            "",
        )
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.dims_text(), r#"[["Cluster","prod"],["Service","web"]]"#);
        assert_eq!(
            MetricId::from_stored("App".into(), "Latency".into(), &a.dims_text()),
            a
        );
    }

    #[test]
    fn dimensions_are_validated() {
        let many: Vec<Dimension> = (0..31)
            .map(|i| Dimension::new(format!("d{i}"), "v"))
            .collect();
        let err = MetricId::new("App", "M", &many, "MetricData.member.1.").unwrap_err();
        assert!(
            err.to_string().contains("MetricData.member.1.Dimensions"),
            "{err}"
        );
        let twice = [Dimension::new("a", "1"), Dimension::new("a", "2")];
        assert!(MetricId::new("App", "M", &twice, "").is_err());
        let empty_value = [Dimension::new("a", "")];
        let err = MetricId::new("App", "M", &empty_value, "").unwrap_err();
        assert!(
            err.to_string().contains("Dimensions.member.1.Value"),
            "{err}"
        );
        assert!(MetricId::new(":App", "M", &[], "").is_err());
        assert!(MetricId::new("App", "", &[], "").is_err());
    }

    #[test]
    fn the_catalog_pages_in_metric_order() {
        let scope = Scope::new("111122223333", "us-east-1");
        let mut catalog = Catalog::default();
        for (id, name) in [(1, "b"), (2, "a"), (3, "c")] {
            let metric = Arc::new(MetricId::new("App", name, &[], "").unwrap());
            catalog.insert(id, scope.clone(), metric, 0);
        }
        let names: Vec<&str> = catalog
            .range(&scope, None)
            .map(|(m, _)| m.metric_name.as_str())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
        let a = MetricId::new("App", "a", &[], "").unwrap();
        let after: Vec<&str> = catalog
            .range(&scope, Some(&a))
            .map(|(m, _)| m.metric_name.as_str())
            .collect();
        assert_eq!(after, ["b", "c"]);
        catalog.remove(1);
        assert_eq!(catalog.range(&scope, None).count(), 2);
        assert_eq!(catalog.get(&scope, &a), Some(2));
    }
}
