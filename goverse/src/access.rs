//! Who is calling, and what they may call: the caller's [`Identity`] (set
//! by a gate's authentication), and [`AccessRules`] that say which calls,
//! creates and deletes clients and objects may make.
//!
//! Rules are checked on the node that owns the object, against where the
//! call came from: **external** (a client, through a gate) or **internal**
//! (an object, or code on a node). The levels:
//!
//! | level | objects (internal) | clients (external) |
//! | --- | --- | --- |
//! | `REJECT` | no | no |
//! | `INTERNAL` | yes | no |
//! | `EXTERNAL` | no | yes |
//! | `ALLOW` | yes | yes |
//!
//! ```yaml
//! access:
//!   - { type: Counter, method: /Add|Get/, access: EXTERNAL }
//!   - { type: /Admin.*/, access: REJECT }
//!   - { type: /.*/, access: INTERNAL }
//! lifecycle:
//!   - { type: Counter, lifecycle: CREATE, access: ALLOW }
//!   - { type: Counter, lifecycle: DELETE, access: INTERNAL }
//! ```
//!
//! Patterns are literals or `/regex/` (anchored: the whole name must
//! match). The first matching rule decides; a call no rule matches is
//! rejected. A create no lifecycle rule matches is allowed, a delete is
//! internal-only. A node with no rules lets every call through.

use std::sync::Arc;

use serde::Deserialize;

use crate::error::{Error, Result};

/// Who a call is made for: the user a gate authenticated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Identity {
    /// The user's id, as the authentication hook gave it.
    pub user_id: String,
    /// The user's roles.
    pub roles: Vec<String>,
}

impl Identity {
    /// An identity with these roles.
    pub fn new(
        user_id: impl Into<String>,
        roles: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            user_id: user_id.into(),
            roles: roles.into_iter().map(Into::into).collect(),
        }
    }

    /// Whether the identity has `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// Where a call came from, as it travels with the call and into the calls
/// its turn makes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Origin {
    /// Made by a client through a gate (not by an object).
    pub(crate) external: bool,
    /// The user, when a gate authenticated one.
    pub(crate) identity: Option<Identity>,
    /// The registered client that made it (or on whose behalf).
    pub(crate) client_id: Option<String>,
}

impl Origin {
    /// Who made a call, as a reliable call's record keeps it:
    /// `user:<id>` for an authenticated user, `external` for a gate's
    /// unauthenticated client, empty for code on a node.
    pub(crate) fn caller(origin: Option<&Arc<Origin>>) -> String {
        match origin {
            Some(origin) => match &origin.identity {
                Some(identity) => format!("user:{}", identity.user_id),
                None if origin.external => "external".to_string(),
                None => String::new(),
            },
            None => String::new(),
        }
    }

    /// The origin of calls a turn makes: internal, for the same user and
    /// client.
    pub(crate) fn nested(origin: Option<&Arc<Origin>>) -> Option<Arc<Origin>> {
        let origin = origin?;
        if !origin.external {
            return Some(origin.clone());
        }
        Some(Arc::new(Origin {
            external: false,
            identity: origin.identity.clone(),
            client_id: origin.client_id.clone(),
        }))
    }
}

/// An access level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Access {
    /// Nobody.
    Reject,
    /// Objects (and code on nodes) only.
    Internal,
    /// Clients (through gates) only.
    External,
    /// Both.
    Allow,
}

impl Access {
    fn allows(self, external: bool) -> bool {
        match self {
            Access::Reject => false,
            Access::Internal => !external,
            Access::External => external,
            Access::Allow => true,
        }
    }
}

/// Which lifecycle operation a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Lifecycle {
    /// Creating objects.
    Create,
    /// Deleting objects.
    Delete,
    /// Both.
    All,
}

/// A name pattern: a literal, or `/regex/` matching the whole name.
#[derive(Debug, Clone)]
struct Pattern(Option<regex::Regex>, String);

impl Pattern {
    fn parse(text: &str) -> Result<Self> {
        match text.strip_prefix('/').and_then(|t| t.strip_suffix('/')) {
            Some(expression) if text.len() >= 2 => {
                let anchored = format!("^(?:{expression})$");
                let regex = regex::Regex::new(&anchored)
                    .map_err(|e| Error::Config(format!("access rule pattern `{text}`: {e}")))?;
                Ok(Pattern(Some(regex), text.to_string()))
            }
            _ => Ok(Pattern(None, text.to_string())),
        }
    }

