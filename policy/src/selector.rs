//! Kubernetes label selectors (`matchLabels` and `matchExpressions`), evaluated on label maps.

use mcp_warden_crds::LabelSelector;
use std::collections::BTreeMap;

/// Whether `labels` satisfy `selector`. An empty selector matches everything; an operator this
/// code does not know matches nothing (fail closed).
pub fn matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_label = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    by_label
        && selector.match_expressions.iter().flatten().all(|e| {
            let value = labels.get(&e.key);
            let values = e.values.as_deref().unwrap_or_default();
            match e.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelector {
        LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: key.into(),
                operator: op.into(),
                values: Some(values.iter().map(|v| v.to_string()).collect()),
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn match_labels_and_expressions() {
        let l = labels(&[("app", "pay"), ("tier", "api")]);
        assert!(matches(&LabelSelector::default(), &l));
        let by_label = LabelSelector {
            match_labels: Some(labels(&[("app", "pay")])),
            ..Default::default()
        };
        assert!(matches(&by_label, &l));
        assert!(!matches(&by_label, &labels(&[("app", "other")])));
        assert!(matches(&expr("tier", "In", &["api", "web"]), &l));
        assert!(!matches(&expr("tier", "NotIn", &["api"]), &l));
        assert!(matches(&expr("zone", "NotIn", &["a"]), &l));
        assert!(matches(&expr("app", "Exists", &[]), &l));
        assert!(!matches(&expr("app", "DoesNotExist", &[]), &l));
        assert!(!matches(&expr("app", "Bogus", &[]), &l));
    }
}
