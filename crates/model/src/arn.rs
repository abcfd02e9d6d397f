//! ARNs of the ECS resources Flotilla serves, in the "long" format AWS uses
//! today: `arn:aws:ecs:REGION:ACCOUNT:cluster/NAME`,
//! `task-definition/FAMILY:REV`, `task/CLUSTER/ID`, `service/CLUSTER/NAME`,
//! `container-instance/CLUSTER/ID`.

use std::fmt;

/// The account and region a request is scoped to: taken from the SigV4
/// credential scope, so two accounts never see each other's resources.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    pub account: String,
    pub region: String,
}

impl Scope {
    pub fn new(account: impl Into<String>, region: impl Into<String>) -> Self {
        Scope {
            account: account.into(),
            region: region.into(),
        }
    }

    /// `arn:aws:ecs:REGION:ACCOUNT:RESOURCE`.
    pub fn arn(&self, resource: impl fmt::Display) -> String {
        format!("arn:aws:ecs:{}:{}:{}", self.region, self.account, resource)
    }

    pub fn cluster_arn(&self, cluster: &str) -> String {
        self.arn(format_args!("cluster/{cluster}"))
    }

    pub fn task_definition_arn(&self, family: &str, revision: i32) -> String {
        self.arn(format_args!("task-definition/{family}:{revision}"))
    }

    pub fn task_arn(&self, cluster: &str, id: &str) -> String {
        self.arn(format_args!("task/{cluster}/{id}"))
    }

    pub fn service_arn(&self, cluster: &str, service: &str) -> String {
        self.arn(format_args!("service/{cluster}/{service}"))
    }

    pub fn container_instance_arn(&self, cluster: &str, id: &str) -> String {
        self.arn(format_args!("container-instance/{cluster}/{id}"))
    }

    pub fn container_arn(&self, cluster: &str, task_id: &str, container_id: &str) -> String {
        self.arn(format_args!("container/{cluster}/{task_id}/{container_id}"))
    }

    /// Like [`name_from_ref`], but an ARN of another account or region names
    /// nothing here: resources never leak across scopes.
    pub fn name_from_ref<'a>(&self, reference: &'a str, kind: &str) -> Option<&'a str> {
        match Arn::parse(reference) {
            Some(arn) if arn.account != self.account || arn.region != self.region => None,
            _ => name_from_ref(reference, kind),
        }
    }
}

/// A parsed ECS ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arn<'a> {
    pub region: &'a str,
    pub account: &'a str,
    /// `cluster`, `task`, `service`, `task-definition`, `container-instance`, …
    pub kind: &'a str,
    /// Everything after `kind/`.
    pub rest: &'a str,
}

impl<'a> Arn<'a> {
    /// Parses `arn:PARTITION:ecs:REGION:ACCOUNT:KIND/REST`; `None` otherwise.
    pub fn parse(s: &'a str) -> Option<Arn<'a>> {
        let mut parts = s.splitn(6, ':');
        if parts.next()? != "arn" {
            return None;
        }
        let _partition = parts.next()?;
        if parts.next()? != "ecs" {
            return None;
        }
        let region = parts.next()?;
        let account = parts.next()?;
        let resource = parts.next()?;
        let (kind, rest) = resource.split_once('/')?;
        Some(Arn {
            region,
            account,
            kind,
            rest,
        })
    }
}

/// Resolves a user's reference to a named resource (a bare name or an ARN of
/// `kind`) to its name, given that ARN's trailing path. For task and
/// container-instance ARNs in the long format, the last segment is the id.
pub fn name_from_ref<'a>(reference: &'a str, kind: &str) -> Option<&'a str> {
    match Arn::parse(reference) {
        Some(arn) if arn.kind == kind => arn.rest.rsplit('/').next(),
        Some(_) => None,
        None if reference.starts_with("arn:") => None,
        None => Some(reference),
    }
}

/// The family and revision named by a task definition ARN
/// (`…:task-definition/FAMILY:REVISION`), the inverse of
/// [`Scope::task_definition_arn`].
pub fn task_definition_parts(arn: &str) -> Option<(&str, i32)> {
    let (_, rest) = arn.rsplit_once(":task-definition/")?;
    let (family, revision) = rest.rsplit_once(':')?;
    Some((family, revision.parse().ok()?))
}

/// A new resource id: 32 lowercase hex digits, as ECS task ids are. Time
/// ordered (UUID version 7: milliseconds, then random bits), so that newer
/// tasks sort after older ones and the store appends new keys instead of
/// scattering them over its whole index.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_definition_arns_round_trip() {
        let s = Scope::new("123456789012", "us-east-1");
        assert_eq!(
            task_definition_parts(&s.task_definition_arn("web-app", 12)),
            Some(("web-app", 12))
        );
        assert_eq!(
            task_definition_parts("arn:aws:ecs:us-east-1:123456789012:task-definition/web"),
            None
        );
        assert_eq!(
            task_definition_parts("arn:aws:ecs:us-east-1:123456789012:task/default/abc"),
            None
        );
    }

    #[test]
    fn parses_long_task_arns_and_names() {
        let s = Scope::new("123456789012", "us-east-1");
        let arn = s.task_arn("default", "abc");
        assert_eq!(arn, "arn:aws:ecs:us-east-1:123456789012:task/default/abc");
        let parsed = Arn::parse(&arn).unwrap();
        assert_eq!((parsed.kind, parsed.rest), ("task", "default/abc"));
        assert_eq!(name_from_ref(&arn, "task"), Some("abc"));
        assert_eq!(name_from_ref("web", "cluster"), Some("web"));
        assert_eq!(name_from_ref(&s.cluster_arn("web"), "task"), None);
        assert_eq!(name_from_ref("arn:bogus", "cluster"), None);
        let other = Scope::new("222222222222", "us-east-1");
        assert_eq!(
            s.name_from_ref(&s.cluster_arn("web"), "cluster"),
            Some("web")
        );
        assert_eq!(other.name_from_ref(&s.cluster_arn("web"), "cluster"), None);
        assert_eq!(other.name_from_ref("web", "cluster"), Some("web"));
    }
}