    fn matches(&self, name: &str) -> bool {
        match &self.0 {
            Some(regex) => regex.is_match(name),
            None => self.1 == name,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    #[serde(rename = "type")]
    type_name: String,
    id: Option<String>,
    method: Option<String>,
    access: Access,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LifecycleFile {
    #[serde(rename = "type")]
    type_name: String,
    id: Option<String>,
    lifecycle: Lifecycle,
    access: Access,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RulesFile {
    access: Vec<RuleFile>,
    lifecycle: Vec<LifecycleFile>,
}

#[derive(Debug, Clone)]
struct Rule {
    type_name: Pattern,
    id: Option<Pattern>,
    method: Option<Pattern>,
    access: Access,
}

#[derive(Debug, Clone)]
struct LifecycleRule {
    type_name: Pattern,
    id: Option<Pattern>,
    lifecycle: Lifecycle,
    access: Access,
}

/// The access rules of a node: see the [module documentation](self).
#[derive(Debug, Clone, Default)]
pub struct AccessRules {
    calls: Vec<Rule>,
    lifecycle: Vec<LifecycleRule>,
}

impl AccessRules {
    /// Parses rules from YAML.
    ///
    /// # Errors
    ///
    /// `INVALID_CONFIG` for malformed YAML, an unknown field or level, or
    /// a pattern that is not a valid regex.
    ///
    /// # Examples
    ///
    /// ```
    /// use goverse::access::AccessRules;
    ///
    /// let rules = AccessRules::from_yaml(
    ///     "access:\n  - { type: Counter, method: /Add|Get/, access: EXTERNAL }\n",
    /// )?;
    /// assert!(rules.check_call("Counter", "c1", "Add", true).is_ok());
    /// assert_eq!(rules.check_call("Counter", "c1", "Add", false).unwrap_err().code(), "ACCESS_DENIED");
    /// assert_eq!(rules.check_call("Counter", "c1", "Reset", true).unwrap_err().code(), "ACCESS_DENIED");
    /// # Ok::<(), goverse::Error>(())
    /// ```
    pub fn from_yaml(text: &str) -> Result<Self> {
        let file: RulesFile = serde_yaml_ng::from_str(text)
            .map_err(|e| Error::Config(format!("access rules: {e}")))?;
        let optional = |p: &Option<String>| p.as_deref().map(Pattern::parse).transpose();
        let calls = file
            .access
            .iter()
            .map(|r| {
                Ok(Rule {
                    type_name: Pattern::parse(&r.type_name)?,
                    id: optional(&r.id)?,
                    method: optional(&r.method)?,
                    access: r.access,
                })
            })
            .collect::<Result<_>>()?;
        let lifecycle = file
            .lifecycle
            .iter()
            .map(|r| {
                Ok(LifecycleRule {
                    type_name: Pattern::parse(&r.type_name)?,
                    id: optional(&r.id)?,
                    lifecycle: r.lifecycle,
                    access: r.access,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self { calls, lifecycle })
    }

    /// Reads rules from a YAML file.
    ///
    /// # Errors
    ///
    /// `INVALID_CONFIG` when it cannot be read or parsed.
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("access rules {}: {e}", path.display())))?;
        Self::from_yaml(&text)
    }

    /// Whether a call of `type_name/id.method` may be made, by a client
    /// (`external`) or an object.
    ///
    /// # Errors
    ///
    /// `ACCESS_DENIED`, saying which rule (or none) decided.
    pub fn check_call(
        &self,
        type_name: &str,
        id: &str,
        method: &str,
        external: bool,
    ) -> Result<()> {
        let rule = self.calls.iter().position(|rule| {
            rule.type_name.matches(type_name)
                && rule.id.as_ref().is_none_or(|p| p.matches(id))
                && rule.method.as_ref().is_none_or(|p| p.matches(method))
        });
        let access = rule.map(|index| self.calls[index].access);
        decide(
            access,
            external,
            || format!("{type_name}/{id}.{method}"),
            rule.map(|r| r + 1),
            "access",
        )
    }

    /// Whether `type_name/id` may be created or deleted.
    ///
    /// # Errors
    ///
    /// `ACCESS_DENIED`.
    pub fn check_lifecycle(
        &self,
        type_name: &str,
        id: &str,
        operation: Lifecycle,
        external: bool,
    ) -> Result<()> {
        let rule = self.lifecycle.iter().position(|rule| {
            rule.type_name.matches(type_name)
                && rule.id.as_ref().is_none_or(|p| p.matches(id))
                && (rule.lifecycle == operation || rule.lifecycle == Lifecycle::All)
        });
        let access = match rule {
            Some(index) => Some(self.lifecycle[index].access),
            // By default clients may create objects but only objects may
            // delete them.
            None if operation == Lifecycle::Create => Some(Access::Allow),
            None => Some(Access::Internal),
        };
        let verb = if operation == Lifecycle::Delete {
            "delete"
        } else {
            "create"
        };
        decide(
            access,
            external,
            || format!("{verb} {type_name}/{id}"),
            rule.map(|r| r + 1),
            "lifecycle",
        )
    }
}

fn decide(
    access: Option<Access>,
    external: bool,
    what: impl Fn() -> String,
    rule: Option<usize>,
    list: &str,
) -> Result<()> {
    if access.is_some_and(|a| a.allows(external)) {
        return Ok(());
    }
    let who = if external { "clients" } else { "objects" };
    let why = match (access, rule) {
        (Some(access), Some(rule)) => format!("{list} rule {rule} says {access:?}"),
        (Some(access), None) => format!("the default is {access:?}"),
        (None, _) => format!("no {list} rule matches"),
    };
    Err(Error::AccessDenied {
        message: format!("{} may not be called by {who}: {why}", what()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = "
access:
  - { type: Counter, method: /Add|Get/, access: EXTERNAL }
  - { type: Counter, id: /admin-.*/, access: REJECT }
  - { type: Counter, access: INTERNAL }
  - { type: /Public.*/, access: ALLOW }
lifecycle:
  - { type: Counter, lifecycle: ALL, access: INTERNAL }
";

    #[test]
    fn the_first_matching_rule_decides_each_level() {
        let rules = AccessRules::from_yaml(RULES).expect("rules");
        let allowed = |t, id, m, external| rules.check_call(t, id, m, external).is_ok();
        assert!(allowed("Counter", "c", "Add", true));
        assert!(
            !allowed("Counter", "c", "Add", false),
            "EXTERNAL: not objects"
        );
        assert!(
            !allowed("Counter", "admin-1", "Reset", false),
            "REJECT: nobody"
        );
        assert!(allowed("Counter", "c", "Reset", false), "INTERNAL: objects");
        assert!(
            !allowed("Counter", "c", "Reset", true),
            "INTERNAL: not clients"
        );
        assert!(
            allowed("PublicBoard", "b", "Post", true) && allowed("PublicBoard", "b", "Post", false)
        );
        assert!(!allowed("Secret", "s", "Read", false), "no match: rejected");
        assert!(
            !allowed("PublicBoardX", "b", "Post", false)
                || allowed("PublicBoardX", "b", "Post", false)
        );
        let error = rules.check_call("Counter", "c", "Reset", true).unwrap_err();
        assert_eq!(error.code(), "ACCESS_DENIED");
        assert!(
            error.to_string().contains("rule 3 says Internal"),
            "{error}"
        );
    }

    #[test]
    fn patterns_are_anchored() {
        let rules = AccessRules::from_yaml("access:\n  - { type: /Count/, access: ALLOW }\n")
            .expect("rules");
        assert!(rules.check_call("Count", "x", "M", true).is_ok());
        assert!(rules.check_call("Counter", "x", "M", true).is_err());
    }

    #[test]
    fn lifecycle_defaults_create_to_anyone_and_delete_to_objects() {
        let rules = AccessRules::from_yaml(RULES).expect("rules");
        assert!(
            rules
                .check_lifecycle("Counter", "c", Lifecycle::Create, true)
                .is_err()
        );
        assert!(
            rules
                .check_lifecycle("Counter", "c", Lifecycle::Delete, false)
                .is_ok()
        );
        assert!(
            rules
                .check_lifecycle("Other", "o", Lifecycle::Create, true)
                .is_ok()
        );
        assert!(
            rules
                .check_lifecycle("Other", "o", Lifecycle::Delete, true)
                .is_err()
        );
        assert!(
            rules
                .check_lifecycle("Other", "o", Lifecycle::Delete, false)
                .is_ok()
        );
    }

    #[test]
    fn bad_rules_are_config_errors() {
        for bad in [
            "access:\n  - { type: X, access: MAYBE }\n",
            "access:\n  - { type: /([/, access: ALLOW }\n",
            "access:\n  - { type: X, access: ALLOW, colour: blue }\n",
            "nonsense: [",
        ] {
            assert_eq!(
                AccessRules::from_yaml(bad).unwrap_err().code(),
                "INVALID_CONFIG",
                "{bad}"
            );
        }
    }
}
