//! What travels with a call besides its request: its chain (the objects
//! whose turns wait on it, for detecting cycles A -> B -> A on one node and
//! across nodes), its trace context, and where it came from.

use std::sync::Arc;

/// One link of a call chain: an object whose turn waits on a nested call.
#[derive(Debug)]
pub(crate) struct CallChain {
    pub(crate) type_name: std::borrow::Cow<'static, str>,
    pub(crate) id: Arc<str>,
    pub(crate) parent: Option<Arc<CallChain>>,
}

impl CallChain {
    pub(crate) fn contains(&self, type_name: &str, id: &str) -> bool {
        self.links()
            .any(|link| link.type_name == type_name && &*link.id == id)
    }

    fn links(&self) -> impl Iterator<Item = &CallChain> {
        std::iter::successors(Some(self), |link| link.parent.as_deref())
    }

    /// `A/a -> B/b`, outermost first.
    pub(crate) fn render(&self) -> String {
        let mut links: Vec<String> = self
            .links()
            .map(|link| format!("{}/{}", link.type_name, link.id))
            .collect();
        links.reverse();
        links.join(" -> ")
    }
}

/// What travels with a call besides its request: the chain of turns
/// waiting on it, its trace context, and where it came from.
#[derive(Clone, Default)]
pub(crate) struct CallMeta {
    /// The chain of turns waiting on the call (for cycle detection).
    pub(crate) chain: Option<Arc<CallChain>>,
    /// The W3C trace context the call carries.
    pub(crate) trace: Option<Arc<str>>,
    /// Where the call came from (`None`: code on a node).
    pub(crate) origin: Option<Arc<crate::access::Origin>>,
}

/// The shape of a W3C `traceparent`: version, trace id, parent id, flags.
pub(crate) fn valid_traceparent(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    let hex =
        |part: &str, len: usize| part.len() == len && part.bytes().all(|b| b.is_ascii_hexdigit());
    text.len() == 55
        && parts.len() == 4
        && hex(parts[0], 2)
        && hex(parts[1], 32)
        && hex(parts[2], 16)
        && hex(parts[3], 2)
}
